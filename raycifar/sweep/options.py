"""What the driver is asked to run: where and how (:class:`SweepOptions`), what it searches
(:class:`SweepPlan`), and what it continues (:class:`Resume`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from raycifar.cluster.session import RunResources
from raycifar.config import MAX_FAILURES, TrialConfig, WandbMode
from raycifar.search.searchers import Search
from raycifar.space.dimension import Dimension


@dataclass(frozen=True)
class SweepOptions:
    """How to run a sweep: resources, where results go, logging."""

    results_dir: Path
    sweep_name: str
    resources: RunResources = RunResources()
    address: str | None = None  # None: a local Ray this process started (requests it cannot meet are errors)
    max_concurrent_trials: int | None = None  # None: what the cluster fits when the sweep starts
    wandb: WandbMode = "offline"
    max_failures: int = MAX_FAILURES  # restarts of a crashed trial from its last checkpoint (0: none)


@dataclass(frozen=True)
class Resume:
    """A sweep to continue (see :mod:`raycifar.results.resume`): the trials that completed before its
    driver died (never run again). ``added`` > 0: the sweep ended and gets that many more
    trials, in a new Tune experiment in its folder, proposed by its reopened study
    (warm-started), under a scheduler that starts from the saved rung records; otherwise
    ``Tuner.restore`` continues it."""

    completed: frozenset[str] = frozenset()
    added: int = 0  # an extension: the trials it adds

    @property
    def extend(self) -> bool:
        return self.added > 0


@dataclass(frozen=True)
class SweepPlan:
    """What a sweep searches: the :class:`Search` proposing its configs, how many trials
    (None: until ``time_budget_s``), the longest a trial can train, and the time budget.
    Under PBT, ``population`` holds the trials' first configs, drawn with ``search``."""

    search: Search
    trials: int | None
    max_epochs: int
    time_budget_s: float | None = None
    population: list[TrialConfig] | None = None  # PBT: the first configs, drawn before the sweep (no searcher)
    mutations: dict[str, Dimension] | None = None  # PBT: the training keys it perturbs, with their ranges
    to_propose: int | None = None  # an extension: the trials its Tuner adds (``trials`` is the sweep's new total)

    @property
    def proposals(self) -> int | None:
        """How many trials this driver's Tuner proposes (None: until the time budget)."""
        return self.trials if self.to_propose is None else self.to_propose
