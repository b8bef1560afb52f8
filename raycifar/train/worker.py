"""The worker loop of a trial, and its Ray Train entry point :func:`train_loop_per_worker`.

:func:`run_worker` is the one loop every trial runs, under a :class:`WorkerSession` that says
where it reports: Ray Train's (:class:`TrainSession`, each worker of a ``TorchTrainer`` run)
or Tune's (``raycifar.sweep.in_trial``: a single-worker trial trains inside its Tune trial).
It builds the worker's loaders and :class:`~raycifar.train.loop.Training`, resumes from the run's
last checkpoint when Ray Train restarted it (or starts from the loop config's
``init_checkpoint``, a PBT donor's, when the run has none), and every epoch reports the
metrics of :meth:`~raycifar.train.loop.Training.run_epoch` with a checkpoint written by rank 0,
plus ``world_size``, ``resumed_from_epoch`` (the checkpoint epoch this worker group started
from, 0 for a fresh start), and what :mod:`raycifar.results.cost` needs: ``device`` (the torch
device type the worker trains on: ``"cpu"``, ``"cuda"``) and ``worker_cpus`` /
``worker_gpus`` (the Ray resources the worker holds; every worker of a run holds the same).

A run whose last epoch was checkpointed but never reached the sweep (its driver was killed
in between, so the resumed run starts with no epoch left) reports that epoch again, from the
metrics its checkpoint keeps (``metrics.json``).

Faults: an epoch that diverged (``diverged`` in its metrics) is reported without a
checkpoint and the run ends there, normally, so that Ray Train does not retry it; a
checkpoint that cannot be written raises :class:`CheckpointNotWritten` (one line), which
Ray Train retries like any worker crash (``FailureConfig.max_failures``).
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Protocol

import ray
import ray.train
import ray.train.torch
import torch
from torch import nn

from raycifar.config import TrialConfig
from raycifar.data.loaders import make_loaders
from raycifar.results.schema import (
    EPOCH,
    EVAL_SECONDS,
    RESUMED_FROM_EPOCH,
    TRAIN_SECONDS,
    WORKER_CPUS,
    WORKER_GPUS,
    WORKER_PID,
    WORLD_SIZE,
    EpochMetrics,
)
from raycifar.results.selection import DIVERGED
from raycifar.timeline import mark
from raycifar.train.checkpoints import METRICS_FILE
from raycifar.train.loop import Training
from raycifar.train.runtime import global_settings
from raycifar.train.scoring import EVAL_BATCH_SIZE


class CheckpointNotWritten(Exception):
    """Rank 0 could not write (or upload) an epoch's checkpoint; the message is one line."""


def describe_os_error(err: OSError) -> str:
    """An OSError in one line: its reason and the path, without a traceback."""
    reason = err.strerror or (str(err).strip().splitlines() or [type(err).__name__])[0]
    return f"{reason}: {err.filename}" if err.filename else reason

INIT_CHECKPOINT_KEY = "init_checkpoint"  # in a loop config: a checkpoint path to start from (PBT)
TIMELINE_KEY = "timeline"  # in a loop config: {"dir": sweep folder, "trial": id} for the debug timeline (raycifar.timeline)


class WorkerSession(Protocol):
    """Where one worker of a trial runs and reports (Ray Train's or Tune's session).

    ``rank``/``world_size``: the worker's place in its run; ``held``: the Ray resources it
    holds (``{"CPU": 2.0, "GPU": 1.0}``); ``device``: where it trains."""

    rank: int
    world_size: int
    held: dict[str, float]
    device: torch.device

    def wrap(self, model: nn.Module) -> nn.Module:
        """The model as the loop calls it (Ray Train: DistributedDataParallel when distributed)."""

    def own_checkpoint(self) -> AbstractContextManager[Path | None]:
        """The folder of the run's own latest checkpoint, when it was restarted (else None)."""

    def staging(self) -> AbstractContextManager[Path]:
        """An empty folder the loop fills with the epoch's checkpoint before :meth:`report`."""

    def report(self, metrics: EpochMetrics, checkpoint: Path | None) -> None:
        """Report an epoch, with ``checkpoint`` (a filled :meth:`staging` folder) or none."""


class TrainSession:
    """:class:`WorkerSession` of a Ray Train worker: ``ray.train``'s context, checkpoints and reports."""

    def __init__(self) -> None:
        context = ray.train.get_context()
        self.rank, self.world_size = context.get_world_rank(), context.get_world_size()
        self.held = ray.get_runtime_context().get_assigned_resources()
        torch.set_num_threads(max(1, int(self.held.get("CPU", 1))))
        self.device = ray.train.torch.get_device()

    def wrap(self, model: nn.Module) -> nn.Module:
        return ray.train.torch.prepare_model(model)

    @contextmanager
    def own_checkpoint(self) -> Iterator[Path | None]:
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            yield None
            return
        with checkpoint.as_directory() as folder:
            yield Path(folder)

    @contextmanager
    def staging(self) -> Iterator[Path]:
        with tempfile.TemporaryDirectory() as folder:
            yield Path(folder)

    def report(self, metrics: EpochMetrics, checkpoint: Path | None) -> None:
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(checkpoint) if checkpoint else None)


