"""Planning a sweep before Ray starts: the searcher, how many trials, the longest trial, and
the time budget (``--searcher``, ``--num-samples``, ``--max-trials``, ``--time-budget``).

Everything here is checked before Ray starts and raises :class:`UserError` with one line.
This module imports neither torch nor Ray.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from raycifar.errors import UserError
from raycifar.space.file import dimensions
from raycifar.space.find import Space
from raycifar.space.sections import SearcherName, SearcherSettings

DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str, option: str = "--time-budget") -> float:
    """Seconds in ``90s``, ``10m``, ``2h``, ``1h30m`` or a plain number of seconds.

    Raises :class:`UserError` naming ``option`` for anything else or for zero.
    """
    cleaned = text.strip().lower().replace(" ", "")
    try:
        seconds = float(cleaned)
    except ValueError:
        match = DURATION.match(cleaned)
        if not cleaned or match is None or not any(match.groups()):
            raise UserError(f"{option} {text!r}: expected a duration such as 30s, 10m, 2h or 1h30m") from None
        hours, minutes, secs = (float(part or 0) for part in match.groups())
        seconds = hours * 3600 + minutes * 60 + secs
    if not seconds > 0 or seconds != seconds or seconds == float("inf"):
        raise UserError(f"{option} {text!r}: must be a positive, finite duration")
    return seconds


def with_searcher(space: Space, name: SearcherName | None) -> Space:
    """``space`` searched by ``name`` (``--searcher``): the file's settings are kept when it
    names the same searcher, else the new searcher's defaults apply."""
    if name is None or name == space.spec.searcher.name:
        return space
    spec = space.spec.model_copy(update={"searcher": SearcherSettings(name=name)})
    return Space(space.name, space.path, spec)


def longest_trial(space: Space, max_epochs: int | None) -> int:
    """The most epochs any trial of ``space`` can train (the schedulers' ``max_t``)."""
    epochs = dict(dimensions(space.spec))["train.epochs"]
    longest = max(epochs.values()) if epochs.sampler in ("constant", "choice") else epochs.args[1]
    return min(longest, max_epochs) if max_epochs is not None else longest


@dataclass(frozen=True)
class TrialCount:
    """How many trials a sweep runs (None: until its time budget ends it) and why."""

    trials: int | None
    note: str = ""  # e.g. "grid of 12 points, 8 run"


def trial_count(
    space: Space, num_samples: int | None, max_trials: int | None, time_budget_s: float | None
) -> TrialCount:
    """Trials = ``--num-samples`` or the file's ``num_samples`` (``unlimited``: until the time
    budget), capped by ``--max-trials``. Under ``grid``: the whole grid unless one of them
    asks for fewer."""
    planned = num_samples if num_samples is not None else space.spec.num_samples
    trials = None if planned == "unlimited" else int(planned)
    if max_trials is not None:
        trials = max_trials if trials is None else min(trials, max_trials)
    if trials is None and time_budget_s is None:
        raise UserError(
            f"{space.path}: num_samples: unlimited runs until a time budget ends the sweep: "
            "give --time-budget (e.g. 10m) or --max-trials"
        )
    if space.spec.searcher.name != "grid":
        return TrialCount(trials)
    from raycifar.search.samplers import grid_size

    size = grid_size(space)
    unset = num_samples is None and max_trials is None and "num_samples" not in space.spec.model_fields_set
    if trials is None or trials >= size or unset:
        return TrialCount(size, f"the whole grid of {size} points")
    return TrialCount(trials, f"{trials} of the grid's {size} points (raise num_samples to run them all)")


def check_scheduler_fits(space: Space, count: TrialCount) -> None:
    """PBT is the search itself: it takes no searcher and a fixed population (a one-line
    :class:`UserError` for ``--searcher`` other than random, or unlimited trials)."""
    if space.spec.scheduler.name != "pbt":
        return
    if space.spec.searcher.name != "random":
        raise UserError(
            f"{space.path}: searcher {space.spec.searcher.name}: scheduler pbt takes no searcher "
            "(it evolves a population drawn at random): drop --searcher or use another scheduler"
        )
    if count.trials is None:
        raise UserError(f"{space.path}: scheduler pbt needs a population size: set num_samples or --max-trials")
