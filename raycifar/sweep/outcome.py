"""What a sweep produced (:class:`SweepOutcome`), its exceptions, and why a trial failed,
in one line."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raycifar.errors import Interrupted, RunFailed
from raycifar.results.schema import VAL_ACC


@dataclass(frozen=True)
class SweepOutcome:
    """The best epoch of the sweep and what happened to its trials."""

    best_trial_id: str
    best_val_acc: float
    best_epoch: int
    best_checkpoint: str
    trials: int
    stopped_early: int
    failed: int
    wall_seconds: float
    out_of_time: bool = False  # the time budget ended the sweep (running trials were stopped)
    diverged: int = 0
    problems: tuple[str, ...] = ()  # "trial <id> failed: <reason>" / "trial <id> diverged at epoch ..."
    metric: str = VAL_ACC  # what selected the best epoch (the space's `select`, as a metric name)
    best_score: float | None = None  # the best epoch's value of ``metric`` (None: it is best_val_acc)


class TrialFailed(Exception):
    """A sweep trial's Train run failed after its restarts; the message is the reason, one line."""


def error_reason(trial) -> str:
    """Why a Tune trial errored, in one line: the last line of the error.txt Tune just wrote
    in the trial's local folder (the exception's type and message), without the type for a
    :class:`TrialFailed`, whose message is the reason."""
    try:
        lines = Path(trial.error_file).read_text().strip().splitlines() if trial.error_file else []
    except OSError:
        lines = []
    if not lines:
        return "see its error.txt"
    last = lines[-1].strip()
    ours = f"{TrialFailed.__module__}.{TrialFailed.__qualname__}: "
    return last.removeprefix(ours) if last.startswith(ours) else short_error(last)


def short_error(line: str, limit: int = 160) -> str:
    """Another exception's line, shortened: its class without the module, and its message up
    to the first sentence or ``limit`` characters (Ray's actor errors run on for lines)."""
    kind, sep, message = line.partition(": ")
    if not sep or " " in kind:
        kind, message = "", line
    kind = kind.rsplit(".", 1)[-1]
    first = message.split(". ")[0].split(": ")[0].strip()
    if len(first) > limit:
        first = first[: limit - 1].rstrip() + "…"
    return f"{kind}: {first}" if kind else first


class SweepFailed(RunFailed):
    """The sweep ran but produced nothing to promote."""


class SweepInterrupted(Interrupted):
    """The sweep was stopped (Ctrl+C) before all trials finished."""
