"""The Tune function trial, on one of two paths (:func:`raycifar.sweep.options.choose_runner`):

- ``in-trial``: the trial trains in its own process, holding the trial's CPUs/GPUs
  (:mod:`raycifar.sweep.in_trial`); Tune restarts it from its last checkpoint when it fails.
- ``torch-trainer``: one Ray Train ``TorchTrainer`` per trial config, fitted from the head
  node (:data:`DRIVER_RESOURCES`), its Train run named after the trial so that it resumes
  from its own last checkpoint; Ray Train restarts its crashed workers. Under PBT the trial
  body is :func:`raycifar.sweep.schedulers.run_population_trial`. A lost worker node is a
  worker crash: the trials' drivers and Train controllers stay on the head node.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raycifar.results.layout import TRIAL_DIR_PREFIX
from raycifar.space.sections import SchedulerSettings
from raycifar.sweep.in_trial import report_unseen_after_resume, run_in_trial
from raycifar.sweep.options import IN_TRIAL, SweepOptions
from raycifar.sweep.outcome import TrialFailed
from raycifar.sweep.schedulers import run_population_trial
from raycifar.timeline import enabled as timeline_enabled
from raycifar.timeline import mark
from raycifar.train.process_group import ray_is_local
from raycifar.train.run import TrainRunFailed, fit, make_trainer, scaling_config
from raycifar.train.worker import TIMELINE_KEY, CheckpointNotWritten

# The Tune function only waits on its trainer, on the head node (a sliver of the resource Ray
# gives the head alone): Ray Train places a run's controller on the node of the process that
# calls fit(), so a driver on a worker node would take its trial down with that node.
DRIVER_RESOURCES = {"cpu": 0, "memory": 100 * 1024**2, "node:__internal_head__": 0.001}


def make_trial_function(
    options: SweepOptions, train_storage: Path, gpus: float, completed: frozenset[str], scheduler: SchedulerSettings
):
    """The Tune function trial on ``options.runner``'s path (see the module doc); a trial in
    ``completed`` returns at once. Under PBT it reports Tune checkpoints itself and starts each
    exploit generation from the donor's (:func:`raycifar.sweep.schedulers.run_population_trial`)."""
    if options.runner == IN_TRIAL:
        return _in_trial_function(options, train_storage, gpus, completed)
    scaling, local = scaling_config(options.resources, gpus), ray_is_local(options.address)
    timeline_dir = train_storage.parent

    def run_trial(config: dict) -> None:
        config = with_data_dir(config, options.data_dir)
        if scheduler.name == "pbt":
            def fit_generation(name: str, init: str | None, callbacks: list) -> None:
                fit_trial(lambda: make_trainer(config, name, train_storage, scaling, callbacks, local, options.max_failures, init),
                          options.max_failures)  # fmt: skip

            run_population_trial(config, train_storage, scheduler.perturbation_interval, fit_generation)
            return
        trial_id = tune.get_context().get_trial_id()
        if trial_id in completed:  # it ended after Tune last saved its state (every ~10 s)
            return
        mark(timeline_dir, "trial_start", trial=trial_id)
        callbacks = [TuneReportCallback()]
        loop_config = _with_timeline(config, timeline_dir, trial_id)
        fit_trial(lambda: make_trainer(loop_config, trial_id, train_storage, scaling, callbacks, local, options.max_failures),
                  options.max_failures)  # fmt: skip
        mark(timeline_dir, "trial_end", trial=trial_id)

    return tune.with_resources(run_trial, DRIVER_RESOURCES)


def _in_trial_function(options: SweepOptions, train_storage: Path, gpus: float, completed: frozenset[str]):
    """The trial function of the in-trial path, holding the trial's CPUs and GPUs."""
    fingerprint, timeline_dir, driver_id = options.data_fingerprint, train_storage.parent, options.driver_id

    def run_trial(config: dict) -> None:
        config = with_data_dir(config, options.data_dir)
        trial_id = tune.get_context().get_trial_id()
        if trial_id in completed:  # it ended after Tune last saved its state (every ~10 s): its epochs Tune lacks
            report_unseen_after_resume(config, train_storage / trial_id, driver_id)
            return
        mark(timeline_dir, "trial_start", trial=trial_id)
        loop_config = _with_timeline(config, timeline_dir, trial_id)
        try:
            run_in_trial(loop_config, train_storage / trial_id, gpus, fingerprint, driver_id)
        except CheckpointNotWritten as err:  # one line for the record; Tune retries it like a crash
            raise TrialFailed(str(err)) from None
        mark(timeline_dir, "trial_end", trial=trial_id)

    return tune.with_resources(run_trial, {"cpu": options.resources.cpus, "gpu": gpus})


def with_data_dir(config: dict, data_dir: str | None) -> dict:
    """A trial config reading its data from ``data_dir`` (a resume re-pointed the sweep's
    moved data folder); as it is when None."""
    return {**config, "data_dir": data_dir} if data_dir is not None else config


def _with_timeline(config: dict, sweep_dir: Path, trial_id: str) -> dict:
    """The loop config, with where its worker marks go when the debug timeline is on."""
    return {**config, TIMELINE_KEY: {"dir": str(sweep_dir), "trial": trial_id}} if timeline_enabled() else config


def trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return f"{TRIAL_DIR_PREFIX}{trial.trial_id}"


def fit_trial(make: Callable[[], Any], retries: int) -> None:
    """Fit a trial's Train run as every Train run is fitted (:func:`raycifar.train.run.fit`:
    ``ControllerError`` retries, leaked placement groups released); a run that failed after
    its restarts is a :class:`TrialFailed` with the reason."""
    try:
        fit(make, retries)
    except TrainRunFailed as err:
        raise TrialFailed(str(err)) from None
