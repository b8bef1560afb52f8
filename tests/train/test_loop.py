"""The per-worker loop's pieces, run directly on the CPU without Ray."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from raycifar.config import ModelConfig, TrainConfig
from raycifar.data import DeviceLoader, train_val_split
from raycifar.models.resnet import build_model
from raycifar.train.epoch import train_epoch
from raycifar.train.loss import BatchLoss
from raycifar.train.optim import make_optimizer, make_schedule
from raycifar.train.scoring import loss_and_accuracy

MODEL = ModelConfig(depths=(1, 1), widths=(8, 16))


@pytest.mark.parametrize(
    "train",
    [
        TrainConfig(optimizer="sgd", lr=0.1, schedule="onecycle", label_smoothing=0.1),
        TrainConfig(optimizer="adamw", lr=3e-3, weight_decay=0.05, schedule="cosine", mixup_alpha=0.4),
    ],
)
def test_a_few_epochs_learn_the_synthetic_classes(cifar_dir: Path, train: TrainConfig) -> None:
    torch.manual_seed(0)
    device = torch.device("cpu")
    train_set, val_set = train_val_split(cifar_dir, 0.1, 0)
    loader = DeviceLoader(train_set, 64, device, train=True, seed=0)
    val = DeviceLoader(val_set, 500, device, train=False)
    model = build_model(MODEL)
    optimizer = make_optimizer(model, train)
    schedule = make_schedule(optimizer, train, len(loader))
    _, before, _ = loss_and_accuracy(model, val)
    for epoch in range(3):
        loader.set_epoch(epoch)
        train_epoch(model, loader, optimizer, schedule, train, BatchLoss(train, num_classes=10))
    _, after, count = loss_and_accuracy(model, val)
    assert count == 60 and after > max(before, 0.3)
