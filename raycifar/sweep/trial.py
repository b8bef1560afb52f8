"""The Tune function trial: one Ray Train ``TorchTrainer`` per trial config, fitted on the
head node (:data:`DRIVER_RESOURCES`), its Train run named after the trial so that it resumes
from its own last checkpoint. Under PBT the trial body is
:func:`raycifar.sweep.schedulers.run_population_trial`.

A lost worker node is a worker crash: the trials' drivers and Train controllers stay on the
head node, which a sweep cannot lose.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback

from raycifar.results.layout import TRIAL_DIR_PREFIX
from raycifar.space.sections import SchedulerSettings
from raycifar.sweep.options import SweepOptions
from raycifar.sweep.outcome import TrialFailed
from raycifar.sweep.schedulers import run_population_trial
from raycifar.train.process_group import ray_is_local
from raycifar.train.run import TrainRunFailed, fit, make_trainer, scaling_config

# The Tune function only waits on its trainer, on the head node (a sliver of the resource Ray
# gives the head alone): Ray Train places a run's controller on the node of the process that
# calls fit(), so a driver on a worker node would take its trial down with that node.
DRIVER_RESOURCES = {"cpu": 0, "memory": 100 * 1024**2, "node:__internal_head__": 0.001}


def make_trial_function(
    options: SweepOptions, train_storage: Path, gpus: float, completed: frozenset[str], scheduler: SchedulerSettings
):
    """The Tune function trial: fits one TorchTrainer on the trial's config (its Train run is
    named after the trial and resumes from its own last checkpoint); a trial in ``completed``
    returns at once. Under PBT it reports Tune checkpoints itself and starts each exploit
    generation from the donor's (:func:`raycifar.sweep.schedulers.run_population_trial`)."""
    scaling, local = scaling_config(options.resources, gpus), ray_is_local(options.address)

    def run_trial(config: dict) -> None:
        if scheduler.name == "pbt":
            def fit_generation(name: str, init: str | None, callbacks: list) -> None:
                fit_trial(lambda: make_trainer(config, name, train_storage, scaling, callbacks, local, options.max_failures, init),
                          options.max_failures)  # fmt: skip

            run_population_trial(config, train_storage, scheduler.perturbation_interval, fit_generation)
            return
        trial_id = tune.get_context().get_trial_id()
        if trial_id in completed:  # it ended after Tune last saved its state (every ~10 s)
            return
        callbacks = [TuneReportCallback()]
        fit_trial(lambda: make_trainer(config, trial_id, train_storage, scaling, callbacks, local, options.max_failures),
                  options.max_failures)  # fmt: skip

    return tune.with_resources(run_trial, DRIVER_RESOURCES)



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
