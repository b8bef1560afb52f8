"""The per-worker training loop, without Ray: one worker's model, optimizer, schedule,
weight average, epochs, evaluation and checkpoint files.

Each epoch (:meth:`Training.run_epoch`): train on the worker's shard of the training split,
then evaluate on the whole validation split (with the EMA weights when ``ema_decay > 0``;
with test-time augmentation as well when ``tta`` is on) and return ``train_loss, val_loss,
val_acc, [val_acc_tta,] epoch, params, lr, train_seconds, eval_seconds`` (seconds of this
worker's training and of its evaluation, each timed on the host after the device finished).

Divergence: the training loss is summed on the device and checked for NaN or infinity every
:data:`DIVERGENCE_CHECK_EVERY` steps and at the end of the epoch (one host sync each; with
several workers, one all-reduce, so that every rank stops at the same step). A diverged
epoch stops at the check, is not evaluated, and its metrics say ``diverged: True`` with
``val_loss``/``val_acc`` NaN; an epoch whose validation loss is not finite is diverged too.

The Ray Train worker (:mod:`raycifar.worker`) and ``benchmarks/`` drive :class:`Training`
the same way.
"""

from __future__ import annotations

import copy
import math
import os
import random
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from raycifar.config import TestTimeAugmentation, TrainConfig, TrialConfig
from raycifar.data.loaders import Loader
from raycifar.export import load_weights, rename_legacy_keys, save_model_files
from raycifar.loss import BatchLoss
from raycifar.models import build_model

STATE_FILE = "train_state.pt"
EVAL_BATCH_SIZE = 500
LR_CONSTANTS = ("initial_lr", "max_lr", "min_lr")  # what the schedules store in each optimizer group
ONECYCLE_DEFAULT_WARMUP = 0.3  # share of the steps spent warming up when warmup_epochs is 0
DIVERGENCE_CHECK_EVERY = 50  # optimizer steps between checks of the summed loss (each syncs the device once)
DIVERGED = "diverged"  # the metric that marks a diverged epoch (True); absent otherwise


@dataclass(frozen=True)
class Runtime:
    """How tensors run on the training device: autocast dtype, memory format, compilation."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None  # None: float32 throughout
    channels_last: bool = False
    compile: bool = False

    def autocast(self) -> AbstractContextManager:
        """The autocast region for forward passes (a no-op in float32)."""
        dtype = self.autocast_dtype or torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.autocast_dtype is not None)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the model expects."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


FLOAT32_CPU = Runtime(torch.device("cpu"))


def resolve_runtime(train: TrainConfig, device: torch.device) -> Runtime:
    """The runtime ``train`` asks for on ``device``; ``auto`` means on for CUDA, off elsewhere."""
    on_cuda = device.type == "cuda"
    bf16 = train.precision == "bf16" or (train.precision == "auto" and on_cuda and torch.cuda.is_bf16_supported())
    return Runtime(
        device=device,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        channels_last=train.channels_last,
        compile=train.compile is True or (train.compile == "auto" and on_cuda),
    )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def global_settings(train: TrainConfig, seed: int) -> Iterator[None]:
    """Seed every generator and set torch's process-wide switches for one run; restore them after.

    ``deterministic`` turns on torch's deterministic algorithms (warning where an op has
    none), cuDNN's deterministic mode and NaN-filled uninitialised memory, and turns
    ``cudnn_benchmark`` off.
    """
    cudnn = torch.backends.cudnn
    saved = (
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    cudnn.benchmark = train.cudnn_benchmark and not train.deterministic
    cudnn.deterministic = train.deterministic
    torch.use_deterministic_algorithms(train.deterministic, warn_only=True)
    seed_everything(seed)
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        torch.use_deterministic_algorithms(saved[2], warn_only=saved[3])


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
) -> float:
    """One pass over the loader; returns the mean training loss on this worker.

    The loss is NaN or infinite when training diverged on any worker: the pass then stopped
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
        total += loss.detach() * len(labels)  # stays on the device: no host sync per batch
        count += len(labels)
        if step % DIVERGENCE_CHECK_EVERY == 0 and not finite_on_every_rank(total):
            break
    if not finite_on_every_rank(total):
        return math.nan if math.isfinite(total.item()) else total.item() / max(count, 1)
    return total.item() / max(count, 1)


