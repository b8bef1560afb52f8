"""Searchers: propose trial configs from an Optuna study, each fitted to the budget.

A :class:`Search` asks its study for a point, draws the space's values from it (a ``when``
condition that does not hold leaves its key unasked), fits the model's widths and counts its
parameters. A proposal over budget is told back to the study as infeasible (Optuna's
constraint ``params_over_budget`` > 0, its objective at the worst value) and another point is
asked, at most :data:`~raycifar.space.MAX_DRAWS_PER_SAMPLE` times: no config handed out is
ever over budget.

Results flow back by Optuna trial number: :meth:`Search.report` records each epoch's
``val_acc`` as an intermediate value stepped by the worker's epoch, :meth:`Search.finish`
ends the trial as complete (its best ``val_acc``; with ``nsga2`` also its size, or its
clean and shifted validation accuracy with ``objectives: shift``), pruned (stopped early by
the scheduler) or failed.

The study of a sweep lives in ``sweeps/<name>/search/study.journal`` (an Optuna journal
file): ``optuna-dashboard sweeps/<name>/search/study.journal`` shows it, during the sweep too.
This module imports neither Ray nor torch (counting parameters imports torch when first needed).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Mapping

import optuna
from optuna.trial import TrialState

from raycifar.config import DEFAULT_SELECT, TrialConfig
from raycifar.errors import UserError
from raycifar.results.schema import VAL_ACC, VAL_ACC_SHIFT, selected_metric
from raycifar.search.draws import MAX_DRAWS_PER_SAMPLE, config_from_values, draw_values, searched_values
from raycifar.search.samplers import directions, encoded, make_sampler, shift_objectives
from raycifar.space.dimension import Dimension
from raycifar.space.find import Space
from raycifar.space.sections import SearcherName, SearcherSettings

STUDY_DIR = "search"
STUDY_FILE = "study.journal"
STUDY_NAME = "sweep"
OVER_BUDGET = "params_over_budget"  # Optuna constraint: feasible when <= 0
TRIAL_ID_ATTR = "tune_trial_id"  # user attribute: the Tune trial a proposal became
BY_EPOCH_ATTR = "val_acc_by_epoch"  # user attribute of nsga2 trials: {"1": 0.31, "2": 0.44}
OBJECTIVES_ATTR = "objectives_by_epoch"  # nsga2 with objectives: shift: {"1": [val_acc, val_acc_shift]}
INDEX_ATTR = "proposal"  # user attribute: 0, 1, ... over the within-budget proposals

ProposalEnd = Literal["complete", "pruned", "failed"]


def study_path(sweep_dir: Path) -> Path:
    """The journal file of a sweep's Optuna study."""
    return sweep_dir / STUDY_DIR / STUDY_FILE


class _Suggest:
    """Draws a dimension's value through an Optuna trial's ``suggest_*`` (a ``Picker``)."""

    def __init__(self, trial: optuna.Trial) -> None:
        self.trial = trial

    def __call__(self, key: str, dimension: Dimension) -> Any:
        if dimension.sampler == "choice":
            values = encoded(dimension)
            return dimension.args[values.index(self.trial.suggest_categorical(key, values))]
        low, high = dimension.args
        if dimension.sampler == "randint":
            return self.trial.suggest_int(key, low, high)
        return self.trial.suggest_float(key, low, high, log=dimension.sampler == "loguniform")


