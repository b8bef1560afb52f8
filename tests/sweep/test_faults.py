"""Faults without Ray: divergence detection in the loop, the one-line reasons of a checkpoint
that cannot be written and of a failed Train run (tests/sweep/test_faults_e2e.py runs them on Ray)."""

from __future__ import annotations

import errno
import math
import os
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from ray.train import WorkerGroupError

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import DeviceLoader, ImageSet
from raycifar.sweep import outcome as sweep
from raycifar.train import epoch, loop, worker
from raycifar.train.loop import Training
from raycifar.train.run import divergence_message, failure_reason
from raycifar.train.runtime import global_settings

CPU = torch.device("cpu")


def training(lr: float, images: int = 256, batch_size: int = 16) -> Training:
    """A tiny model on random images: ``images / batch_size`` steps an epoch."""
    rng = np.random.default_rng(0)
    data = ImageSet(rng.integers(0, 256, (images, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, images))
    train = TrainConfig(lr=lr, epochs=2, schedule="onecycle", batch_size=batch_size)
    config = TrialConfig(
        space="t", data_dir="unused", params=1, model=ModelConfig(depths=(1, 1), widths=(8, 16)), train=train
    )
    with global_settings(train, seed=0):
        return Training(
            config,
            DeviceLoader(data, batch_size, CPU, train=True, seed=0),
            DeviceLoader(data, 64, CPU, train=False),
            CPU,
        )


def test_a_nan_loss_stops_the_epoch_at_the_next_check_and_the_epoch_is_marked_diverged(monkeypatch) -> None:
    monkeypatch.setattr(epoch, "DIVERGENCE_CHECK_EVERY", 3)
    run = training(lr=0.1)
    with torch.no_grad():
        next(run.net.parameters()).fill_(math.nan)  # every loss from the first step on is NaN
    metrics = run.run_epoch(0)
    assert metrics["diverged"] is True and math.isnan(metrics["train_loss"]) and math.isnan(metrics["val_acc"])
    assert run.schedule.last_epoch == 3, "stopped at the first check, not after all 16 steps"


def test_a_learning_rate_far_too_high_diverges_in_the_first_epoch_and_a_sane_one_does_not() -> None:
    absurd = training(lr=1.0e6).run_epoch(0)
    sane = training(lr=0.1).run_epoch(0)
    assert absurd["diverged"] is True and math.isnan(absurd["val_acc"])
    assert "diverged" not in sane and math.isfinite(sane["train_loss"]) and math.isfinite(sane["val_acc"])
    assert divergence_message({**absurd, "world_size": 1}).startswith("diverged at epoch 1 (")
    assert divergence_message(sane) is None


class Rank0Session(worker.TrainSession):
    """Ray Train's session of rank 0, without Ray: its checkpoint staging, reports dropped."""

    def __init__(self) -> None:
        self.rank, self.world_size = 0, 1

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        pass


def test_a_checkpoint_that_cannot_be_written_fails_with_one_line(monkeypatch, tmp_path: Path) -> None:
    run = training(lr=0.1, images=32)
    metrics = {"epoch": 2, "val_acc": 0.5}

    def full_disk(folder: Path, epoch: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / loop.STATE_FILE))

    monkeypatch.setattr(run, "save", full_disk)
    with pytest.raises(worker.CheckpointNotWritten) as full:
        worker._report(metrics, run, Rank0Session())
    assert str(full.value).startswith("the checkpoint of epoch 2 could not be written (No space left on device: /")

    monkeypatch.undo()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the checkpoint's temporary folder should go")
    monkeypatch.setattr("tempfile.tempdir", str(blocker))
    with pytest.raises(worker.CheckpointNotWritten) as blocked:
        worker._report(metrics, run, Rank0Session())
    message = str(blocked.value)
    assert "\n" not in message and "Not a directory" in message and str(blocker) in message


def test_a_failed_train_run_is_told_by_the_worker_error_that_caused_it() -> None:
    written = worker.CheckpointNotWritten(
        "the checkpoint of epoch 1 could not be written (No space left on device: /x)"
    )
    both = WorkerGroupError("long text\nwith tracebacks", {1: RuntimeError("collective aborted"), 0: written})
    assert (
        failure_reason(both)
        == "the checkpoint of epoch 1 could not be written (No space left on device: /x) (worker 0)"
    )
    crashed = WorkerGroupError("long text", {0: RuntimeError("boom\n  File ...")})
    assert failure_reason(crashed) == "worker 0 failed: RuntimeError: boom"


def test_the_sweep_reads_a_failed_trials_reason_from_the_error_file_tune_wrote(tmp_path: Path) -> None:
    def trial(text: str | None) -> SimpleNamespace:
        if text is None:
            return SimpleNamespace(error_file=None)
        (tmp_path / "error.txt").write_text(text)
        return SimpleNamespace(error_file=str(tmp_path / "error.txt"))

    traceback = "Failure # 1 (occurred at 2026-01-01_00-00-00)\nray::ImplicitFunc.train()\n  File ..., in run_trial\n"
    failed = trial(f"{traceback}raycifar.sweep.outcome.TrialFailed: the checkpoint of epoch 3 could not be written (x)\n")
    assert sweep.error_reason(failed) == "the checkpoint of epoch 3 could not be written (x)"
    assert sweep.error_reason(trial(f"{traceback}ValueError: bad\n")) == "ValueError: bad"
    assert sweep.error_reason(trial(None)) == "see its error.txt"
    ray_error = (  # a trial function that died with its node, as Ray words it
        "ray.exceptions.ActorUnavailableError: The actor 99fa01 is unavailable: RpcError: Socket closed. "
        "The actor may or may not be restarted; see https://docs.ray.io"
    )
    assert sweep.error_reason(trial(f"{traceback}{ray_error}\n")) == "ActorUnavailableError: The actor 99fa01 is unavailable"


def test_a_run_whose_worker_died_at_start_is_fitted_again_up_to_max_failures() -> None:
    """Ray Train never retries a ControllerError (a worker that died while its group started):
    the trial fits its run again under the same name, at most max_failures times."""
    import ray.train

    from raycifar.sweep.outcome import TrialFailed
    from raycifar.sweep.trial import fit_trial
    from raycifar.train.run import TrainRunFailed, fit

    class Run:
        def __init__(self, failures: int) -> None:
            self.failures, self.fits = failures, 0

        def fit(self) -> None:
            self.fits += 1
            if self.fits <= self.failures:
                raise ray.train.ControllerError(RuntimeError("The actor is dead because its worker process has died"))

    recovers = Run(failures=2)
    fit_trial(lambda: recovers, retries=2)
    assert recovers.fits == 3
    gives_up = Run(failures=3)
    with pytest.raises(TrialFailed, match="The actor is dead"):
        fit_trial(lambda: gives_up, retries=2)
    assert gives_up.fits == 3
    crashed = Run(failures=0)
    crashed.fit = lambda: (_ for _ in ()).throw(ray.train.WorkerGroupError("boom", {0: RuntimeError("bad batch")}))
    with pytest.raises(TrialFailed, match="worker 0 failed: RuntimeError: bad batch"):
        fit_trial(lambda: crashed, retries=2)  # Ray Train already restarted it max_failures times: not again
    # raycifar train fits its run the same way: the same retries, the same one-line reason
    again = Run(failures=1)
    fit(lambda: again, retries=1)
    assert again.fits == 2
    with pytest.raises(TrainRunFailed, match="The actor is dead"):
        fit(lambda: Run(failures=2), retries=1)
