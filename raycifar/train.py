"""The per-worker training loop run by each Ray Train worker of a trial.

Each epoch: train on the worker's shard of the training split, evaluate on the whole
validation split, then report ``train_loss, val_loss, val_acc, epoch, params`` with a
checkpoint (written by rank 0). A restarted trial resumes from its last checkpoint.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

from raycifar.config import TrainConfig, TrialConfig
from raycifar.data.loaders import Loader, make_loaders
from raycifar.models import MODEL_FILE, build_model, save_model_files, unwrap
from raycifar.regularizers import BatchLoss

STATE_FILE = "train_state.pt"
EVAL_BATCH_SIZE = 500


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """SGD with Nesterov momentum, or AdamW."""
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(), lr=train.lr, momentum=train.momentum,
            nesterov=train.momentum > 0, weight_decay=train.weight_decay,
        )  # fmt: skip
    return torch.optim.AdamW(model.parameters(), lr=train.lr, weight_decay=train.weight_decay)


def make_schedule(
    optimizer: torch.optim.Optimizer, train: TrainConfig, total_steps: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """Per-step cosine decay or one-cycle over ``total_steps``."""
    if train.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=train.lr, total_steps=total_steps)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


def train_epoch(
    model: nn.Module,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    batch_loss: BatchLoss,
) -> float:
    """One pass over the loader; returns the mean training loss."""
    model.train()
    total, count = torch.zeros((), dtype=torch.float64, device=loader.device), 0
    for images, labels in loader:
        loss = batch_loss(model, images, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        total += loss.detach() * len(labels)  # stays on the device: no host sync per batch
        count += len(labels)
    return total.item() / max(count, 1)


@torch.no_grad()
def evaluate(model: nn.Module, loader: Loader) -> tuple[float, float, int]:
    """Mean cross-entropy, accuracy and number of images over an un-augmented loader."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    count = 0
    for images, labels in loader:
        logits = model(images)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        count += len(labels)
    return loss_sum.item() / max(count, 1), correct.item() / max(count, 1), count


def _restore(model: nn.Module, optimizer: torch.optim.Optimizer, schedule, device) -> int:
    """Load the last reported checkpoint, if this trial was restarted; returns the next epoch."""
    import ray.train

    checkpoint = ray.train.get_checkpoint()
    if checkpoint is None:
        return 0
    with checkpoint.as_directory() as folder:
        unwrap(model).load_state_dict(load_file(str(Path(folder) / MODEL_FILE), device=str(device)))
        state = torch.load(Path(folder) / STATE_FILE, map_location=device, weights_only=True)
    optimizer.load_state_dict(state["optimizer"])
    schedule.load_state_dict(state["schedule"])
    return int(state["epoch"])


def _report(metrics: dict, model, optimizer, schedule, config: TrialConfig, rank: int) -> None:
    """Report metrics from every worker; rank 0 attaches the epoch's checkpoint."""
    import ray.train

    if rank != 0:
        ray.train.report(metrics)
        return
    with tempfile.TemporaryDirectory() as folder:
        save_model_files(Path(folder), model, config)
        state = {"optimizer": optimizer.state_dict(), "schedule": schedule.state_dict(), "epoch": metrics["epoch"]}
        torch.save(state, Path(folder) / STATE_FILE)
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(folder))


def train_loop_per_worker(config_dict: dict) -> None:
    """Ray Train entry point: train one trial config, reporting and checkpointing every epoch."""
    import ray
    import ray.train
    import ray.train.torch

    config = TrialConfig.model_validate(config_dict)
    context = ray.train.get_context()
    rank, world_size = context.get_world_rank(), context.get_world_size()
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    torch.set_num_threads(max(1, int(cpus)))
    torch.manual_seed(config.seed)
    device = ray.train.torch.get_device()

    train_loader, val_loader = make_loaders(config, device, rank, world_size, max(1, int(cpus)), EVAL_BATCH_SIZE)
    batch_loss = BatchLoss.for_trial(config, device)
    model = ray.train.torch.prepare_model(build_model(config.model, device))
    optimizer = make_optimizer(model, config.train)
    schedule = make_schedule(optimizer, config.train, len(train_loader) * config.train.epochs)
    start_epoch = _restore(model, optimizer, schedule, device)

    for epoch in range(start_epoch, config.train.epochs):
        train_loader.set_epoch(epoch)
        batch_loss.set_epoch(epoch)
        train_loss = train_epoch(model, train_loader, optimizer, schedule, batch_loss)
        val_loss, val_acc, _ = evaluate(model, val_loader)
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_acc": val_acc,
            "params": config.params,
            "lr": schedule.get_last_lr()[0],
            "world_size": world_size,
        }
        _report(metrics, model, optimizer, schedule, config, rank)
