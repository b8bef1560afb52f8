"""sweep: everything that talks to Ray Tune, and only that.

==============  =================================================================
module          holds
==============  =================================================================
``driver``      :func:`~raycifar.sweep.driver.run_sweep`: the Tuner of a new, resumed
                or extended sweep, and its outcome
``tune_hooks``  what Tune calls back: the searcher adapter, the progress and record
                callback, the scheduler's saved state
``trial``       the Tune trial function, on the in-trial or the TorchTrainer path
``in_trial``    a single-worker trial trained in its Tune trial's own (reused) process
``wandb_trials`` one W&B run per trial, written by the driver (no actor per trial)
``schedulers``  ASHA, HyperBand, the median rule, PBT and FIFO; PBT's trial body
``outcome``     what a sweep produced, and its exceptions
``legacy``      old pickled class paths, so that sweeps of older raycifars resume
==============  =================================================================

May import: ``ray.tune`` (the only package that does), ``train``, ``search``, ``space``,
``results``, ``cluster``, ``models.registry``, the ground modules.
"""
