"""The sweep: Ray Tune runs one function trial per drawn config, each fitting its own Ray
Train ``TorchTrainer`` (:func:`raycifar.train_run.make_trainer`); the space's scheduler
(:mod:`raycifar.schedulers`: ASHA by default) stops weak trials early on ``val_acc`` or, for
PBT, clones strong ones, and :mod:`raycifar.selection` picks the best epoch at the end.

This module and :mod:`raycifar.schedulers` are the only ones that import ``ray.tune``.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs
import ray
import ray.train
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.search import Searcher

from raycifar.config import TrialConfig
from raycifar.display import ProgressSink
from raycifar.errors import Interrupted, RunFailed
from raycifar.ray_session import RunResources, concurrent_runs, resolve_gpus
from raycifar.schedulers import accepts_searcher, make_scheduler, population_space, run_population_trial
from raycifar.selection import Selection, TrialHistory, select_best
from raycifar.space_file import Dimension, SchedulerSettings
from raycifar.sweep_record import TRIAL_DIR_PREFIX, SweepRecorder, completion_state
from raycifar.train_backend import ray_is_local
from raycifar.train_run import make_trainer, scaling_config
from raycifar.variants import model_name
from raycifar.wandb_log import WandbMode

DRIVER_RESOURCES = {"cpu": 0, "memory": 100 * 1024**2}  # the Tune function only waits on its trainer


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: resources, where results go, logging."""

    results_dir: Path
    sweep_name: str
    resources: RunResources = RunResources()
    address: str | None = None  # None: a local Ray this process started (requests it cannot meet are errors)
    max_concurrent_trials: int | None = None  # None: what the cluster fits when the sweep starts
    wandb: WandbMode = "offline"


@dataclass(frozen=True)
class SweepOutcome:
    """The best epoch of the sweep and what happened to its trials."""

    best_trial_id: str
    best_val_acc: float
    best_epoch: int
    best_checkpoint: str
    trials: int
    stopped_early: int
    failed: int
    wall_seconds: float


class _PresetConfigs(Searcher):
    """Hands Tune the configs drawn (and budget-checked) before the sweep, in order."""

    def __init__(self, configs: list[dict]) -> None:
        super().__init__()
        self.configs, self.next_index = configs, 0

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.next_index >= len(self.configs):
            return Searcher.FINISHED
        self.next_index += 1
        return self.configs[self.next_index - 1]

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        pass

    def save(self, checkpoint_path: str) -> None:
        Path(checkpoint_path).write_text(json.dumps({"configs": self.configs, "next_index": self.next_index}))

    def restore(self, checkpoint_path: str) -> None:
        state = json.loads(Path(checkpoint_path).read_text())
        self.configs, self.next_index = state["configs"], state["next_index"]


class _ProgressCallback(tune.Callback):
    """Forwards trial counts and the best ``val_acc`` so far to a :class:`ProgressSink`."""

    def __init__(self, sink: ProgressSink, recorder: SweepRecorder | None = None) -> None:
        self.sink, self.recorder = sink, recorder
        self.running: set[str] = set()
        self.done = 0
        self.best: float | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the live display stays out.
        return {**self.__dict__, "sink": None, "recorder": None}

    def _push(self) -> None:
        if self.sink is not None:
            self.sink.update(self.done, len(self.running), self.best)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        if self.recorder is not None:
            config = TrialConfig.model_validate(trial.config)
            self.recorder.trial_started(trial.trial_id, trial.config, model=model_name(config.model))
        self._push()

    def on_step_end(self, iteration, trials, **info):
        if self.recorder is not None:
            self.recorder.heartbeat()  # writes at most every few seconds

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "val_acc" in result:
            self.best = max(self.best or 0.0, float(result["val_acc"]))
        self._push()

    def _finish(self, trial) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._push()

    def on_trial_complete(self, iteration, trials, trial, **info):
        if self.recorder is not None:
            epochs = TrialConfig.model_validate(trial.config).train.epochs
            self.recorder.trial_ended(trial.trial_id, completion_state(int(trial.last_result.get("epoch", 0)), epochs))
        self._finish(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        error_file = getattr(trial, "error_file", None)
        if self.sink is not None:
            self.sink.trial_failed(trial.trial_id, error_file)
        if self.recorder is not None:
            self.recorder.trial_ended(trial.trial_id, "error", error_file=error_file)
        self._finish(trial)


def _make_trial_function(options: SweepOptions, train_storage: Path, gpus: float, scheduler: SchedulerSettings):
    """The Tune function trial: fits one TorchTrainer on the trial's config (its Train run
    is named after the trial). Under PBT it reports Tune checkpoints itself and starts each
    exploit generation from the donor's (:func:`raycifar.schedulers.run_population_trial`)."""
    scaling, local = scaling_config(options.resources, gpus), ray_is_local(options.address)

    def run_trial(config: dict) -> None:
        if scheduler.name == "pbt":
            def fit(name: str, init: str | None, callbacks: list) -> None:
                make_trainer(config, name, train_storage, scaling, callbacks, local, init_checkpoint=init).fit()

            run_population_trial(config, train_storage, scheduler.perturbation_interval, fit)
            return
        trial_id = tune.get_context().get_trial_id()
        make_trainer(config, trial_id, train_storage, scaling, [TuneReportCallback()], local).fit()

    return tune.with_resources(run_trial, DRIVER_RESOURCES)


def _trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return f"{TRIAL_DIR_PREFIX}{trial.trial_id}"


def _callbacks(options: SweepOptions, progress: _ProgressCallback) -> list:
    callbacks: list = [progress]
    if options.wandb != "off":
        from ray.air.integrations.wandb import WandbLoggerCallback

        wandb_dir = options.results_dir / "wandb"
        wandb_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            WandbLoggerCallback(
                project="raycifar",
                group=options.sweep_name,
                mode=options.wandb,
                dir=str(wandb_dir),
                # How long the end of a sweep waits for W&B; offline runs only flush files.
                upload_timeout=30 if options.wandb == "offline" else 300,
            )
        )
    return callbacks


