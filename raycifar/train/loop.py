"""The per-worker training loop, without Ray: one worker's model, optimizer, schedule,
weight average, epochs, evaluation and checkpoint files (:class:`Training`).

Each epoch (:meth:`Training.run_epoch`): train on the worker's shard of the training split
(:mod:`raycifar.train.epoch`), then evaluate on the whole validation split (with the EMA
weights when ``ema_decay > 0``; with test-time augmentation as well when ``tta`` is on) and
return ``train_loss, val_loss, val_acc, [val_acc_tta,] epoch, params, lr, train_seconds,
eval_seconds`` (seconds of this worker's training and of its evaluation, each timed on the
host after the device finished), ``compiled`` (whether the epoch trained a compiled model)
and ``compile_seconds`` (what compiling cost this worker so far, 0 if it did not compile).

``compile``: ``true`` compiles at construction, ``false`` never; ``auto`` compiles before an
epoch when the epochs left pay for it (:mod:`raycifar.train.compile_policy`): before the
first when the node's record knows the architecture's eager step time, else after the first
epoch, trained eagerly and timed. Every worker follows rank 0's decision. The cost of a
compile is the extra time of the first compiled step over the epoch's other steps; ``auto``
trials keep both in the node's record for the next trial.

A diverged epoch is not evaluated: its metrics say ``diverged: True`` with
``val_loss``/``val_acc`` NaN; an epoch whose validation loss is not finite is diverged too.
The Ray Train worker (:mod:`raycifar.train.worker`) and ``benchmarks/`` drive
:class:`Training` the same way.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.distributed as dist
from torch import nn

from raycifar.config import TrialConfig
from raycifar.data.loaders import Loader
from raycifar.models.files import load_weights, rename_legacy_keys, save_model_files
from raycifar.models.resnet import build_model
from raycifar.results.schema import (
    COMPILE_SECONDS,
    COMPILED,
    EPOCH,
    EVAL_SECONDS,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    VAL_ACC,
    VAL_ACC_MEAN,
    VAL_ACC_SHIFT,
    VAL_ACC_TTA,
    VAL_LOSS,
    EpochMetrics,
)
from raycifar.results.selection import DIVERGED
from raycifar.train.compile_policy import (
    arch_key,
    decide,
    first_step_extra_seconds,
    read_record,
    record_path,
    update_record,
    use_node_cache,
)
from raycifar.train.epoch import train_epoch
from raycifar.train.loss import BatchLoss
from raycifar.train.optim import LR_CONSTANTS, WeightAverage, make_optimizer, make_schedule
from raycifar.train.runtime import resolve_runtime
from raycifar.train.scoring import score

STATE_FILE = "train_state.pt"


def _world_size() -> int:
    """The workers of this run's torch process group (1 without one)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank_zero_verdict(verdict: bool | None, device: torch.device) -> bool | None:
    """Rank 0's ``verdict`` on every worker (one broadcast when a process group of several is
    up; every rank must call it at the same point), so that all compile or none does."""
    if _world_size() == 1:
        return verdict
    code = torch.tensor([-1 if verdict is None else int(verdict)], device=device)
    dist.broadcast(code, src=0)
    return None if code.item() < 0 else bool(code.item())