def _restore(training: Training, session: WorkerSession, init_checkpoint: str | None) -> tuple[int, EpochMetrics | None]:
    """Load the run's own latest checkpoint if it was restarted, else ``init_checkpoint``
    (a path; another run's, e.g. a PBT donor's) if given. Returns the next epoch (0: none)
    and, for the run's own checkpoint, the metrics reported with it (None if not kept)."""
    with session.own_checkpoint() as own:
        if own is not None:
            metrics = own / METRICS_FILE
            kept = json.loads(metrics.read_text()) if metrics.is_file() else None
            return training.load(own), kept
    if init_checkpoint is None:
        return 0, None
    with ray.train.Checkpoint(init_checkpoint).as_directory() as folder:
        return training.load(Path(folder)), None


def _report(metrics: EpochMetrics, training: Training, session: WorkerSession) -> None:
    """Report metrics from every worker; rank 0 attaches the epoch's checkpoint."""
    if session.rank != 0:
        session.report(metrics, None)
        return
    try:
        with session.staging() as folder:
            training.save(folder, metrics[EPOCH])
            (folder / METRICS_FILE).write_text(json.dumps(metrics, default=str))
            session.report(metrics, folder)
    except OSError as err:  # a full disk, a file where a folder should be, a lost mount
        raise CheckpointNotWritten(
            f"the checkpoint of epoch {metrics[EPOCH]} could not be written ({describe_os_error(err)})"
        ) from None


def held_hardware(device: torch.device, held: dict[str, float]) -> dict:
    """What every report says of the worker's hardware (:mod:`raycifar.results.cost` reads it):
    ``device``, the torch device type (``"cpu"``, ``"cuda"``), ``worker_cpus`` /
    ``worker_gpus``, the Ray resources ``held`` (``{"CPU": 2.0, "GPU": 1.0}``) by the worker,
    and ``worker_pid``, the process that trains (the fault tests find it by this)."""
    return {
        "device": device.type,
        WORKER_CPUS: float(held.get("CPU", 0.0)),
        WORKER_GPUS: float(held.get("GPU", 0.0)),
        WORKER_PID: os.getpid(),
    }


def run_worker(config_dict: dict, session: WorkerSession, fingerprint: str | None = None) -> None:
    """Train one trial config (a :class:`TrialConfig` as JSON values, maybe with
    :data:`INIT_CHECKPOINT_KEY`) under ``session``, reporting and checkpointing every epoch.
    ``fingerprint``: the data's (:func:`raycifar.data.fingerprint.data_fingerprint`); given, the
    decoded split is kept in this process for the next trial on the same data."""
    config_dict = dict(config_dict)
    init_checkpoint = config_dict.pop(INIT_CHECKPOINT_KEY, None)
    timeline = config_dict.pop(TIMELINE_KEY, None) or {}
    timeline_dir, trial = timeline.get("dir"), timeline.get("trial")
    mark(timeline_dir, "worker_start", trial=trial, rank=session.rank)
    config = TrialConfig.model_validate(config_dict)
    cpus = max(1, int(session.held.get("CPU", 1)))
    hardware = held_hardware(session.device, session.held)
    train_loader, val_loader, shift_loader = make_loaders(
        config, session.device, session.rank, session.world_size, cpus, EVAL_BATCH_SIZE, fingerprint=fingerprint
    )
    mark(timeline_dir, "data_ready", trial=trial, rank=session.rank)
    with global_settings(config.train, config.seed):
        training = Training(config, train_loader, val_loader, session.device, wrap=session.wrap, shift_loader=shift_loader)
        mark(timeline_dir, "model_ready", trial=trial, rank=session.rank)
        start_epoch, last = _restore(training, session, init_checkpoint)
        if last is not None and start_epoch >= config.train.epochs:  # trained, but maybe never seen: again
            _report({**last, RESUMED_FROM_EPOCH: start_epoch}, training, session)
        mark(timeline_dir, "worker_ready", trial=trial, rank=session.rank)
        for epoch in range(start_epoch, config.train.epochs):
            metrics = {
                **training.run_epoch(epoch), WORLD_SIZE: session.world_size, RESUMED_FROM_EPOCH: start_epoch, **hardware,
            }  # fmt: skip
            mark(timeline_dir, "epoch_end", trial=trial, rank=session.rank, epoch=epoch + 1, train_s=metrics.get(TRAIN_SECONDS), eval_s=metrics.get(EVAL_SECONDS))
            if metrics.get(DIVERGED):  # every rank saw it at the same step (raycifar.train.loop)
                session.report(metrics, None)
                return
            _report(metrics, training, session)


def train_loop_per_worker(config_dict: dict) -> None:
    """Ray Train entry point: train one trial config, reporting and checkpointing every epoch."""
    run_worker(config_dict, TrainSession())
