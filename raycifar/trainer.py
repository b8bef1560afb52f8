"""``raycifar train``: one resolved trial config on Ray Train, without Tune.

The run goes through the same ``TorchTrainer`` and worker loop as a sweep trial
(:func:`raycifar.sweep.make_trainer`). Every epoch's metrics stream back to the caller
while it runs and are appended to ``<results-dir>/runs/<name>/metrics.jsonl``; Ray Train
keeps the two best checkpoints by ``val_acc`` in the same folder.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import ray
import ray.train
import yaml
from pydantic import ValidationError
from ray.util.queue import Empty, Queue

from raycifar.config import Dimension, TrainConfig, TrialConfig, format_validation_error
from raycifar.errors import UserError
from raycifar.leaderboard import find_entry
from raycifar.space import load_space, sample_configs
from raycifar.sweep import SweepOptions, make_trainer, scaling_config
from raycifar.train_backend import ray_is_local

RUNS_DIR = "runs"
METRICS_FILE = "metrics.jsonl"


def config_from_file(name_or_path: str, data_dir: Path, seed: int) -> TrialConfig:
    """The trial config of a space file whose every key has one value.

    It is the config trial 0 of ``raycifar sweep`` draws with ``seed``: the validation
    split is seeded with ``seed`` and the trial with ``seed * 1000``.
    """
    space = load_space(name_or_path)
    for section in ("arch", "train"):
        for key, dimension in getattr(space.spec, section):
            if isinstance(dimension, Dimension) and dimension.sampler != "constant":
                raise UserError(
                    f"{space.path}: {section}.{key}: raycifar train needs one value per key, "
                    f"got a {dimension.sampler} sampler (search it with raycifar sweep)"
                )
    return sample_configs(space, 1, seed, data_dir).configs[0]


def config_from_entry(results_dir: Path, entry_id: str) -> TrialConfig:
    """The resolved config a leaderboard entry was trained with."""
    return TrialConfig.model_validate_json(find_entry(results_dir, entry_id)["config_json"])


def with_overrides(
    config: TrialConfig,
    settings: list[str],
    epochs: int | None = None,
    seed: int | None = None,
    data_dir: Path | None = None,
) -> TrialConfig:
    """``config`` with training keys set from ``KEY=VALUE`` strings (values read as YAML),
    and ``epochs``, the trial ``seed`` and ``data_dir`` replaced when given."""
    resolved = config.model_dump()
    train = resolved["train"]
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep or key not in TrainConfig.model_fields:
            raise UserError(f"--set {setting!r}: expected KEY=VALUE with KEY a training key such as lr or ema_decay")
        train[key] = yaml.safe_load(value)
    if epochs is not None:
        train["epochs"] = epochs
    if seed is not None:
        resolved["seed"] = seed
    if data_dir is not None:
        resolved["data_dir"] = str(data_dir)
    try:
        return TrialConfig.model_validate(resolved)
    except ValidationError as err:
        raise UserError(format_validation_error("--set", err)) from None


@dataclass(frozen=True)
class RunOptions:
    """Where a training run goes and what it may use."""

    results_dir: Path
    name: str
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float | None = None  # None: 1 when the cluster has GPUs, else 0
    address: str | None = None
    dashboard: bool = True

    def as_trial(self, gpus_per_worker: float = 0.0) -> SweepOptions:
        """The same request in the sweep's per-trial terms."""
        return SweepOptions(
            results_dir=self.results_dir, sweep_name=self.name, cpus_per_trial=self.cpus_per_worker * self.workers,
            gpus_per_trial=gpus_per_worker * self.workers, workers_per_trial=self.workers, address=self.address,
            wandb="off", dashboard=self.dashboard,
        )  # fmt: skip


def run_dir(results_dir: Path, name: str) -> Path:
    """The folder of run ``name``: Ray Train's checkpoints and ``metrics.jsonl``."""
    return results_dir / RUNS_DIR / name


def check_new_run(results_dir: Path, name: str) -> None:
    """A run name must be new: Ray Train would otherwise resume the old run's checkpoints."""
    folder = run_dir(results_dir, name)
    if folder.exists():
        raise UserError(f"a run named {name!r} already exists in {folder.parent}: choose another --name")


