"""entries: a leaderboard entry, from promotion to use.

==============  ===============================================================
module          holds
==============  ===============================================================
``promote``     a checkpoint becomes an entry: export, one test evaluation, one row
``from_sweep``  ``raycifar promote SWEEP``: the best (or a chosen) trial of a sweep, from its files
``evaluate``    the one place where the test set is scored
``robustness``  accuracy on a corrupted test set, the default rule, ``robustness.json``
``predict``     predictions for new images, as CSV
``competition`` predictions on competition files (pickle, .npy, .npz) streamed on a device; ensembles
``submission``  the submission CSV: columns, label form, ``--like`` a sample submission
``metrics``     confidence intervals, confusion matrices
``model_card``  the entry's ``README.md``
``load``        ``raycifar.load_model``
==============  ===============================================================

May import: ``results``, ``models``, ``data``, ``train`` (scoring), ``cluster`` (CPU count),
the ground modules. Never Ray.
"""
