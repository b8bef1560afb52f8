"""What a sweep cost: device-hours summed from the epochs its trials reported.

Every epoch a trial reports (one line of Tune's ``result.json``, or a row of
``progress.csv``) carries, from :mod:`raycifar.train.worker`: ``train_seconds`` and
``eval_seconds`` (rank 0's time training the epoch and evaluating it), ``world_size`` (the
trial's Ray Train workers), ``device`` (``"cpu"``, ``"cuda"``) and ``worker_cpus`` /
``worker_gpus`` (the Ray resources each worker holds). An epoch costs

* GPU-hours, when its workers hold GPUs: ``(train_seconds + eval_seconds) × world_size ×
  worker_gpus / 3600``;
* CPU core-hours otherwise: the same with ``worker_cpus``.

Only the time inside epochs counts: not the start of workers, data loading before the
first epoch, checkpoint writing, nor an epoch that never reported (a crash, a trial stopped
in the middle of one). A result written by a raycifar before these fields makes the cost
unknown (None). This module imports neither torch nor Ray.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from raycifar.results.schema import EVAL_SECONDS, TRAIN_SECONDS, WORKER_CPUS, WORKER_GPUS, WORLD_SIZE, EpochMetrics

GPU, CPU = "GPU", "CPU"  # the device kinds of a cost; the leaderboard's ``device`` column
UNITS = {GPU: "GPU-hours", CPU: "CPU core-hours"}
COST_KEYS = (TRAIN_SECONDS, EVAL_SECONDS, WORLD_SIZE, WORKER_CPUS, WORKER_GPUS)


@dataclass(frozen=True)
class Cost:
    """Device time spent: ``hours`` by device kind (GPU: GPU-hours, CPU: CPU core-hours),
    and the seconds it was spent in (summed over trials and epochs, as rank 0 measured them)."""

    hours: dict[str, float] = field(default_factory=dict)
    train_seconds: float = 0.0
    eval_seconds: float = 0.0

    def __add__(self, other: Cost) -> Cost:
        kinds = sorted(set(self.hours) | set(other.hours))
        return Cost(
            {kind: self.hours.get(kind, 0.0) + other.hours.get(kind, 0.0) for kind in kinds},
            self.train_seconds + other.train_seconds,
            self.eval_seconds + other.eval_seconds,
        )

    @property
    def device(self) -> str | None:
        """The one device kind the time was spent on (None: none spent yet, or both kinds)."""
        return next(iter(self.hours)) if len(self.hours) == 1 else None

    @property
    def device_hours(self) -> float | None:
        """The hours of :attr:`device` (None when it is None)."""
        return self.hours[self.device] if self.device is not None else None

    def spent(self) -> str:
        """``0.0123 CPU core-hours`` (both kinds joined by ``+``; ``0 device-hours`` for none)."""
        parts = [f"{hours:.4f} {UNITS[kind]}" for kind, hours in sorted(self.hours.items())]
        return " + ".join(parts) or "0 device-hours"

    def describe(self) -> str:
        """``0.0123 CPU core-hours (812 s training, 95 s evaluation)``."""
        return f"{self.spent()} ({self.train_seconds:.0f} s training, {self.eval_seconds:.0f} s evaluation)"


def hours_unit(device: str | None) -> str:
    """The unit of a leaderboard row's ``device_hours`` given its ``device`` column
    (``"device-hours"`` for rows that do not say: older rows, ``raycifar train`` runs)."""
    return UNITS.get(device or "", "device-hours")


def _number(result: Mapping, key: str) -> float | None:
    """``result[key]`` as a finite float (CSV rows hold strings); None when absent or not one."""
    value = result.get(key)
    if value is None or value == "" or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def epoch_cost(result: EpochMetrics | Mapping) -> Cost | None:
    """The cost of one reported epoch; None when the result lacks a field of :data:`COST_KEYS`."""
    values = [_number(result, key) for key in COST_KEYS]
    if any(value is None for value in values):
        return None
    train, evaluation, workers, cpus, gpus = values
    kind, held = (GPU, gpus) if gpus > 0 else (CPU, cpus)
    return Cost({kind: (train + evaluation) * workers * held / 3600}, train, evaluation)


def results_cost(results: Iterable[Mapping]) -> Cost | None:
    """The cost of a trial's reported epochs (a zero :class:`Cost` for none); None when one
    of them lacks the fields."""
    return total(epoch_cost(result) for result in results)


def total(costs: Iterable[Cost | None]) -> Cost | None:
    """The sum of ``costs``; None when one of them is None (unknown)."""
    spent = Cost()
    for cost in costs:
        if cost is None:
            return None
        spent = spent + cost
    return spent
