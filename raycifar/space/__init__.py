"""space: what the user writes, resolved. A search-space file (YAML) is read, validated and
turned into dimensions; nothing is drawn here (that is :mod:`raycifar.search.searchers`).

=============  ==================================================================
module         holds
=============  ==================================================================
``dimension``  one search dimension (a constant or a sampler) and its parsing
``sections``   the space's sections, derived from the resolved configs; scheduler and
               searcher settings
``file``       the whole file (:class:`~raycifar.space.file.SpaceFile`), loading it with
               one-line errors, walking its dimensions
``find``       a space by name or path (:func:`~raycifar.space.find.load_space`)
=============  ==================================================================

May import: the ground modules (config, errors, yaml_load), ``data.catalog``, ``models.registry``.
Imports neither torch nor Ray.
"""
