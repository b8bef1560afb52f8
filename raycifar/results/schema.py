"""The schema of results, beside :mod:`raycifar.config` (the schema of a trial): what a trial
reports every epoch, and how a trial ends. Every metric name is spelled here once; the
worker writes these keys, Tune's hooks, selection, status, cost, the report and W&B read
them (``tests/results/test_schema.py`` checks that no other module spells them).

One reported epoch (a line of Tune's ``result.json``, of ``runs/<name>/metrics.jsonl``, the
``metrics.json`` kept in a checkpoint) is an :class:`EpochMetrics`. Torch-free.
"""

from __future__ import annotations

from typing import Literal, TypedDict

# --- the metric names (the keys of EpochMetrics) -------------------------------------------
EPOCH = "epoch"  # 1-based epoch just trained: the schedulers' time, the checkpoints' order
TRAIN_LOSS = "train_loss"  # mean training loss of the epoch on rank 0's shard
VAL_LOSS = "val_loss"  # mean cross-entropy on the validation split (nats)
VAL_ACC = "val_acc"  # accuracy on the validation split: what searchers, schedulers and selection maximise
VAL_ACC_TTA = "val_acc_tta"  # the same with test-time augmentation (only when train.tta is on)
VAL_ACC_SHIFT = "val_acc_shift"  # accuracy on the validation split's corrupted twin (select: val_acc_shift or mean)
VAL_ACC_MEAN = "val_acc_mean"  # (val_acc + val_acc_shift) / 2 (the same runs)
PARAMS = "params"  # the model's parameters
LR = "lr"  # the learning rate after the epoch's last step
TRAIN_SECONDS = "train_seconds"  # rank 0's seconds training the epoch
EVAL_SECONDS = "eval_seconds"  # rank 0's seconds evaluating it
DIVERGED = "diverged"  # True on an epoch whose loss went NaN or infinite; absent otherwise
WORLD_SIZE = "world_size"  # the run's Ray Train workers
RESUMED_FROM_EPOCH = "resumed_from_epoch"  # the checkpoint epoch this worker group started from (0: fresh)
DEVICE = "device"  # the torch device type the workers train on: "cpu", "cuda"
WORKER_CPUS = "worker_cpus"  # Ray CPUs each worker holds
WORKER_GPUS = "worker_gpus"  # Ray GPUs each worker holds
WORKER_PID = "worker_pid"  # the process of rank 0 (the Tune trial's own process on the in-trial path)
CHECKPOINT_PATH = "checkpoint_path"  # the epoch's checkpoint (a folder path), where one was kept
COMPILED = "compiled"  # whether the epoch trained a torch.compile'd model (absent in records before it was reported)
COMPILE_SECONDS = "compile_seconds"  # seconds compiling cost this worker so far: a compiled first step's extra time

SELECTED_ON = Literal["val_acc", "val_acc_shift", "val_acc_mean", "epoch"]  # what picks a run's checkpoint
SELECTED_METRIC: dict[str, str] = {"val_acc": VAL_ACC, "val_acc_shift": VAL_ACC_SHIFT, "mean": VAL_ACC_MEAN}


def selected_metric(select: str) -> str:
    """The reported metric a sweep with ``select`` (a space's key, :data:`raycifar.config.Select`)
    maximises: its searcher, scheduler, kept checkpoints and promotion."""
    return SELECTED_METRIC[select]


class EpochMetrics(TypedDict, total=False):
    """One reported epoch (see the constants above for each key's meaning and unit)."""

    epoch: int
    train_loss: float
    val_loss: float
    val_acc: float
    val_acc_tta: float
    val_acc_shift: float
    val_acc_mean: float
    params: int
    lr: float
    train_seconds: float
    eval_seconds: float
    diverged: bool
    world_size: int
    resumed_from_epoch: int
    device: str
    worker_cpus: float
    worker_gpus: float
    worker_pid: int
    checkpoint_path: str | None
    compiled: bool
    compile_seconds: float


METRIC_NAMES: tuple[str, ...] = tuple(EpochMetrics.__annotations__)

# --- how a trial ends (the sweep record's trial states) -------------------------------------
TrialState = Literal["pending", "running", "finished", "stopped_early", "error", "diverged", "lost"]
# "lost": a trial the driver started after Tune last saved its state (every ~10 s) and then
# died; a resume does not know it, and the searcher proposes its config again as a new trial.
TERMINAL_STATES: frozenset[str] = frozenset({"finished", "stopped_early", "error", "diverged", "lost"})
