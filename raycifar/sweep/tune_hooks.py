"""What Tune calls back during a sweep, and what it pickles with the experiment:

- :class:`StudySearcher`: Tune's searcher over the sweep's Optuna study;
- :class:`ProgressCallback`: trial counts and the best ``val_acc`` to the display, trial
  states to the sweep record;
- :class:`SchedulerState`: the scheduler's own state, saved after every trial event and
  loaded back on a resume (Tune 2.60 does not save it).

A restored callback or searcher finds the driver that resumes it in :data:`LIVE_DRIVERS`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from raycifar.config import TrialConfig
from raycifar.display import ProgressSink
from raycifar.models.registry import model_name
from raycifar.results.atomic import replacing_path
from raycifar.results.schema import EPOCH, TERMINAL_STATES, VAL_ACC, EpochMetrics
from raycifar.results.selection import is_diverged
from raycifar.results.sweep_record import SweepRecorder, completion_state
from raycifar.search.searchers import Search
from raycifar.sweep.outcome import error_reason
from raycifar.timeline import mark
from raycifar.train.run import divergence_message


class StudySearcher(Searcher):
    """Tune's view of a :class:`Search`: each ``suggest`` is one within-budget proposal,
    each result an intermediate value, each ended trial told back (complete, pruned, failed).

    It limits the trials running at once itself (``max_concurrent``; Tune's own limiter would
    be pickled with the experiment and keep the first driver's limit): a resumed sweep takes
    the limit of the driver that resumes it, e.g. more trials on a bigger cluster."""

    ran_unseen = 0  # after a resume: proposals Tune never saw whose trials ended anyway (see restore)

    def __init__(self, search: Search, trials: int | None, max_concurrent: int, key: str = "") -> None:
        super().__init__(metric=search.metric, mode="max")
        self.search, self.trials, self.max_concurrent, self.key = search, trials, max_concurrent, key
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self.records: dict[str, dict] = {}  # Tune trial id -> search record
        self.live: set[str] = set()  # proposed and not ended

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.trials is not None and len(self.numbers) + self.ran_unseen >= self.trials:
            return Searcher.FINISHED
        if len(self.live) >= self.max_concurrent:
            return None  # Tune asks again when a trial ends
        self.live.add(trial_id)
        mark(self.key or None, "trial_proposed", trial=trial_id)
        proposal = self.search.propose()
        self.search.name_trial(proposal.number, trial_id)
        self.numbers[trial_id], self.records[trial_id] = proposal.number, proposal.search
        return proposal.config.model_dump(mode="json")

    def follow(self, trials: list) -> None:
        """Keep the running count Tune's: a proposed trial that Tune ended without telling the
        searcher (one that failed to start in a reused process, say) no longer counts, so a
        sweep never waits for a trial that will not end."""
        ended = {trial.trial_id for trial in trials if trial.status in ("TERMINATED", "ERROR")}
        self.live -= ended

    def on_trial_result(self, trial_id: str, result: EpochMetrics) -> None:
        metric = self.search.metric
        if trial_id in self.numbers and metric in result and EPOCH in result:
            self.search.report(self.numbers[trial_id], int(result[EPOCH]), float(result[metric]), result)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.live.discard(trial_id)
        if trial_id not in self.numbers:
            return
        self.on_trial_result(trial_id, result or {})  # Tune hands the last result to this call only
        self.search.finish(self.numbers[trial_id], int((result or {}).get(EPOCH, 0)), failed=error)

    def save(self, checkpoint_path: str) -> None:
        # The study is on disk already; this is the map from Tune's trials to its trials.
        state = {"numbers": self.numbers, "records": self.records, "live": sorted(self.live),
                 "proposed": self.search.proposed}  # fmt: skip
        Path(checkpoint_path).write_text(json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        """After ``Tuner.restore``: the map back, the resuming driver's concurrency limit
        (:data:`LIVE_DRIVERS`), a fresh sampler seed, and proposals asked after Tune last saved its
        state (their trials are unknown to Tune) ended as lost if they were still running; those
        that ran to their end, as the sweep record says, count towards the trials to propose
        (:attr:`ran_unseen`), so a resumed sweep proposes neither more nor fewer than its plan."""
        state = json.loads(Path(checkpoint_path).read_text())
        self.numbers, self.records = state["numbers"], state["records"]
        self.live = set(state.get("live", []))
        if getattr(self, "key", "") in LIVE_DRIVERS:
            self.max_concurrent = LIVE_DRIVERS[self.key].max_concurrent
        self.search.reopened(set(self.numbers.values()))
        saved = state.get("proposed")  # absent in sweeps saved before it was kept
        driver = LIVE_DRIVERS.get(getattr(self, "key", ""))
        if saved is not None and driver is not None:
            self.ran_unseen = ended_in_record(driver.recorder, self.search.trials_since(saved))


def ended_in_record(recorder: SweepRecorder, trial_ids: list[str]) -> int:
    """How many of ``trial_ids`` the sweep record shows ended (finished, stopped early,
    failed or diverged; not lost): trials that ran to their end in a driver that died before
    Tune saved them. The record, not the study, decides: the driver may die between telling
    the study and writing the record, and the record's ``lost`` trial is then proposed again."""
    ended = TERMINAL_STATES - {"lost"}
    trials = recorder.record.trials
    return sum(trial_id in trials and trials[trial_id].state in ended for trial_id in trial_ids)


class ProgressCallback(tune.Callback):
    """Forwards trial counts and the best score so far (``metric``: the sweep's selected one) to a
    :class:`ProgressSink`."""

    metric: str = VAL_ACC  # a callback pickled by an older raycifar (a resumed sweep) has none of its own

    def __init__(
        self, sink: ProgressSink, recorder: SweepRecorder | None = None, key: str = "", searcher: Any = None,
        metric: str = VAL_ACC,
    ) -> None:  # fmt: skip
        self.sink, self.recorder, self.key, self.searcher, self.metric = sink, recorder, key, searcher, metric
        self.running: set[str] = set()
        self.done = 0
        self.best: float | None = None
        self.completed: frozenset[str] = frozenset()  # ended before a resume: not recorded again
        self.problems: dict[str, str] = {}  # trial id -> one line, for failed and diverged trials

    def __getstate__(self) -> dict:
        # Tune pickles its callbacks into the experiment state; the live display stays out.
        return {**self.__dict__, "sink": None, "recorder": None}  # the searcher is Tune's own object

    def setup(self, **info) -> None:
        """After ``Tuner.restore`` (this callback then comes from the tuner's pickle):
        take this driver's display, recorder and completed trials (:data:`LIVE_DRIVERS`)."""
        if self.key in LIVE_DRIVERS:
            live = LIVE_DRIVERS[self.key]
            self.sink, self.recorder, self.completed = live.sink, live.recorder, live.completed
            self.running, self.done = set(), len(self.completed)
            self._reconciled = False

    def on_step_begin(self, iteration, trials, **info):
        if isinstance(self.searcher, StudySearcher):
            self.searcher.follow(trials)
        if self.recorder is not None and not getattr(self, "_reconciled", True):
            self._reconciled = True
            self.recorder.mark_lost({t.trial_id for t in trials})

    def _push(self) -> None:
        if self.sink is not None:
            self.sink.update(self.done, len(self.running), self.best, self.metric)

    def on_trial_start(self, iteration, trials, trial, **info):
        if trial.trial_id in self.completed:  # re-queued by Tune: its function returns at once
            return
        self.running.add(trial.trial_id)
        if self.recorder is not None:
            config = TrialConfig.model_validate(trial.config)
            search = self.searcher.records.get(trial.trial_id) if self.searcher is not None else None
            self.recorder.trial_started(trial.trial_id, trial.config, model=model_name(config.model), search=search)
        self._push()

    def on_step_end(self, iteration, trials, **info):
        if self.recorder is not None:
            self.recorder.heartbeat()  # writes at most every few seconds

    def on_trial_result(self, iteration, trials, trial, result, **info):
        mark(self.key or None, "trial_result", trial=trial.trial_id, epoch=result.get(EPOCH))
        if self.metric in result and not is_diverged(result):
            self.best = max(self.best or 0.0, float(result[self.metric]))
        self._push()

    def _finish(self, trial) -> None:
        self.running.discard(trial.trial_id)
        self.done += 1
        self._push()

    def on_trial_complete(self, iteration, trials, trial, **info):
        if trial.trial_id in self.completed:
            return
        diverged = divergence_message(trial.last_result or {})
        if diverged:
            self._problem(trial.trial_id, f"{diverged}; not promoted", None)
        if self.recorder is not None:
            epochs = TrialConfig.model_validate(trial.config).train.epochs
            state = "diverged" if diverged else completion_state(int(trial.last_result.get(EPOCH, 0)), epochs)
            self.recorder.trial_ended(trial.trial_id, state, reason=diverged)
        self._finish(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        error_file = getattr(trial, "error_file", None)
        reason = error_reason(trial)
        self._problem(trial.trial_id, f"failed: {reason}", error_file)
        if self.recorder is not None:
            self.recorder.trial_ended(trial.trial_id, "error", error_file=error_file, reason=reason)
        self._finish(trial)

    def _problem(self, trial_id: str, what: str, error_file: str | None) -> None:
        """Note and show a trial that failed or diverged (``what``: "failed: ..." or "diverged ...")."""
        self.problems[trial_id] = f"trial {trial_id} {what}"
        if self.sink is not None:
            self.sink.trial_failed(trial_id, error_file, what)


@dataclass(frozen=True)
class DriverState:
    """What the driver process that resumes a sweep brings to the objects Tune restores from
    its pickle: the live display, the record, the completed trials, the concurrency limit."""

    sink: ProgressSink
    recorder: SweepRecorder
    completed: frozenset[str]
    max_concurrent: int


# The sweeps this process drives, by sweep folder. A restored callback or searcher finds its
# driver here (see ProgressCallback.setup and StudySearcher.restore).
LIVE_DRIVERS: dict[str, DriverState] = {}


class SchedulerState(tune.Callback):
    """Keeps the scheduler's state in ``sweeps/<name>/scheduler_state.pkl`` (its own
    ``save``, after every trial start, result and end), and loads it back on a resume.

    Tune 2.60 does not save the scheduler with its experiment state. This callback and the
    scheduler it refers to come back from the tuner's pickle as the objects Tune then uses;
    Tune calls :meth:`set_state` after the scheduler's ``set_search_properties`` and before
    the restored trials are added, so the scheduler gets its rung records back first. A
    scheduler without ``save``/``restore`` (FIFO, median stopping, PBT) keeps nothing.
    """

    def __init__(self, scheduler: TrialScheduler, path: Path, warm: bool = False) -> None:
        self.scheduler, self.path, self.warm = scheduler, path, warm

    def setup(self, **info) -> None:
        """An extension's scheduler starts from the saved state; loaded here, after Tune has
        checked and set the scheduler's metric and mode (a loaded state carries them already)."""
        if self.warm:
            self.warm_start()
            self.warm = False  # a later restore loads the state through set_state

    def _keeps_state(self) -> bool:
        kind = type(self.scheduler)
        return kind.save is not TrialScheduler.save and kind.restore is not TrialScheduler.restore

    def _save(self) -> None:
        if self._keeps_state():
            with replacing_path(self.path) as temporary:
                self.scheduler.save(str(temporary))

    def on_trial_start(self, iteration, trials, trial, **info):
        self._save()

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._save()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._save()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._save()

    def get_state(self) -> dict:
        return {"scheduler_state": str(self.path)}  # not empty: Tune then calls set_state on restore

    def set_state(self, state: dict) -> None:
        self.warm_start()

    def warm_start(self) -> None:
        """Load the saved state into the scheduler (a resume, or an extension whose new trials
        then meet the rung records of the sweep's earlier ones)."""
        if self._keeps_state() and self.path.is_file():
            self.scheduler.restore(str(self.path))
