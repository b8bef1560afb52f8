"""The Ray Train worker entry point: each worker of a trial runs :func:`train_loop_per_worker`.

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
import tempfile
from pathlib import Path

import ray
import ray.train
import ray.train.torch
import torch

from raycifar.config import TrialConfig
from raycifar.data.loaders import make_loaders
from raycifar.results.schema import EPOCH, RESUMED_FROM_EPOCH, WORKER_CPUS, WORKER_GPUS, WORLD_SIZE, EpochMetrics
from raycifar.results.selection import DIVERGED
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
CHECKPOINT_METRICS_FILE = "metrics.json"  # in a checkpoint: the metrics reported with it


def _restore(training: Training, init_checkpoint: str | None) -> tuple[int, EpochMetrics | None]:
    """Load the run's last reported checkpoint if it was restarted, else ``init_checkpoint``
    (a path; another run's, e.g. a PBT donor's) if given. Returns the next epoch (0: none)
    and, for the run's own checkpoint, the metrics reported with it (None if not kept)."""
    own = ray.train.get_checkpoint()
    checkpoint = own or (ray.train.Checkpoint(init_checkpoint) if init_checkpoint else None)
    if checkpoint is None:
        return 0, None
    with checkpoint.as_directory() as folder:
        metrics = Path(folder) / CHECKPOINT_METRICS_FILE
        kept = json.loads(metrics.read_text()) if own is not None and metrics.is_file() else None
        return training.load(Path(folder)), kept


def _report(metrics: EpochMetrics, training: Training, rank: int) -> None:
    """Report metrics from every worker; rank 0 attaches the epoch's checkpoint."""
    if rank != 0:
        ray.train.report(metrics)
        return
    try:
        with tempfile.TemporaryDirectory() as folder:
            training.save(Path(folder), metrics[EPOCH])
            (Path(folder) / CHECKPOINT_METRICS_FILE).write_text(json.dumps(metrics, default=str))
            ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))
    except OSError as err:  # a full disk, a file where a folder should be, a lost mount
        raise CheckpointNotWritten(
            f"the checkpoint of epoch {metrics[EPOCH]} could not be written ({describe_os_error(err)})"
        ) from None


def held_hardware(device: torch.device, held: dict[str, float]) -> dict:
    """What every report says of the worker's hardware (:mod:`raycifar.results.cost` reads it):
    ``device``, the torch device type (``"cpu"``, ``"cuda"``), and ``worker_cpus`` /
    ``worker_gpus``, the Ray resources ``held`` (``{"CPU": 2.0, "GPU": 1.0}``) by the worker."""
    return {
        "device": device.type,
        WORKER_CPUS: float(held.get("CPU", 0.0)),
        WORKER_GPUS: float(held.get("GPU", 0.0)),
    }


def train_loop_per_worker(config_dict: dict) -> None:
    """Ray Train entry point: train one trial config, reporting and checkpointing every epoch."""
    config_dict = dict(config_dict)
    init_checkpoint = config_dict.pop(INIT_CHECKPOINT_KEY, None)
    config = TrialConfig.model_validate(config_dict)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    held = ray.get_runtime_context().get_assigned_resources()
    cpus = held.get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    device = ray.train.torch.get_device()
    hardware = held_hardware(device, held)

    train_loader, val_loader = make_loaders(config, device, rank, world_size, max(1, int(cpus)), EVAL_BATCH_SIZE)
    with global_settings(config.train, config.seed):
        training = Training(config, train_loader, val_loader, device, wrap=ray.train.torch.prepare_model)
        start_epoch, last = _restore(training, init_checkpoint)
        if last is not None and start_epoch >= config.train.epochs:  # trained, but maybe never seen: again
            _report({**last, RESUMED_FROM_EPOCH: start_epoch}, training, rank)
        for epoch in range(start_epoch, config.train.epochs):
            metrics = {
                **training.run_epoch(epoch), WORLD_SIZE: world_size, RESUMED_FROM_EPOCH: start_epoch, **hardware,
            }  # fmt: skip
            if metrics.get(DIVERGED):  # every rank saw it at the same step (raycifar.train.loop)
                ray.train.report(metrics)
                return
            _report(metrics, training, rank)
