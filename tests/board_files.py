"""What the leaderboard tests build by hand: a tiny exported model (a checkpoint folder
holding model.safetensors and config.json) and leaderboard rows without a model."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import torch

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.models.files import save_model_files
from raycifar.models.resnet import build_model


def exported_checkpoint(folder: Path, data_dir: Path, seed: int = 0, tta: str = "none") -> Path:
    """A one-stage ResNet (width 8) with random weights (``seed``), exported into ``folder``."""
    config = TrialConfig(
        space="tiny", data_dir=str(data_dir), params=1, seed=3,
        model=ModelConfig(depths=(1,), widths=(8,)), train=TrainConfig(epochs=1, tta=tta),
    )  # fmt: skip
    torch.manual_seed(seed)
    folder.mkdir(parents=True)
    save_model_files(folder, build_model(config.model), config)
    return folder


def plain_row(entry_id: str, test_acc: float, **fields: object) -> dict:
    """A leaderboard row with the columns the listing shows, as promotion would fill them."""
    return {
        "entry_id": entry_id, "created_at": datetime(2026, 1, 1, tzinfo=timezone.utc), "sweep": "s",
        "space": "tiny", "dataset": "cifar10", "model": "resnet4-w8", "params": 1000, "budget": 5000,
        "val_acc": 0.5, "test_acc": test_acc, "test_loss": 1.0, "epochs": 2, "trial_id": "t",
        "config_json": '{"data_dir": "/d", "train": {"tta": "none"}}', "macs": 123_456, "label_mode": "fine",
        "test_images": 200, "test_acc_ci_low": test_acc - 0.05, "test_acc_ci_high": test_acc + 0.05,
        **fields,
    }  # fmt: skip


def promote_in_child(checkpoint: Path, results: Path, index: int, barrier, queue) -> None:  # noqa: ANN001
    """A child process's promotion: wait until all children are ready, promote, report the id."""
    from raycifar.entries.promote import promote

    torch.set_num_threads(1)
    barrier.wait()
    row = promote(checkpoint, results, sweep="same", trial_id=str(index), val_acc=0.5, epochs=1, source_checkpoint=str(index))
    queue.put(row["entry_id"])