@dataclass(frozen=True)
class RunOutcome:
    """The best epoch of a finished run."""

    best_val_acc: float
    best_epoch: int
    best_checkpoint: str
    epochs: int
    run_dir: Path
    wall_seconds: float


class EpochSink(Protocol):
    """What the run tells its caller after every epoch (the CLI prints it)."""

    def epoch(self, metrics: dict) -> None: ...


class RunFailed(Exception):
    """The training run failed or left no checkpoint."""


class RunInterrupted(Exception):
    """The training run was stopped with Ctrl+C."""


class _ForwardMetrics(ray.train.UserCallback):
    """Runs in Ray Train's controller: puts rank 0's metrics of every report on a queue."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        self.queue.put({**metrics[0], "checkpoint_path": checkpoint.path if checkpoint else None})


@contextmanager
def _relay(queue: Queue, log: Path, sink: EpochSink) -> Iterator[None]:
    """While the block runs, a driver thread hands each epoch's metrics to ``sink`` and to
    ``log`` (JSON lines); on exit it drains the queue, then stops."""
    finished = threading.Event()

    def pump() -> None:
        while True:
            try:
                metrics = queue.get(timeout=0.25)
            except Empty:
                if finished.is_set():
                    return
                continue
            with log.open("a") as stream:
                stream.write(json.dumps(metrics) + "\n")
            sink.epoch(metrics)

    thread = threading.Thread(target=pump, name="raycifar-train-metrics", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join()


def _gpus_per_worker(options: RunOptions) -> float:
    """GPUs per worker for the connected cluster; on a local Ray, requests it cannot meet are errors."""
    cluster = ray.cluster_resources()
    cpus, gpus_available = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    gpus = options.gpus_per_worker
    if gpus is None:
        gpus = 1.0 if gpus_available >= options.workers else 0.0
    if options.address is None:
        if options.cpus_per_worker * options.workers > cpus:
            raise UserError(
                f"--workers {options.workers} x --cpus-per-worker {options.cpus_per_worker:g} "
                f"is more than this machine's {cpus:g} CPUs"
            )
        if gpus * options.workers > gpus_available:
            raise UserError(
                f"--workers {options.workers} x --gpus-per-worker {gpus:g} is more than this machine's {gpus_available:g} GPUs"
            )
    return gpus


def run_training(config: TrialConfig, options: RunOptions, sink: EpochSink) -> RunOutcome:
    """Train ``config`` on Ray Train (Ray must be connected) and find its best checkpoint."""
    started = time.monotonic()
    check_new_run(options.results_dir, options.name)
    folder = run_dir(options.results_dir, options.name)
    trial = options.as_trial(_gpus_per_worker(options))
    queue = Queue(actor_options={"num_cpus": 0})
    trainer = make_trainer(
        config.model_dump(mode="json"), options.name, folder.parent, scaling_config(trial, trial.gpus_per_trial),
        [_ForwardMetrics(queue)], ray_is_local(options.address),
    )  # fmt: skip
    folder.mkdir(parents=True)
    try:
        with _relay(queue, folder / METRICS_FILE, sink):
            result = trainer.fit()
    except ray.train.TrainingFailedError as err:
        raise RunFailed(f"training run {options.name} failed: {err}; its folder is {folder}") from None
    except (KeyboardInterrupt, SystemExit):  # Ray Train aborts the run on Ctrl+C, then exits
        raise RunInterrupted(f"training run {options.name} stopped; its checkpoints so far are in {folder}") from None
    finally:
        queue.shutdown(force=True)
    ranked = sorted(result.best_checkpoints or [], key=lambda pair: (pair[1]["val_acc"], pair[1]["epoch"]))
    if not ranked:
        raise RunFailed(f"training run {options.name} left no checkpoint in {folder}")
    checkpoint, metrics = ranked[-1]
    return RunOutcome(
        best_val_acc=float(metrics["val_acc"]),
        best_epoch=int(metrics["epoch"]),
        best_checkpoint=checkpoint.path,
        epochs=int(result.metrics["epoch"]),
        run_dir=folder,
        wall_seconds=time.monotonic() - started,
    )
