"""The in-trial path runs many trials in one reused process: no state may leak from one
trial into the next. A trial run after two trials of other architectures (one of them
diverged) must give bit-identical metrics to the same trial run alone in a fresh process.

The loop runs as on the in-trial path (:func:`raycifar.train.worker.run_worker`, the data
fingerprint given so the decoded split is kept between trials), under a session that
reports to a list instead of Tune; no Ray is needed."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import loaders
from raycifar.data.fingerprint import data_fingerprint
from raycifar.models.budget import count_params
from raycifar.train.checkpoints import CheckpointFolder
from raycifar.train.worker import run_worker

TIMING_KEYS = {"train_seconds", "eval_seconds", "worker_pid", "checkpoint_path"}


class ListSession:
    """A :class:`raycifar.train.worker.WorkerSession` on the CPU that keeps the reports."""

    rank, world_size = 0, 1
    held = {"CPU": 1.0}
    device = torch.device("cpu")

    def __init__(self, run_dir: Path) -> None:
        self.checkpoints = CheckpointFolder(run_dir, "val_acc")
        self.reports: list[dict] = []

    def wrap(self, model):
        return model

    @contextmanager
    def own_checkpoint(self) -> Iterator[Path | None]:
        latest = self.checkpoints.latest()
        yield latest.path if latest else None

    @contextmanager
    def staging(self) -> Iterator[Path]:
        yield self.checkpoints.staging()

    def report(self, metrics: dict, checkpoint: Path | None) -> None:
        if checkpoint is not None:
            self.checkpoints.commit(checkpoint)
        self.reports.append({k: v for k, v in metrics.items() if k not in TIMING_KEYS})


def trial(data_dir: Path, depths: tuple[int, ...], widths: tuple[int, ...], lr: float, seed: int) -> dict:
    model = ModelConfig(depths=depths, widths=widths)
    return TrialConfig(
        space="reuse", data_dir=str(data_dir), seed=seed, params=count_params(model), model=model,
        train=TrainConfig(optimizer="sgd", lr=lr, batch_size=64, epochs=2, schedule="onecycle", mixup_alpha=0.2),
    ).model_dump(mode="json")  # fmt: skip


def run(config: dict, run_dir: Path, fingerprint: str) -> list[dict]:
    """One trial as the in-trial path runs it, with torch's threads set from the trial's CPUs
    (raycifar.sweep.in_trial does the same before each trial)."""
    session, threads = ListSession(run_dir), torch.get_num_threads()
    torch.set_num_threads(int(session.held["CPU"]))
    try:
        run_worker(config, session, fingerprint)
    finally:
        torch.set_num_threads(threads)
    return session.reports


ALONE = """
import json, sys
sys.path.insert(0, sys.argv[1])
from test_reused_process import run
from pathlib import Path
print(json.dumps(run(json.loads(sys.argv[2]), Path(sys.argv[3]), sys.argv[4])))
"""


def test_a_trial_after_others_in_the_same_process_matches_it_alone(cifar_dir: Path, tmp_path: Path) -> None:
    fingerprint = data_fingerprint(cifar_dir)
    wide = trial(cifar_dir, (1, 1, 1), (12, 24, 48), 0.1, seed=3)
    diverging = trial(cifar_dir, (1, 1), (8, 16), 1e6, seed=5)
    checked = trial(cifar_dir, (1, 1), (8, 16), 0.1, seed=7)

    first = run(wide, tmp_path / "wide", fingerprint)
    second = run(diverging, tmp_path / "diverging", fingerprint)
    assert len(first) == 2 and second[-1].get("diverged") is True  # the earlier trials really ran
    assert len(loaders._SPLITS) == 1  # and the split was kept for the next trial
    reused = run(checked, tmp_path / "reused", fingerprint)

    alone = subprocess.run(
        [sys.executable, "-c", ALONE, str(Path(__file__).parent), json.dumps(checked), str(tmp_path / "alone"), fingerprint],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    fresh = json.loads(alone.stdout.strip().splitlines()[-1])
    assert [r["epoch"] for r in reused] == [1, 2]
    assert reused == fresh  # every loss, accuracy and learning rate, bit for bit


def test_rewritten_data_files_get_a_new_fingerprint_so_no_kept_split_is_reused(tmp_path: Path) -> None:
    from cifar_files import write_cifar10

    folder = write_cifar10(tmp_path / "data", train_batches=2, per_batch=100, test=50)
    before = data_fingerprint(folder)
    assert data_fingerprint(folder) == before  # the same files: the same fingerprint, nothing read
    write_cifar10(tmp_path / "data", train_batches=2, per_batch=100, test=50, seed=1)  # rewritten in place
    assert data_fingerprint(folder) != before
