"""report: one offline HTML page about a sweep or an entry.

==============  =====================================================================
module          holds
==============  =====================================================================
``gather``      everything the page shows, gathered from the results folder into one dict
``html``        the page: plotly's offline bundle, charts, tables
``images``      misclassified test images with Grad-CAM
``robustness``  the entry's corrupted-set figures; the top-k trials on clean vs corrupted accuracy
==============  =====================================================================

May import: ``entries``, ``results``, ``models``, ``space``, ``data``, the ground modules. Never Ray.
"""