def run_sweep(
    configs: list[TrialConfig],
    scheduler: SchedulerSettings,
    options: SweepOptions,
    progress: ProgressSink,
    mutations: dict[str, Dimension] | None = None,
) -> SweepOutcome:
    """Run every config as a Tune trial under ``scheduler`` (Ray must be connected) and find
    the best epoch. ``mutations``: what PBT perturbs (:func:`raycifar.space_file.pbt_dimensions`)."""
    started = time.monotonic()
    gpus = resolve_gpus(options.resources, local=options.address is None)
    concurrent = concurrent_runs(options.resources, gpus, options.max_concurrent_trials)
    storage = options.results_dir / "sweeps"
    recorder = SweepRecorder.start(
        storage / options.sweep_name, options.sweep_name, configs[0].space, len(configs), scheduler=scheduler.model_dump()
    )
    tracker = _ProgressCallback(progress, recorder)
    trial_scheduler = make_scheduler(scheduler, max(c.train.epochs for c in configs), mutations)
    drawn = [c.model_dump(mode="json") for c in configs]
    population = None if accepts_searcher(scheduler) else population_space(drawn)  # PBT refuses searchers
    tuner = tune.Tuner(
        _make_trial_function(options, storage / options.sweep_name / "train_runs", gpus, scheduler),
        param_space=population,
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            scheduler=trial_scheduler,
            search_alg=None if population else _PresetConfigs(drawn),
            num_samples=1 if population else len(configs),
            max_concurrent_trials=concurrent,
            trial_dirname_creator=_trial_dirname,
        ),
        run_config=tune.RunConfig(
            name=options.sweep_name,
            storage_path=str(storage),
            callbacks=_callbacks(options, tracker),
            verbose=0,
        ),
    )
    results = tuner.fit()
    if tracker.done < len(configs):  # Tune ends early only when it is interrupted
        recorder.ended("interrupted")
        raise SweepInterrupted(
            f"sweep {options.sweep_name} stopped with {len(configs) - tracker.done} unfinished trials; "
            f"nothing promoted. Its results so far are in {results.experiment_path}"
        )
    try:
        outcome = _summarise(results, options, time.monotonic() - started)
    except SweepFailed:
        recorder.ended("failed")
        raise
    recorder.ended("completed")
    return outcome


def _checkpoint_exists(path: str) -> bool:
    checkpoint = ray.train.Checkpoint(path)
    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def _history(result) -> TrialHistory:
    """A Tune trial result as a :class:`TrialHistory` (its reported epochs in order)."""
    frame = result.metrics_dataframe
    records = [] if frame is None or frame.empty else frame.to_dict("records")
    planned = TrialConfig.model_validate(result.config).train.epochs
    return TrialHistory(str(result.metrics.get("trial_id", "")) or result.path, planned, records, result.error is not None)


def _summarise(results, options: SweepOptions, wall_seconds: float) -> SweepOutcome:
    """The best epoch across all trials whose checkpoint is kept (see :mod:`raycifar.selection`)."""
    selection: Selection = select_best([_history(result) for result in results], _checkpoint_exists)
    best = selection.best
    if best is None:
        raise SweepFailed(
            f"no trial of sweep {options.sweep_name} left a checkpoint; "
            f"see the error.txt files under {results.experiment_path}"
        )
    return SweepOutcome(
        best_trial_id=best.trial_id,
        best_val_acc=best.val_acc,
        best_epoch=best.epoch,
        best_checkpoint=best.checkpoint,
        trials=selection.trials,
        stopped_early=selection.stopped_early,
        failed=selection.failed,
        wall_seconds=wall_seconds,
    )


class SweepFailed(RunFailed):
    """The sweep ran but produced nothing to promote."""


class SweepInterrupted(Interrupted):
    """The sweep was stopped (Ctrl+C) before all trials finished."""
