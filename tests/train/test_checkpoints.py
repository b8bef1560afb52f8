"""The checkpoint folder of an in-trial trial (raycifar.train.checkpoints): what a restarted
trial goes on from, what is kept, and that a write cut short leaves no checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from raycifar.train.checkpoints import KEPT, METRICS_FILE, CheckpointFolder


def save(folder: CheckpointFolder, epoch: int, val_acc: float) -> Path:
    staging = folder.staging()
    (staging / "model.safetensors").write_bytes(b"w" * epoch)
    (staging / METRICS_FILE).write_text(json.dumps({"epoch": epoch, "val_acc": val_acc}))
    return folder.commit(staging)


def test_the_latest_epoch_is_where_a_restarted_trial_goes_on(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path / "run", "val_acc")
    assert folder.latest() is None
    for epoch, acc in [(1, 0.3), (2, 0.5), (3, 0.4)]:
        save(folder, epoch, acc)
    latest = folder.latest()
    assert latest is not None and latest.epoch == 3 and (latest.path / "model.safetensors").read_bytes() == b"www"


def test_the_best_two_and_the_latest_are_kept(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path / "run", "val_acc")
    accs = [0.30, 0.62, 0.55, 0.70, 0.41, 0.20]
    for epoch, acc in enumerate(accs, start=1):
        save(folder, epoch, acc)
    kept = sorted(saved.epoch for saved in folder.saved())
    by_hand = sorted({6, *sorted(range(1, 7), key=lambda e: accs[e - 1], reverse=True)[:KEPT]})
    assert kept == by_hand == [2, 4, 6]


def test_train_plus_val_trials_keep_their_last_epochs(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path / "run", "epoch")
    for epoch in range(1, 5):
        save(folder, epoch, 0.9 - epoch / 10)  # val_acc falls, and does not matter
    assert sorted(saved.epoch for saved in folder.saved()) == [3, 4]


def test_a_write_cut_short_leaves_no_checkpoint_and_is_cleared_by_the_next(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path / "run", "val_acc")
    save(folder, 1, 0.3)
    interrupted = folder.staging()  # killed while writing epoch 2: never committed
    (interrupted / "model.safetensors").write_bytes(b"half")
    assert [saved.epoch for saved in folder.saved()] == [1] and folder.latest().epoch == 1
    save(folder, 2, 0.4)
    assert not interrupted.exists()
    assert [saved.epoch for saved in folder.saved()] == [1, 2]