def _open_study(
    space: Space, settings: SearcherSettings, seed: int, journal: Path | None, num_samples: int | None
) -> optuna.Study:
    """The study of a search: in the journal file ``journal`` (created, or reopened with its
    trials when it exists; a reopened study gets a fresh sampler seed, so that a random
    sampler does not repeat itself), or in memory when ``journal`` is None."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # its per-trial lines would cut into the progress line
    storage = None
    if journal is not None:
        storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    study = optuna.create_study(
        storage=storage, study_name=STUDY_NAME, directions=directions(settings), load_if_exists=True,
        sampler=make_sampler(space, settings, seed, num_samples),
    )  # fmt: skip
    if study.trials:
        study.sampler = make_sampler(space, settings, seed + len(study.trials), num_samples)
    return study


@dataclass(frozen=True)
class Proposal:
    """A within-budget config from the study: its Optuna trial ``number``, the config and
    its search record (the sampled keys that applied, by ``section.key``)."""

    number: int
    config: TrialConfig
    search: dict[str, Any]


class Search:
    """Proposals from one Optuna study (see the module docstring).

    ``seed`` seeds the sampler and the validation split; proposal ``i`` trains with trial
    seed ``seed * 1000 + i``.
    """

    def __init__(
        self,
        space: Space,
        settings: SearcherSettings,
        study: optuna.Study,
        seed: int,
        data_dir: Path,
        max_epochs: int | None,
        num_samples: int | None = None,
    ) -> None:
        self.space, self.settings, self.study = space, settings, study
        self.num_samples = num_samples  # the sweep's trial count (TPE's start, NSGA-II's generation)
        self.seed, self.data_dir, self.max_epochs = seed, data_dir, max_epochs
        trials = study.get_trials(deepcopy=False)
        self.proposed = sum(INDEX_ATTR in trial.user_attrs for trial in trials)
        self.infeasible = len(trials) - self.proposed
        self._live: dict[int, optuna.Trial] = {}  # asked in this process, by number
        self.journal: Path | None = None  # the study's journal file (None: kept in memory)

    @property
    def metric(self) -> str:
        """The reported score the sweep maximises: the metric its space's ``select`` names (a
        space pickled by an older raycifar, in a resumed sweep's searcher, has none: ``val_acc``)."""
        return selected_metric(getattr(self.space.spec, "select", DEFAULT_SELECT))

    @property
    def objectives(self) -> list[str]:
        """What the study optimises: :attr:`metric` (max); with ``nsga2`` also the size (min),
        or with ``objectives: shift`` ``val_acc`` and ``val_acc_shift`` (both max) instead."""
        if shift_objectives(self.settings):
            return [VAL_ACC, VAL_ACC_SHIFT]
        return [self.metric, self.settings.cost] if self.settings.name == "nsga2" else [self.metric]

    @classmethod
    def _open(
        cls, space: Space, settings: SearcherSettings, seed: int, data_dir: Path, max_epochs: int | None,
        journal: Path | None, num_samples: int | None,
    ) -> Search:  # fmt: skip
        study = _open_study(space, settings, seed, journal, num_samples)
        search = cls(space, settings, study, seed, data_dir, max_epochs, num_samples)
        search.journal = journal
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(search.objectives)
        return search

    def __getstate__(self) -> dict:
        """What Tune pickles with its experiment. A study kept in a journal file is not pickled
        (Optuna 5.1's NSGA-II sampler holds a thread lock): it is reopened from the file."""
        if getattr(self, "journal", None) is None:
            return dict(self.__dict__)
        return {key: value for key, value in self.__dict__.items() if key not in ("study", "_live")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if "study" not in state:  # pickled without its study (above): reopen it from the journal
            self.study = _open_study(self.space, self.settings, self.seed, self.journal, self.num_samples)
            self._live = {}

    @classmethod
    def in_memory(
        cls, space: Space, name: SearcherName, seed: int, data_dir: Path, max_epochs: int | None = None
    ) -> Search:
        """A search whose study is kept in memory (``space sample``, drawing before Ray)."""
        return cls._open(space, SearcherSettings(name=name), seed, data_dir, max_epochs, None, None)

    @classmethod
    def on_disk(
        cls, space: Space, settings: SearcherSettings, seed: int, data_dir: Path, max_epochs: int | None,
        sweep_dir: Path, num_samples: int | None,
    ) -> Search:  # fmt: skip
        """The search of a sweep: its study in :func:`study_path` (created, or reopened with
        its trials when the file exists)."""
        path = study_path(sweep_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        return cls._open(space, settings, seed, data_dir, max_epochs, path, num_samples)

    def reopened(self, known: set[int]) -> None:
        """After a resume: count the study's proposals again, give the sampler a fresh seed
        (a random sampler restored to its first state would repeat its first points), and
        end as failed (``lost``) the running proposals Tune does not know: those asked
        after it last saved its state (``known``: the numbers of the trials it restored)."""
        trials = self.study.get_trials(deepcopy=False)
        self.proposed = sum(INDEX_ATTR in trial.user_attrs for trial in trials)
        self.infeasible = len(trials) - self.proposed
        self.study.sampler = make_sampler(self.space, self.settings, self.seed + len(trials), self.num_samples)
        for trial in trials:
            if trial.state == TrialState.RUNNING and trial.number not in known:
                self._trial(trial.number).set_user_attr("lost", True)
                self.study.tell(trial.number, state=TrialState.FAIL)
                self._live.pop(trial.number, None)

    def trials_since(self, index: int) -> list[str]:
        """The Tune trial ids of the within-budget proposals from the ``index``-th on
        (:data:`INDEX_ATTR`) that a trial ran: after a resume, those asked after Tune last
        saved its state."""
        return [
            str(trial.user_attrs[TRIAL_ID_ATTR])
            for trial in self.study.get_trials(deepcopy=False)
            if trial.user_attrs.get(INDEX_ATTR, -1) >= index and TRIAL_ID_ATTR in trial.user_attrs
        ]

    def propose(self) -> Proposal:
        """The next within-budget config. Over-budget points are told back as infeasible;
        after :data:`MAX_DRAWS_PER_SAMPLE` of them in a row, :class:`UserError`."""
        smallest = None
        for _ in range(MAX_DRAWS_PER_SAMPLE):
            trial = self.study.ask()
            values = draw_values(self.space.spec, _Suggest(trial))
            config = config_from_values(
                self.space, values, self.data_dir, self.seed, self.seed * 1000 + self.proposed, self.max_epochs
            )
            trial.set_constraint(OVER_BUDGET, config.params - config.budget)
            trial.set_user_attr("params", config.params)
            if config.params <= config.budget:
                trial.set_user_attr(INDEX_ATTR, self.proposed)
                trial.set_user_attr("epochs", config.train.epochs)
                if self.settings.cost == "macs" and self.settings.name == "nsga2":
                    trial.set_user_attr("macs", _macs(config))
                self.proposed += 1
                self._live[trial.number] = trial
                return Proposal(trial.number, config, searched_values(self.space.spec, values))
            self.infeasible += 1
            smallest = config.params if smallest is None else min(smallest, config.params)
            self.study.tell(trial, self._worst(config.params))
        raise UserError(
            f"{self.space.path}: no configuration fits the budget of {self.space.spec.budget:,} parameters "
            f"(smallest of {MAX_DRAWS_PER_SAMPLE} proposals: {smallest:,})"
        )

    def name_trial(self, number: int, trial_id: str) -> None:
        """Record which Tune trial ran proposal ``number``."""
        self._trial(number).set_user_attr(TRIAL_ID_ATTR, trial_id)

    def _worst(self, params: int) -> float | list[float]:
        """What an over-budget proposal is told: the worst score (and its size with ``nsga2``)."""
        if len(self.objectives) == 1:
            return 0.0
        return [0.0, 0.0] if shift_objectives(self.settings) else [0.0, float(params)]

    def report(self, number: int, epoch: int, score: float, result: Mapping[str, Any] | None = None) -> None:
        """Record ``score`` (of :attr:`metric`: ``val_acc`` unless the space selects another)
        after ``epoch`` (1-based, as the worker reports it); an epoch reported before (a trial
        restored from its checkpoint) keeps its first value. ``result`` is the epoch's whole
        report: NSGA-II with ``objectives: shift`` keeps its ``val_acc`` and ``val_acc_shift``.

        Single-objective studies keep it as an intermediate value; Optuna has none for
        multi-objective ones (``nsga2``), whose trials keep ``val_acc_by_epoch`` instead.
        """
        frozen = self.study.get_trials(deepcopy=False)[number]
        if frozen.state != TrialState.RUNNING or epoch in _accuracies(frozen) or not math.isfinite(score):
            return
        if len(self.objectives) == 1:
            self._trial(number).report(score, step=epoch)
            return
        by_epoch = {**frozen.user_attrs.get(BY_EPOCH_ATTR, {}), str(epoch): score}
        self._trial(number).set_user_attr(BY_EPOCH_ATTR, by_epoch)
        if shift_objectives(self.settings):
            pair = [float((result or {}).get(name, float("nan"))) for name in self.objectives]
            if all(math.isfinite(value) for value in pair):
                objectives = {**frozen.user_attrs.get(OBJECTIVES_ATTR, {}), str(epoch): pair}
                self._trial(number).set_user_attr(OBJECTIVES_ATTR, objectives)

    def finish(self, number: int, reached_epoch: int, failed: bool = False) -> ProposalEnd | None:
        """End proposal ``number`` after it trained to ``reached_epoch``: failed, pruned
        (stopped before its planned epochs) or complete (told its best score, and its
        size with ``nsga2``). Returns the outcome; None when it had ended already."""
        frozen = self.study.get_trials(deepcopy=False)[number]
        if frozen.state != TrialState.RUNNING:
            return None  # told already (a resumed sweep may end a trial twice)
        accuracies = _accuracies(frozen)
        # A trial ended while paused (HyperBand) comes without its last result: the epochs it reported count.
        reached_epoch = max(reached_epoch, max(accuracies, default=0))
        outcome: ProposalEnd = "failed" if failed else "complete"
        if not failed and (reached_epoch < frozen.user_attrs.get("epochs", 0) or not accuracies):
            outcome = "pruned"
        if outcome == "failed":
            self.study.tell(number, state=TrialState.FAIL)
        elif outcome == "pruned":
            self.study.tell(number, state=TrialState.PRUNED)
        else:
            self.study.tell(number, self._told(frozen, accuracies))
        self._live.pop(number, None)
        return outcome

    def _told(self, frozen: optuna.trial.FrozenTrial, accuracies: dict[int, float]) -> float | list[float]:
        """A complete trial's values: its best score; with ``nsga2`` its size too, or (with
        ``objectives: shift``) the clean and shifted accuracy of its best epoch by the score (the
        latest of equals, as promotion picks it: :func:`raycifar.results.selection.candidates`)."""
        best_epoch = max(accuracies, key=lambda epoch: (accuracies[epoch], epoch))
        if len(self.objectives) == 1:
            return accuracies[best_epoch]
        if shift_objectives(self.settings):
            return list(frozen.user_attrs.get(OBJECTIVES_ATTR, {}).get(str(best_epoch), [0.0, 0.0]))
        return [accuracies[best_epoch], float(frozen.user_attrs.get(self.settings.cost, frozen.user_attrs["params"]))]

    def end_running(self) -> None:
        """End every proposal still running as pruned: the time budget stopped its trial
        without a last result, or ended the sweep before Tune started it."""
        for trial in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            self.study.tell(trial.number, state=TrialState.PRUNED)
            self._live.pop(trial.number, None)

    def pareto(self) -> list[dict[str, Any]]:
        """``nsga2``: the within-budget trials no other beats on both objectives (``trial_id``
        and the two values by :attr:`objectives`' names), by size or by ``val_acc``; [] for
        other searchers."""
        if len(self.objectives) < 2:
            return []
        first, second = self.objectives
        shift = shift_objectives(self.settings)
        feasible = [t for t in self.study.best_trials if t.constraints.get(OVER_BUDGET, 0) <= 0]
        rows = [  # fmt: skip
            {"trial_id": t.user_attrs.get(TRIAL_ID_ATTR), first: t.values[0],
             second: t.values[1] if shift else int(t.values[1])}
            for t in feasible
        ]
        return sorted(rows, key=lambda row: row[first] if shift else row[second])

    def _trial(self, number: int) -> optuna.Trial:
        """The running Optuna trial ``number``; one asked before a resume is reattached by
        its storage id (Optuna has no public lookup by number)."""
        if number not in self._live:
            self._live[number] = optuna.trial.Trial(self.study, self.study.get_trials(deepcopy=False)[number]._trial_id)
        return self._live[number]


def _accuracies(trial: optuna.trial.FrozenTrial) -> dict[int, float]:
    """A trial's reported ``val_acc`` by epoch (see :meth:`Search.report`)."""
    if trial.intermediate_values:
        return dict(trial.intermediate_values)
    return {int(epoch): acc for epoch, acc in trial.user_attrs.get(BY_EPOCH_ATTR, {}).items()}


def _macs(config: TrialConfig) -> int:
    from raycifar.models.budget import count_macs

    return count_macs(config.model)
