"""The sweep: Ray Tune runs one function trial per drawn config, each fitting its own Ray
Train ``TorchTrainer``; ASHA stops weak trials early on ``val_acc``.

This is the only module that imports ``ray.tune``: the next Ray API change touches one file.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import pandas
import pyarrow.fs
import ray
import ray.train
from ray import tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import Searcher

from raycifar.config import SchedulerSettings, TrialConfig
from raycifar.errors import UserError
from raycifar.train import train_loop_per_worker
from raycifar.train_backend import ray_is_local, torch_config

WandbMode = Literal["offline", "online", "off"]
DRIVER_RESOURCES = {"cpu": 0, "memory": 100 * 1024**2}  # the Tune function only waits on its trainer


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: resources, where results go, logging."""

    results_dir: Path
    sweep_name: str
    cpus_per_trial: float = 1.0
    gpus_per_trial: float | None = None  # None: 1 when the cluster has GPUs, else 0
    workers_per_trial: int = 1
    address: str | None = None
    max_concurrent_trials: int | None = None  # None: what the cluster fits when the sweep starts
    wandb: WandbMode = "offline"
    dashboard: bool = True


class ProgressSink(Protocol):
    """What the sweep tells its caller while it runs (the CLI draws it)."""

    def update(self, done: int, running: int, best_val_acc: float | None) -> None: ...

    def trial_failed(self, trial_id: str, error_file: str | None) -> None: ...


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

    def __init__(self, sink: ProgressSink) -> None:
        self.sink = sink
        self.running: set[str] = set()
        self.done = 0
        self.best: float | None = None

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the live display stays out.
        return {**self.__dict__, "sink": None}

    def _push(self) -> None:
        if self.sink is not None:
            self.sink.update(self.done, len(self.running), self.best)

    def on_trial_start(self, iteration, trials, trial, **info):
        self.running.add(trial.trial_id)
        self._push()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        if "val_acc" in result:
            self.best = max(self.best or 0.0, float(result["val_acc"]))
        self._push()

    def _finish(self, trial) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._push()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._finish(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        if self.sink is not None:
            self.sink.trial_failed(trial.trial_id, getattr(trial, "error_file", None))
        self._finish(trial)


def connect(options: SweepOptions) -> str | None:
    """Join ``options.address`` or start a local Ray; returns the dashboard URL.

    A local Ray listens on loopback only if :func:`raycifar.cli.prepare_ray_environment`
    ran before ``ray`` was first imported (the CLI does this).
    """
    env = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}
    if options.address:
        try:
            context = ray.init(address=options.address, log_to_driver=False, runtime_env={"env_vars": env})
        except ConnectionError as err:
            raise UserError(f"--address {options.address}: cannot join the Ray cluster ({err.__cause__ or err})") from None
    else:
        _refuse_a_second_local_ray()
        context = ray.init(
            num_cpus=len(os.sched_getaffinity(0)),
            include_dashboard=options.dashboard,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            runtime_env={"env_vars": env},
            # Each trial runs ~7 small Ray Train/Tune actors; let them start together
            # instead of warning that more workers started than there are CPUs.
            _system_config={"worker_maximum_startup_concurrency": 4 * len(os.sched_getaffinity(0))},
        )
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


SHUTDOWN_GRACE_S = 15.0


def _refuse_a_second_local_ray() -> None:
    """Stop before starting a second Ray on a machine that already runs one.

    Two local Ray instances confuse Ray Train: its helper actors look their cluster up
    by address and, finding two, fail, which leaves trials waiting for CPUs forever.
    Joining the running one (``--address``) shares its CPUs between the sweeps instead.
    """
    from ray._private.services import find_gcs_addresses

    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    running = sorted(find_gcs_addresses())
    while running and time.monotonic() < deadline:  # one that is just shutting down goes away
        time.sleep(0.5)
        running = sorted(find_gcs_addresses())
    if running:
        raise UserError(
            f"a Ray instance is already running on this machine ({', '.join(running)}): "
            f"run the sweep on it with --address {running[0]}, or stop it first"
        )


