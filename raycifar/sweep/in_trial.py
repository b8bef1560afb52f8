"""The in-trial path: a single-worker trial trains inside its Tune trial's own process, with
no Ray Train run (no controller, no worker actor), and Tune reuses the process for the
next trial (``reuse_actors``).

The trial runs the one worker loop (:func:`raycifar.train.worker.run_worker`) under
:class:`TuneSession`: it reports every epoch to Tune and writes its checkpoints where a Ray
Train run would (``<sweep>/train_runs/<trial id>/``, :mod:`raycifar.train.checkpoints`), so
selection, promotion, status and the report read them alike. A trial that Tune restarts
(``FailureConfig``: a crashed process, a lost node, a resumed sweep) goes on from the
latest checkpoint there, never from epoch 0.

Resume: Tune saves its results (``trial_<id>/result.json`` in the sweep folder) every few
seconds, so a driver killed between two saves leaves the last epochs of its running trials
only in their own ``epochs.jsonl``. A trial that a new driver starts
(:meth:`~raycifar.train.checkpoints.CheckpointFolder.claim`) first reports those epochs
again, up to its latest checkpoint, so that every epoch is in its results exactly once.

Reuse: Tune hands a stopped trial's process to the next trial only once its training thread
has ended within ``TUNE_FUNCTION_THREAD_TIMEOUT_S`` (2 s by default; otherwise the next trial
fails unseen by the searcher). The thread ends at its next report (Tune raises ``SystemExit``
there), so the unwind is the end of one epoch's report: :data:`UNWIND_TIMEOUT_S` is set in
every trial process, far above it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import ray
import torch
from ray import tune
from torch import nn

from raycifar.errors import UserError
from raycifar.results.schema import CHECKPOINT_PATH, EPOCH, EpochMetrics
from raycifar.results.trial_files import TrialFolder, planned_epochs, trial_folder
from raycifar.train.checkpoints import CheckpointFolder
from raycifar.train.run import selection_metric
from raycifar.train.worker import run_worker

UNWIND_TIMEOUT_S = 60  # how long Tune waits for a stopped trial's thread before reusing its process


class TuneSession:
    """:class:`raycifar.train.worker.WorkerSession` of a trial that trains in its Tune trial:
    rank 0 of 1, the trial's Ray resources, its own checkpoint folder, reports to Tune."""

    rank = 0
    world_size = 1

    def __init__(self, checkpoints: CheckpointFolder, device: torch.device) -> None:
        self.checkpoints = checkpoints
        self.held = ray.get_runtime_context().get_assigned_resources()
        self.device = device

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    @contextmanager
    def own_checkpoint(self) -> Iterator[Path | None]:
        latest = self.checkpoints.latest()
        yield latest.path if latest is not None else None

    @contextmanager
    def staging(self) -> Iterator[Path]:
        folder = self.checkpoints.staging()
        try:
            yield folder
        finally:  # committed: renamed away; otherwise (an error, a stop) removed
            shutil.rmtree(folder, ignore_errors=True)

    def report(self, metrics: EpochMetrics, checkpoint: Path | None) -> None:
        path = self.checkpoints.commit(checkpoint) if checkpoint is not None else None
        reported = {**metrics, CHECKPOINT_PATH: str(path) if path else None}
        self.checkpoints.log_epoch(reported)
        tune.report(reported)


def _saved_epochs(folder: TrialFolder) -> int:
    """The last epoch in Tune's saved results of the trial (0: none; -1: unreadable)."""
    try:
        rows = folder.results()
    except UserError:
        return -1
    return max((int(row.get(EPOCH, 0)) for row in rows), default=0)


def report_unseen(checkpoints: CheckpointFolder, folder: TrialFolder) -> int:
    """Report again the logged epochs after the last one in Tune's saved results, up to the
    latest checkpoint (a resumed sweep: see the module doc); returns the last epoch reported
    (0: none)."""
    latest, saved = checkpoints.latest(), _saved_epochs(folder)
    if latest is None or saved < 0:
        return 0
    rows = checkpoints.logged()
    if latest.epoch not in {int(row.get(EPOCH, 0)) for row in rows}:  # killed between its commit and its log line
        rows.append({**latest.metrics, CHECKPOINT_PATH: str(latest.path)})
    last = 0
    for row in rows:
        if saved < int(row.get(EPOCH, 0)) <= latest.epoch:
            tune.report(row)
            last = int(row[EPOCH])
    return last


def trial_device(gpus: float) -> torch.device:
    """The device of a trial holding ``gpus`` GPUs: the first GPU Ray made visible to its
    process (Ray sets ``CUDA_VISIBLE_DEVICES``), else the CPU."""
    return torch.device("cuda", 0) if gpus > 0 and torch.cuda.is_available() else torch.device("cpu")


def report_unseen_after_resume(config: dict, run_dir: Path, driver_id: str) -> int:
    """When a new driver (a resumed sweep) starts the trial of ``run_dir``, report the epochs
    Tune's saved results lack (:func:`report_unseen`); returns the last epoch reported (0: none)."""
    checkpoints = CheckpointFolder(run_dir, selection_metric(config))
    if not checkpoints.claim(driver_id):
        return 0
    return report_unseen(checkpoints, trial_folder(run_dir.parent.parent, run_dir.name))


def run_in_trial(config: dict, run_dir: Path, gpus: float, fingerprint: str | None, driver_id: str) -> None:
    """Train one trial config in this Tune trial (see the module doc); its checkpoints go to
    ``run_dir`` (``<sweep>/train_runs/<trial id>``); ``driver_id``: the sweep driver's. Raises
    what the worker loop raises (a failed checkpoint write, a crash)."""
    os.environ["TUNE_FUNCTION_THREAD_TIMEOUT_S"] = str(UNWIND_TIMEOUT_S)  # read by Tune in this process
    if report_unseen_after_resume(config, run_dir, driver_id) >= planned_epochs(config):
        return  # every epoch trained and now reported
    session = TuneSession(CheckpointFolder(run_dir, selection_metric(config)), trial_device(gpus))
    torch.set_num_threads(max(1, int(session.held.get("CPU", 1))))
    run_worker(config, session, fingerprint)

