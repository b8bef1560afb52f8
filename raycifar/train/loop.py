"""The per-worker training loop, without Ray: one worker's model, optimizer, schedule,
weight average, epochs, evaluation and checkpoint files (:class:`Training`).

Each epoch (:meth:`Training.run_epoch`): train on the worker's shard of the training split
(:mod:`raycifar.train.epoch`), then evaluate on the whole validation split (with the EMA
weights when ``ema_decay > 0``; with test-time augmentation as well when ``tta`` is on) and
return ``train_loss, val_loss, val_acc, [val_acc_tta,] epoch, params, lr, train_seconds,
eval_seconds`` (seconds of this worker's training and of its evaluation, each timed on the
host after the device finished).

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
from torch import nn

from raycifar.config import TrialConfig
from raycifar.data.loaders import Loader
from raycifar.models.files import load_weights, rename_legacy_keys, save_model_files
from raycifar.models.resnet import build_model
from raycifar.results.schema import (
    EPOCH,
    EVAL_SECONDS,
    TRAIN_LOSS,
    TRAIN_SECONDS,
    VAL_ACC,
    VAL_ACC_TTA,
    VAL_LOSS,
    EpochMetrics,
)
from raycifar.results.selection import DIVERGED
from raycifar.train.epoch import train_epoch
from raycifar.train.loss import BatchLoss
from raycifar.train.optim import LR_CONSTANTS, WeightAverage, make_optimizer, make_schedule
from raycifar.train.runtime import resolve_runtime
from raycifar.train.scoring import score

STATE_FILE = "train_state.pt"


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

    def run_epoch(self, epoch: int) -> EpochMetrics:
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
        }
        if scores.acc_tta is not None:
            metrics[VAL_ACC_TTA] = scores.acc_tta
        return metrics

    def _diverged(self, epoch: int, train_loss: float, train_seconds: float, val_loss: float = math.nan) -> EpochMetrics:
        """The metrics of epoch ``epoch`` (from 0) that diverged: no accuracy (NaN), ``diverged`` True;
        ``eval_seconds`` 0 (the caller gives it when the evaluation ran)."""
        return {
            EPOCH: epoch + 1,
            TRAIN_LOSS: train_loss,
            VAL_LOSS: val_loss,
            VAL_ACC: math.nan,
            "params": self.config.params,
            "lr": self.schedule.get_last_lr()[0],
            TRAIN_SECONDS: train_seconds,
            EVAL_SECONDS: 0.0,
            DIVERGED: True,
        }

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
