"""One training pass over the loader, and the divergence check.

The training loss is summed on the device and checked for NaN or infinity every
:data:`DIVERGENCE_CHECK_EVERY` steps and at the end of the epoch (one host sync each; with
several workers, one all-reduce, so that every rank stops at the same step).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from raycifar.config import TrainConfig
from raycifar.data.loaders import Loader
from raycifar.train.loss import BatchLoss
from raycifar.train.optim import WeightAverage
from raycifar.train.runtime import FLOAT32_CPU, Runtime

DIVERGENCE_CHECK_EVERY = 50  # optimizer steps between checks of the summed loss (each syncs the device once)


def finite_on_every_rank(total: torch.Tensor) -> bool:
    """Whether the scalar ``total`` is finite on this worker and, when a torch process group
    is up, on every worker (one all-reduce of a copy: a NaN or infinity anywhere poisons the
    sum). Every rank must call it at the same step."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        total = total.detach().clone()
        dist.all_reduce(total)
    return bool(torch.isfinite(total))


def train_epoch(
    model: nn.Module,
    loader: Loader,
    optimizer: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    train: TrainConfig,
    batch_loss: BatchLoss,
    runtime: Runtime = FLOAT32_CPU,
    average: WeightAverage | None = None,
    after_first_step: Callable[[], None] | None = None,
) -> float:
    """One pass over the loader; returns the mean training loss on this worker.

    ``after_first_step`` is called once the first optimizer step is done (the training loop
    times a compiled model's first step with it). The loss is NaN or infinite when training diverged on any worker: the pass then stopped
    at the first check that saw it (see the module doc), and the weights are not usable.
    """
    model.train()
    total, count = torch.zeros((), dtype=torch.float64, device=loader.device), 0
    for step, (images, labels) in enumerate(loader, start=1):
        with runtime.autocast():
            loss = batch_loss(model, runtime.prepare(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if train.grad_clip_norm > 0:
            nn.utils.clip_grad_norm_(model.parameters(), train.grad_clip_norm)
        optimizer.step()
        schedule.step()
        if average is not None:
            average.step()
        if step == 1 and after_first_step is not None:
            after_first_step()
        total += loss.detach() * len(labels)  # stays on the device: no host sync per batch
        count += len(labels)
        if step % DIVERGENCE_CHECK_EVERY == 0 and not finite_on_every_rank(total):
            break
    if not finite_on_every_rank(total):
        return math.nan if math.isfinite(total.item()) else total.item() / max(count, 1)
    return total.item() / max(count, 1)