def trial_resources(options: SweepOptions) -> tuple[float, int]:
    """(GPUs per trial, concurrent trials) for the connected cluster.

    On a local Ray, requests the machine cannot meet are errors; on a cluster the
    autoscaler may still add the nodes they need. Unless ``max_concurrent_trials`` is
    given, as many trials run at once as the cluster fits now.
    """
    cluster = ray.cluster_resources()
    cpus, gpus_available = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    gpus = options.gpus_per_trial
    if gpus is None:
        gpus = 1.0 if gpus_available >= 1 else 0.0
    if options.address is None:
        if options.cpus_per_trial > cpus:
            raise UserError(f"--cpus-per-trial {options.cpus_per_trial:g} is more than this machine's {cpus:g} CPUs")
        if gpus > gpus_available:
            raise UserError(f"--gpus-per-trial {gpus:g} is more than this machine's {gpus_available:g} GPUs")
    if options.max_concurrent_trials:
        return gpus, options.max_concurrent_trials
    concurrent = int(cpus // options.cpus_per_trial)
    if gpus > 0 and gpus_available > 0:
        concurrent = min(concurrent, int(gpus_available // gpus))
    return gpus, max(1, concurrent)


def scaling_config(options: SweepOptions, gpus: float) -> ray.train.ScalingConfig:
    """The workers of one trial, sharing its CPUs (and GPUs) evenly."""
    workers, cpus = options.workers_per_trial, options.cpus_per_trial
    return ray.train.ScalingConfig(
        num_workers=workers,
        use_gpu=gpus > 0,
        resources_per_worker={"CPU": cpus / workers, **({"GPU": gpus / workers} if gpus else {})},
    )


def make_trainer(
    config: dict, name: str, storage: Path, scaling: ray.train.ScalingConfig, callbacks: list, local: bool
) -> TorchTrainer:
    """The Ray Train run of one trial config, under ``storage/name``: a sweep trial or ``raycifar train``.

    ``local``: Ray runs on this machine only; the workers' torch process group then listens on loopback.
    """
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config,
        scaling_config=scaling,
        torch_config=torch_config(local),
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage),
            callbacks=callbacks,
            # A crashed worker group restarts once from the run's last checkpoint.
            failure_config=ray.train.FailureConfig(max_failures=1),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=2, checkpoint_score_attribute="val_acc", checkpoint_score_order="max"
            ),
        ),
    )


def _make_trial_function(options: SweepOptions, train_storage: Path, gpus: float):
    """The Tune function trial: fits one TorchTrainer on the trial's config."""
    scaling, local = scaling_config(options, gpus), ray_is_local(options.address)

    def run_trial(config: dict) -> None:
        trial_id = tune.get_context().get_trial_id()
        make_trainer(config, trial_id, train_storage, scaling, [TuneReportCallback()], local).fit()

    return tune.with_resources(run_trial, DRIVER_RESOURCES)


def _trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return f"trial_{trial.trial_id}"


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
) -> SweepOutcome:
    """Run every config as a Tune trial under ASHA (Ray must be connected) and find the best epoch."""
    started = time.monotonic()
    gpus, concurrent = trial_resources(options)
    tracker = _ProgressCallback(progress)
    storage = options.results_dir / "sweeps"
    max_epochs = max(c.train.epochs for c in configs)
    asha = ASHAScheduler(
        time_attr="epoch",
        max_t=max_epochs,
        grace_period=min(scheduler.grace_period, max_epochs),
        reduction_factor=scheduler.reduction_factor,
    )
    tuner = tune.Tuner(
        _make_trial_function(options, storage / options.sweep_name / "train_runs", gpus),
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            scheduler=asha,
            search_alg=_PresetConfigs([c.model_dump(mode="json") for c in configs]),
            num_samples=len(configs),
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
        raise SweepInterrupted(
            f"sweep {options.sweep_name} stopped with {len(configs) - tracker.done} unfinished trials; "
            f"nothing promoted. Its results so far are in {results.experiment_path}"
        )
    return _summarise(results, options, time.monotonic() - started)


def _checkpoint_exists(path: str) -> bool:
    checkpoint = ray.train.Checkpoint(path)
    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def _summarise(results, options: SweepOptions, wall_seconds: float) -> SweepOutcome:
    """Pick the epoch with the best ``val_acc`` whose checkpoint is kept, across all trials.

    Ties go to the later epoch; Ray keeps each trial's best two checkpoints by ``val_acc``.
    """
    candidates, stopped_early, failed = [], 0, 0
    for result in results:
        history = result.metrics_dataframe
        failed += result.error is not None
        if history is None or history.empty or "val_acc" not in history:
            continue
        planned = TrialConfig.model_validate(result.config).train.epochs
        stopped_early += int(history["epoch"].max()) < planned and result.error is None
        if "checkpoint_path" in history:
            candidates.append(history.dropna(subset=["checkpoint_path"]))
    ranked = (
        pandas.concat(candidates).sort_values(["val_acc", "epoch"], ascending=False)
        if candidates
        else pandas.DataFrame()
    )
    best = next((row for _, row in ranked.iterrows() if _checkpoint_exists(row["checkpoint_path"])), None)
    if best is None:
        raise SweepFailed(
            f"no trial of sweep {options.sweep_name} left a checkpoint; "
            f"see the error.txt files under {results.experiment_path}"
        )
    return SweepOutcome(
        best_trial_id=str(best["trial_id"]),
        best_val_acc=float(best["val_acc"]),
        best_epoch=int(best["epoch"]),
        best_checkpoint=str(best["checkpoint_path"]),
        trials=len(results),
        stopped_early=stopped_early,
        failed=failed,
        wall_seconds=wall_seconds,
    )


class SweepFailed(Exception):
    """The sweep ran but produced nothing to promote."""


class SweepInterrupted(Exception):
    """The sweep was stopped (Ctrl+C) before all trials finished."""


def fetch_checkpoint(checkpoint_path: str, destination: Path) -> Path:
    """Copy a Train checkpoint (local path or URI such as ``s3://``) into ``destination``."""
    return Path(ray.train.Checkpoint(checkpoint_path).to_directory(str(destination)))


def disconnect() -> None:
    """Shut down the Ray connection (and the local Ray this process started)."""
    if ray.is_initialized():
        ray.shutdown()

