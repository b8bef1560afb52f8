"""Selection of the sweep's best epoch from every trial's reported history.

Pure Python over plain records, so it is tested with fake result grids: the best epoch is
the highest ``val_acc`` reported by any trial whose checkpoint still exists; ties go to the
later epoch, then to the trial listed first. A trial that reported fewer epochs than
planned without an error was stopped early by the scheduler.

A trial diverged when one of its epochs says ``diverged`` (:mod:`raycifar.train.loop`) or reports
a NaN or infinite ``val_acc``: none of its epochs is ever a candidate (a config that blew up
is not promoted, even from an epoch before), and it counts as diverged, not as stopped
early. Its epochs before the diverged one are its last good metrics (:func:`good_results`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from raycifar.results.schema import CHECKPOINT_PATH, DIVERGED, EPOCH, VAL_ACC, EpochMetrics


def is_diverged(result: dict) -> bool:
    """Whether a reported epoch diverged: it says so (True, 1, or "True" from a CSV; a NaN is
    a table's blank, not a yes), or its ``val_acc`` is NaN or infinite."""
    if str(result.get(DIVERGED)).strip().lower() in ("true", "1", "1.0"):
        return True
    value = result.get(VAL_ACC)
    try:
        return value not in (None, "") and not math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def good_results(results: Iterable[dict]) -> list[dict]:
    """The reported epochs before the first diverged one (all of them when none diverged)."""
    good = []
    for result in results:
        if is_diverged(result):
            break
        good.append(result)
    return good


@dataclass(frozen=True)
class TrialHistory:
    """One trial as the sweep left it: its reported epochs (dicts with at least ``epoch``
    and ``val_acc``; ``checkpoint_path`` where a checkpoint was saved), planned epochs, and
    whether it ended in an error."""

    trial_id: str
    planned_epochs: int
    results: list[EpochMetrics] = field(default_factory=list)
    failed: bool = False

    @property
    def diverged(self) -> bool:
        """Some epoch diverged (and the trial did not end in an error)."""
        return not self.failed and any(is_diverged(r) for r in self.results)

    @property
    def stopped_early(self) -> bool:
        reached = max((int(r[EPOCH]) for r in self.results if EPOCH in r), default=0)
        return not self.failed and not self.diverged and reached < self.planned_epochs


@dataclass(frozen=True)
class Candidate:
    """One epoch of one trial, with its checkpoint."""

    trial_id: str
    epoch: int
    val_acc: float
    checkpoint: str
    score: float | None = None  # the selected metric's value (``val_acc_shift``, ``val_acc_mean``); None: val_acc


@dataclass(frozen=True)
class Selection:
    """The best epoch (None when no trial left a checkpoint) and what happened to the trials."""

    best: Candidate | None
    trials: int
    stopped_early: int
    failed: int
    diverged: int = 0


def candidates(trials: Iterable[TrialHistory], metric: str = VAL_ACC) -> list[Candidate]:
    """Every reported epoch with a checkpoint and a ``val_acc`` (and a ``metric`` value) of the
    trials that did not diverge, best first: by ``metric`` (``val_acc``; ``val_acc_shift`` or
    ``val_acc_mean`` for a sweep that selects on them; or ``epoch`` for a run that trained on
    its val part, whose last epoch is kept), ties as the module doc says."""
    scored = VAL_ACC if metric == EPOCH else metric
    found = []
    for order, trial in enumerate(trials):
        if any(is_diverged(r) for r in trial.results):
            continue
        for result in trial.results:
            if result.get(CHECKPOINT_PATH) and result.get(VAL_ACC) is not None and result.get(scored) is not None:
                value = float(result[scored])
                candidate = Candidate(
                    trial.trial_id, int(result[EPOCH]), float(result[VAL_ACC]), str(result[CHECKPOINT_PATH]),
                    None if scored == VAL_ACC else value,
                )  # fmt: skip
                score = candidate.epoch if metric == EPOCH else value
                found.append((-score, -candidate.epoch, order, candidate))
    return [entry[-1] for entry in sorted(found, key=lambda entry: entry[:3])]


def select_best(
    trials: list[TrialHistory], checkpoint_exists: Callable[[str], bool], metric: str = VAL_ACC
) -> Selection:
    """The best epoch by ``metric`` whose checkpoint ``checkpoint_exists``, and the trial
    counts. Sweeps select among their trials, and ``raycifar train`` among its epochs, with it."""
    best = next((c for c in candidates(trials, metric) if checkpoint_exists(c.checkpoint)), None)
    return Selection(
        best=best,
        trials=len(trials),
        stopped_early=sum(t.stopped_early for t in trials),
        failed=sum(t.failed for t in trials),
        diverged=sum(t.diverged for t in trials),
    )


# Why a trial left nothing to promote, in the order the classes are told.
NOTHING_CLASSES = {
    "diverged": "diverged",
    "deleted": "had their checkpoints deleted",
    "failed": "failed before their first checkpoint",
    "stopped": "stopped before their first checkpoint",
    "unscored": "reported checkpoints without val_acc",
}


def nothing_class(trial: TrialHistory, checkpoint_exists: Callable[[str], bool]) -> str:
    """Why ``trial`` has no epoch to promote (a key of :data:`NOTHING_CLASSES`)."""
    reported = [r for r in trial.results if r.get(CHECKPOINT_PATH)]
    if any(is_diverged(r) for r in trial.results):
        return "diverged"
    if reported and not any(checkpoint_exists(str(r[CHECKPOINT_PATH])) for r in reported):
        return "deleted"
    if not reported:
        return "failed" if trial.failed else "stopped"
    return "unscored"


def why_nothing(trials: list[TrialHistory], checkpoint_exists: Callable[[str], bool]) -> str:
    """Why none of ``trials`` can be promoted, by class with counts, e.g. ``5 trials: 4
    diverged, 1 had their checkpoints deleted`` (``no trial ran`` when there are none)."""
    if not trials:
        return "no trial ran"
    counts = Counter(nothing_class(trial, checkpoint_exists) for trial in trials)
    told = ", ".join(f"{counts[key]} {text}" for key, text in NOTHING_CLASSES.items() if counts[key])
    return f"{len(trials)} trial{'s' if len(trials) != 1 else ''}: {told}"
