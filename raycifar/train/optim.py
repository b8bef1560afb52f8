"""The optimizer, the learning-rate schedule and the weight average of one run.

SGD (Nesterov) or AdamW, optionally without weight decay on norms and biases; cosine,
linear, one-cycle, step and multistep schedules stepped every optimizer step; an
exponential moving average of the weights (EMA), with "lookahead" resets.
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from raycifar.config import TrainConfig

LR_CONSTANTS = ("initial_lr", "max_lr", "min_lr")  # what the schedules store in each optimizer group


ONECYCLE_DEFAULT_WARMUP = 0.3  # share of the steps spent warming up when warmup_epochs is 0


def parameter_groups(model: nn.Module, train: TrainConfig) -> list[dict]:
    """One group, or (``decay_norm_and_bias: false``) weights apart from norms and biases,
    which get no weight decay. Norm weights and biases are the 1-dimensional parameters."""
    params = [p for p in model.parameters() if p.requires_grad]
    if train.decay_norm_and_bias:
        return [{"params": params}]
    return [
        {"params": [p for p in params if p.ndim > 1]},
        {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0},
    ]


def make_optimizer(model: nn.Module, train: TrainConfig) -> torch.optim.Optimizer:
    """SGD with momentum (Nesterov when ``nesterov`` and momentum > 0), or AdamW."""
    groups = parameter_groups(model, train)
    if train.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=train.lr, momentum=train.momentum,
            nesterov=train.nesterov and train.momentum > 0, weight_decay=train.weight_decay,
        )  # fmt: skip
    return torch.optim.AdamW(groups, lr=train.lr, weight_decay=train.weight_decay)


def lr_factor(train: TrainConfig, step: int, steps_per_epoch: int) -> float:
    """The learning rate of optimizer step ``step`` (from 0) as a fraction of ``lr``.

    A linear warmup over ``warmup_epochs``, then ``cosine`` or ``linear`` decay to 0 at the
    end of training, or ``step`` (times ``lr_gamma`` every ``step_epochs``) or
    ``multistep`` (times ``lr_gamma`` at each of ``milestones``, fractions of training).
    """
    total = steps_per_epoch * train.epochs
    warmup = min(round(train.warmup_epochs * steps_per_epoch), total)
    if step < warmup:
        return (step + 1) / warmup
    if train.schedule == "step":
        return train.lr_gamma ** (step // (train.step_epochs * steps_per_epoch))
    if train.schedule == "multistep":
        return train.lr_gamma ** sum(step >= m * total for m in train.milestones)
    progress = (step - warmup) / max(total - warmup, 1)
    if train.schedule == "linear":
        return 1.0 - progress
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def make_schedule(
    optimizer: torch.optim.Optimizer, train: TrainConfig, steps_per_epoch: int
) -> torch.optim.lr_scheduler.LRScheduler:
    """The per-step learning-rate schedule of ``train`` over ``train.epochs`` epochs.

    ``onecycle`` is PyTorch's OneCycleLR (it also cycles momentum); its warmup lasts
    ``warmup_epochs`` when set, else 30% of the steps.
    """
    if train.schedule == "onecycle":
        total = steps_per_epoch * train.epochs
        warmup = train.warmup_epochs / train.epochs if train.warmup_epochs > 0 else ONECYCLE_DEFAULT_WARMUP
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=train.lr, total_steps=total, pct_start=min(warmup, 1.0)
        )
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(train, step, steps_per_epoch))


def _sides(pairs: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """``[(a, b), ...]`` as ``([a, ...], [b, ...])``."""
    return [a for a, _ in pairs], [b for _, b in pairs]


class WeightAverage:
    """An exponential moving average (EMA) of a model's weights and float buffers.

    Every ``every`` optimizer steps the average moves toward the live weights with decay
    ``min(decay**every, (1 + n) / (10 + n))`` at its ``n``-th update, so that the random
    initialisation fades quickly; integer buffers are copied. With ``lookahead`` the live
    weights are then reset to the average (the fast CIFAR trainers' "lookahead").
    """

    def __init__(self, live: nn.Module, decay: float, every: int = 1, lookahead: bool = False) -> None:
        self.model = copy.deepcopy(live).eval().requires_grad_(False)
        self.decay, self.every, self.lookahead = decay, every, lookahead
        self.steps, self.updates = 0, 0
        # Views of the same storage as the live weights; build after any memory-format change.
        pairs = list(zip(self.model.state_dict().values(), live.state_dict().values(), strict=True))
        self.averaged, self.live = _sides([pair for pair in pairs if pair[0].is_floating_point()])
        self.averaged_counts, self.live_counts = _sides([pair for pair in pairs if not pair[0].is_floating_point()])

    @torch.no_grad()
    def step(self) -> None:
        """Count one optimizer step; update the average every ``every`` steps."""
        self.steps += 1
        if self.steps % self.every:
            return
        decay = min(self.decay**self.every, (1 + self.updates) / (10 + self.updates))
        self.updates += 1
        torch._foreach_lerp_(self.averaged, self.live, 1.0 - decay)  # fused: one kernel per dtype and device
        if self.live_counts:
            torch._foreach_copy_(self.averaged_counts, self.live_counts)
        if self.lookahead:
            torch._foreach_copy_(self.live, self.averaged)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "updates": self.updates}

    def load_state_dict(self, state: dict) -> None:
        self.steps, self.updates = int(state["steps"]), int(state["updates"])
