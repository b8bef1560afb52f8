"""What the driver is asked to run: where and how (:class:`SweepOptions`), what it searches
(:class:`SweepPlan`), and what it continues (:class:`Resume`)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from raycifar.cluster.session import RunResources
from raycifar.config import MAX_FAILURES, TrialConfig, WandbMode
from raycifar.search.searchers import Search
from raycifar.space.dimension import Dimension

TrialRunner = Literal["in-trial", "torch-trainer"]
IN_TRIAL: TrialRunner = "in-trial"
TORCH_TRAINER: TrialRunner = "torch-trainer"


def choose_runner(workers: int, scheduler: str, force_torch_trainer: bool = False) -> TrialRunner:
    """Where a sweep's trials train (docs/sweeping.md, "Where a trial trains"): inside the Tune
    trial's own process (``in-trial``: no Ray Train run, the process reused for the next
    trial) when a trial has one worker; a Ray Train ``TorchTrainer`` per trial for
    multi-worker (DDP) trials, under PBT (its exploit hands Train checkpoints between trials),
    or when ``force_torch_trainer`` (``--torch-trainer``: Ray Train's dashboard page, say)."""
    if force_torch_trainer or workers > 1 or scheduler == "pbt":
        return TORCH_TRAINER
    return IN_TRIAL


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
    runner: TrialRunner = TORCH_TRAINER  # where trials train (choose_runner); a resumed sweep keeps its own
    data_fingerprint: str | None = None  # the data's (raycifar.data.fingerprint): in-trial trials keep the split
    data_dir: str | None = None  # the trials read their data here, not their config's data_dir (a re-pointed resume)
    driver_id: str = field(default_factory=lambda: uuid.uuid4().hex)  # this driver process's; a resume gets a new one


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