class _FirstStepClock:
    """Called after an epoch's first optimizer step: the seconds from its creation until the
    device finished that step (``seconds``; None until called)."""

    def __init__(self, device: torch.device) -> None:
        self.device, self.started, self.seconds = device, time.perf_counter(), None

    def __call__(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds = time.perf_counter() - self.started


class Training:
    """One worker's model, optimizer, schedule and weight average for a trial config.

    ``net`` is the bare model (checkpoints read and write it); ``model`` is what the loop
    calls: ``net`` wrapped by ``wrap`` (Ray Train's DistributedDataParallel) and compiled
    when the runtime says so (``compile: auto``: from the epoch when it pays, see the module
    doc). Build it inside :func:`global_settings` so that the initial weights follow the seed.
    """

    def __init__(
        self,
        config: TrialConfig,
        train_loader: Loader,
        eval_loader: Loader,
        device: torch.device,
        wrap: Callable[[nn.Module], nn.Module] = lambda model: model,
        shift_loader: Loader | None = None,
    ) -> None:
        self.config, self.train = config, config.train
        self.train_loader, self.eval_loader, self.shift_loader = train_loader, eval_loader, shift_loader
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
        self.compiled, self.compile_seconds = False, 0.0  # reported every epoch (COMPILED, COMPILE_SECONDS)
        self._auto = self.runtime.compile == "auto"  # compile: auto learns from and writes the node's record
        self._undecided, self._eager_step_s = self._auto, None  # the eager seconds per step this run measured
        self.compile_key = self._arch_key() if self._auto else ""  # this trial's key in the node's record
        self._clock_next_epoch, self._expect_hit = False, False
        if self.runtime.compile is True:
            self._compile()
        self.batch_loss = BatchLoss.for_trial(config, device)
        self.optimizer = make_optimizer(self.net, self.train)
        self.schedule = make_schedule(self.optimizer, self.train, len(train_loader))

    @property
    def evaluated(self) -> nn.Module:
        """The weights that are evaluated and exported: the EMA when on, else the live model."""
        return self.average.model if self.average is not None else self.model

    def run_epoch(self, epoch: int) -> EpochMetrics:
        """Train epoch ``epoch`` (from 0), evaluate, and return the epoch's metrics."""
        self.train_loader.set_epoch(epoch)
        self.batch_loss.set_epoch(epoch)
        if self._undecided:
            self._decide(epoch)
        clock = _FirstStepClock(self.runtime.device) if self._clock_next_epoch else None
        started = time.perf_counter()
        train_loss = train_epoch(
            self.model, self.train_loader, self.optimizer, self.schedule, self.train, self.batch_loss,
            self.runtime, self.average, clock,
        )  # fmt: skip
        train_seconds = time.perf_counter() - started
        self._learn(train_seconds, clock, math.isfinite(train_loss))
        if not math.isfinite(train_loss):
            return self._diverged(epoch, train_loss, train_seconds)
        started = time.perf_counter()
        scores = score(self.evaluated, self.eval_loader, self.train.tta, self.runtime)
        eval_seconds = time.perf_counter() - started
        if not math.isfinite(scores.loss):
            return {**self._diverged(epoch, train_loss, train_seconds, scores.loss), EVAL_SECONDS: eval_seconds}
        metrics = {
            EPOCH: epoch + 1,
            TRAIN_LOSS: train_loss,
            VAL_LOSS: scores.loss,
            VAL_ACC: scores.acc,
            "params": self.config.params,
            "lr": self.schedule.get_last_lr()[0],
            TRAIN_SECONDS: train_seconds,
            EVAL_SECONDS: eval_seconds,
            COMPILED: self.compiled,
            COMPILE_SECONDS: self.compile_seconds,
        }
        if scores.acc_tta is not None:
            metrics[VAL_ACC_TTA] = scores.acc_tta
        if self.shift_loader is not None:  # select: val_acc_shift or mean
            started = time.perf_counter()
            shifted = score(self.evaluated, self.shift_loader, "none", self.runtime).acc
            metrics[VAL_ACC_SHIFT], metrics[VAL_ACC_MEAN] = shifted, (scores.acc + shifted) / 2
            metrics[EVAL_SECONDS] += time.perf_counter() - started
        return metrics

    def _diverged(
        self, epoch: int, train_loss: float, train_seconds: float, val_loss: float = math.nan
    ) -> EpochMetrics:
        """The metrics of epoch ``epoch`` (from 0) that diverged: no accuracy (NaN), ``diverged`` True;
        ``eval_seconds`` 0 (the caller gives it when the evaluation ran)."""
        return {
            EPOCH: epoch + 1,
            TRAIN_LOSS: train_loss,
            VAL_LOSS: val_loss,
            VAL_ACC: math.nan,
            **({VAL_ACC_SHIFT: math.nan, VAL_ACC_MEAN: math.nan} if self.shift_loader is not None else {}),
            "params": self.config.params,
            "lr": self.schedule.get_last_lr()[0],
            TRAIN_SECONDS: train_seconds,
            EVAL_SECONDS: 0.0,
            COMPILED: self.compiled,
            COMPILE_SECONDS: self.compile_seconds,
            DIVERGED: True,
        }

    def _arch_key(self) -> str:
        """The node record's key of this trial: what decides its compiled graph and step time."""
        device = self.runtime.device
        return arch_key({
            "model": self.config.model.model_dump(mode="json"),
            "batch_size": self.train.batch_size,
            "autocast": str(self.runtime.autocast_dtype),
            "channels_last": self.runtime.channels_last,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else device.type,
            "workers": _world_size(),
            "torch": torch.__version__,
        })  # fmt: skip

    def _compile(self, hit: bool = False) -> None:
        """Compile the model the loop calls (``net`` stays bare) with the node's inductor
        caches; the next epoch times its first step (``hit``: the record expects a cache hit)."""
        use_node_cache()
        self.model = torch.compile(self.model)
        self.compiled, self._clock_next_epoch, self._expect_hit = True, True, hit

    def _decide(self, epoch: int) -> None:
        """``compile: auto``, before epoch ``epoch`` (from 0): compile now if the epochs left
        pay for it; stay undecided while no eager step time is known (rank 0 decides for all)."""
        record = read_record(record_path())
        steps_left = (self.train.epochs - epoch) * len(self.train_loader)
        verdict = decide(record, self.compile_key, steps_left, self._eager_step_s)
        verdict = rank_zero_verdict(verdict, self.runtime.device)
        if verdict is None:
            return
        self._undecided = False
        if verdict:
            self._compile(hit=record.compiled_before(self.compile_key))

    def _learn(self, train_seconds: float, clock: _FirstStepClock | None, finite: bool) -> None:
        """After an epoch's training pass of ``train_seconds``: the compile cost of a first
        compiled epoch (``clock``), or the eager seconds per step of a first eager epoch of
        ``compile: auto``; ``auto`` writes either to the node's record."""
        steps = max(len(self.train_loader), 1)
        key = self.compile_key
        if clock is not None and clock.seconds is not None:
            self._clock_next_epoch = False
            cost = first_step_extra_seconds(clock.seconds, train_seconds, steps)
            self.compile_seconds += cost
            if self._auto:
                update_record(record_path(), lambda record: record.with_compile(key, cost, self._expect_hit))
        elif self._auto and not self.compiled and finite and self._eager_step_s is None:
            step_s = self._eager_step_s = train_seconds / steps
            update_record(record_path(), lambda record: record.with_step(key, step_s))

    def save(self, folder: Path, epoch: int) -> None:
        """Write the evaluated weights (model.safetensors), the config, and the state to resume."""
        exported = self.average.model if self.average is not None else self.net
        save_model_files(folder, exported, self.config)
        state = {"optimizer": self.optimizer.state_dict(), "schedule": self.schedule.state_dict(), EPOCH: epoch}
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
        return int(state[EPOCH])

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
