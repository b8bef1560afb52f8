"""search: configs drawn from a space, each fitted to the budget, and the plan of a sweep.

=============  ==================================================================
module         holds
=============  ==================================================================
``draws``      one config from a space: the values of its dimensions (conditions in
               order), fitted widths, the resolved trial config
``samplers``   the Optuna sampler of each searcher (random, grid, TPE, QMC, NSGA-II)
``searchers``  the Optuna study that proposes configs and is told their scores
``sample``     configs drawn without a sweep (``space sample``, ``raycifar train``)
``plan``       what a sweep will run, before Ray: searcher, trial count, time budget
=============  ==================================================================

May import: ``space``, ``models`` (registry and budget), ``results.layout``, the ground
modules. Imports neither Ray nor, when imported, torch (counting parameters imports it
when first needed).
"""