def tta_views(images: torch.Tensor, tta: TestTimeAugmentation) -> list[torch.Tensor]:
    """The views test-time augmentation averages: the batch itself; with ``flip`` its mirror
    image; with ``flip_translate`` also both shifted one pixel up-left and down-right
    (reflect padding), each with its mirror image."""
    views = [images]
    if tta == "none":
        return views
    views.append(images.flip(-1))
    if tta == "flip_translate":
        padded = nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
        for shifted in (padded[..., :-2, :-2], padded[..., 2:, 2:]):
            views += [shifted, shifted.flip(-1)]
    return views


@dataclass(frozen=True)
class Scores:
    """Evaluation results: mean cross-entropy, accuracy, number of images, and the
    accuracy of the view-averaged logits (None without test-time augmentation)."""

    loss: float
    acc: float
    count: int
    acc_tta: float | None = None


@torch.no_grad()
def score(
    model: nn.Module, loader: Loader, tta: TestTimeAugmentation = "none", runtime: Runtime = FLOAT32_CPU
) -> Scores:
    """Loss and accuracy over an un-augmented loader, plus the TTA accuracy when ``tta`` is on."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    correct_tta = torch.zeros((), dtype=torch.int64, device=loader.device)
    count = 0
    for images, labels in loader:
        views = tta_views(runtime.prepare(images), tta)
        with runtime.autocast():
            logits = model(views[0]).float()
            averaged = sum((model(view).float() for view in views[1:]), logits) / len(views)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        correct_tta += (averaged.argmax(1) == labels).sum()
        count += len(labels)
    seen = max(count, 1)
    acc_tta = None if tta == "none" else correct_tta.item() / seen
    return Scores(loss_sum.item() / seen, correct.item() / seen, count, acc_tta)


def evaluate(model: nn.Module, loader: Loader) -> tuple[float, float, int]:
    """Mean cross-entropy, accuracy and number of images over an un-augmented loader, in float32."""
    scores = score(model, loader)
    return scores.loss, scores.acc, scores.count


class Training:
    """One worker's model, optimizer, schedule and weight average for a trial config.

    ``net`` is the bare model (checkpoints read and write it); ``model`` is what the loop
    calls: ``net`` wrapped by ``wrap`` (Ray Train's DistributedDataParallel) and compiled
    when the runtime says so. Build it inside :func:`global_settings` so that the
    initial weights follow the seed.
    """

    def __init__(
        self,
        config: TrialConfig,
        train_loader: Loader,
        eval_loader: Loader,
        device: torch.device,
        wrap: Callable[[nn.Module], nn.Module] = lambda model: model,
    ) -> None:
        self.config, self.train = config, config.train
        self.train_loader, self.eval_loader = train_loader, eval_loader
        self.runtime = resolve_runtime(config.train, device)
        self.net = build_model(config.model, device)
        if self.runtime.channels_last:
            self.net.to(memory_format=torch.channels_last)
        self.average = (
            WeightAverage(self.net, self.train.ema_decay, self.train.ema_every, self.train.lookahead)
            if self.train.ema_decay > 0
            else None
        )
        self.model = wrap(self.net)
        if self.runtime.compile:
            self.model = torch.compile(self.model)
        self.batch_loss = BatchLoss.for_trial(config, device)
        self.optimizer = make_optimizer(self.net, self.train)
        self.schedule = make_schedule(self.optimizer, self.train, len(train_loader))

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA when on, else the live model."""
        return self.average.model if self.average is not None else self.model

    def run_epoch(self, epoch: int) -> dict:
        """Train epoch ``epoch`` (from 0), evaluate, and return the epoch's metrics."""
        self.train_loader.set_epoch(epoch)
        self.batch_loss.set_epoch(epoch)
        started = time.perf_counter()
        train_loss = train_epoch(
            self.model, self.train_loader, self.optimizer, self.schedule, self.train, self.batch_loss,
            self.runtime, self.average,
        )  # fmt: skip
        train_seconds = time.perf_counter() - started
        if not math.isfinite(train_loss):
            return self._diverged(epoch, train_loss, train_seconds)
        started = time.perf_counter()
        scores = score(self.evaluated, self.eval_loader, self.train.tta, self.runtime)
        eval_seconds = time.perf_counter() - started
        if not math.isfinite(scores.loss):
            return {**self._diverged(epoch, train_loss, train_seconds, scores.loss), "eval_seconds": eval_seconds}
        metrics = {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": scores.loss,
            "val_acc": scores.acc,
            "params": self.config.params,
            "lr": self.schedule.get_last_lr()[0],
            "train_seconds": train_seconds,
            "eval_seconds": eval_seconds,
        }
        if scores.acc_tta is not None:
            metrics["val_acc_tta"] = scores.acc_tta
        return metrics

    def _diverged(self, epoch: int, train_loss: float, train_seconds: float, val_loss: float = math.nan) -> dict:
        """The metrics of epoch ``epoch`` (from 0) that diverged: no accuracy (NaN), ``diverged`` True;
        ``eval_seconds`` 0 (the caller gives it when the evaluation ran)."""
        return {
            "epoch": epoch + 1,
            "train_loss": train_loss,
            "val_loss": val_loss,
            "val_acc": math.nan,
            "params": self.config.params,
            "lr": self.schedule.get_last_lr()[0],
            "train_seconds": train_seconds,
            "eval_seconds": 0.0,
            DIVERGED: True,
        }

    def save(self, folder: Path, epoch: int) -> None:
        """Write the evaluated weights (model.safetensors), the config, and the state to resume."""
        exported = self.average.model if self.average is not None else self.net
        save_model_files(folder, exported, self.config)
        state = {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), "epoch": epoch}
        if self.average is not None:
            state["live_model"] = self.net.state_dict()
            state["average"] = self.average.state_dict()
        torch.save(state, folder / STATE_FILE)

    def load(self, folder: Path) -> int:
        """Restore what :meth:`save` wrote; returns the next epoch to train.

        The learning rate and weight decay stay this config's: a checkpoint of another
        config (a PBT donor's, whose values PBT then perturbed) gives the state (weights,
        optimizer moments, schedule position, EMA) but not these hyperparameters.
        """
        own = self._hyperparameters()
        device = str(self.runtime.device)
        exported = load_weights(folder, device)
        state = torch.load(folder / STATE_FILE, map_location=device, weights_only=True)
        if self.average is not None:
            self.average.model.load_state_dict(exported)
            self.average.load_state_dict(state["average"])
            self.net.load_state_dict(rename_legacy_keys(state["live_model"]))
        else:
            self.net.load_state_dict(exported)
        self.optimizer.load_state_dict(state["optimizer"])
        self.schedule.load_state_dict(state["schedule"])
        self._keep_hyperparameters(*own)
        return int(state["epoch"])

    def _hyperparameters(self) -> tuple[list[dict], list[float]]:
        """Per optimizer group, this config's schedule constants and weight decay; the schedule's base rates."""
        keys = (*LR_CONSTANTS, "weight_decay")
        groups = [{key: group[key] for key in keys if key in group} for group in self.optimizer.param_groups]
        return groups, list(self.schedule.base_lrs)

    def _keep_hyperparameters(self, groups: list[dict], base_lrs: list[float]) -> None:
        """After loading a checkpoint: put back ``groups`` and ``base_lrs`` (see
        :meth:`_hyperparameters`), scaling each current learning rate by the ratio of the
        peak rates so the loaded schedule position stays where it was."""
        for group, own in zip(self.optimizer.param_groups, groups, strict=True):
            group["lr"] *= own["initial_lr"] / group["initial_lr"]
            group.update(own)
        self.schedule.base_lrs = base_lrs
