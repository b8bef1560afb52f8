"""The sweep: Ray Tune runs one function trial per drawn config, each fitting its own Ray
Train ``TorchTrainer`` (:func:`raycifar.train_run.make_trainer`); the space's scheduler
(:mod:`raycifar.schedulers`: ASHA by default) stops weak trials early on ``val_acc`` or, for
PBT, clones strong ones, and :mod:`raycifar.selection` picks the best epoch at the end.

Faults: Ray Train restarts a trial whose worker crashed from its last checkpoint, up to
``SweepOptions.max_failures`` times (Tune itself never retries: a Tune retry would leave an
``error.txt`` in a trial that recovered). A trial that still fails ends in ``error`` with a
one-line reason (:class:`TrialFailed`) in its ``error.txt``, its record entry and the
outcome's ``problems``; a trial whose loss diverged ends in ``diverged`` and is never
selected. The other trials go on either way. A lost worker node is such a crash: the trials'
drivers and Train controllers stay on the head node (:data:`DRIVER_RESOURCES`).

This module and :mod:`raycifar.schedulers` are the only ones that import ``ray.tune``.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs
import ray
import ray.train
from ray import tune
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from raycifar.config import TrialConfig
from raycifar.display import ProgressSink
from raycifar.errors import Interrupted, RunFailed
from raycifar.promote_sweep import read_trials
from raycifar.ray_session import RunResources, concurrent_runs, resolve_gpus
from raycifar.resume import SCHEDULER_STATE_FILE
from raycifar.schedulers import make_scheduler, population_space, run_population_trial
from raycifar.search import Search
from raycifar.selection import Selection, TrialHistory, is_diverged, select_best
from raycifar.space_file import Dimension, SchedulerSettings
from raycifar.sweep_record import TERMINAL_STATES, TRIAL_DIR_PREFIX, SweepRecorder, completion_state
from raycifar.train_backend import ray_is_local
from raycifar.train_run import MAX_FAILURES, divergence_message, failure_reason, make_trainer, scaling_config
from raycifar.variants import model_name
from raycifar.wandb_log import WandbMode
from raycifar.worker_groups import release_leaked

# The Tune function only waits on its trainer, on the head node (a sliver of the resource Ray
# gives the head alone): Ray Train places a run's controller on the node of the process that
# calls fit(), so a driver on a worker node would take its trial down with that node.
DRIVER_RESOURCES = {"cpu": 0, "memory": 100 * 1024**2, "node:__internal_head__": 0.001}


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
    """A sweep to continue (see :mod:`raycifar.resume`): the trials that completed before its
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


class TrialFailed(Exception):
    """A sweep trial's Train run failed after its restarts; the message is the reason, one line."""


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


class _StudySearcher(Searcher):
    """Tune's view of a :class:`Search`: each ``suggest`` is one within-budget proposal,
    each result an intermediate value, each ended trial told back (complete, pruned, failed).

    It limits the trials running at once itself (``max_concurrent``; Tune's own limiter would
    be pickled with the experiment and keep the first driver's limit): a resumed sweep takes
    the limit of the driver that resumes it, e.g. more trials on a bigger cluster."""

    def __init__(self, search: Search, trials: int | None, max_concurrent: int, key: str = "") -> None:
        super().__init__(metric="val_acc", mode="max")
        self.search, self.trials, self.max_concurrent, self.key = search, trials, max_concurrent, key
        self.numbers: dict[str, int] = {}  # Tune trial id -> Optuna trial number
        self.records: dict[str, dict] = {}  # Tune trial id -> search record
        self.live: set[str] = set()  # proposed and not ended

    def set_search_properties(self, metric, mode, config, **spec) -> bool:
        return True

    def suggest(self, trial_id: str) -> dict | str | None:
        if self.trials is not None and len(self.numbers) >= self.trials:
            return Searcher.FINISHED
        if len(self.live) >= self.max_concurrent:
            return None  # Tune asks again when a trial ends
        self.live.add(trial_id)
        proposal = self.search.propose()
        self.search.name_trial(proposal.number, trial_id)
        self.numbers[trial_id], self.records[trial_id] = proposal.number, proposal.search
        return proposal.config.model_dump(mode="json")

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id in self.numbers and "val_acc" in result and "epoch" in result:
            self.search.report(self.numbers[trial_id], int(result["epoch"]), float(result["val_acc"]))

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        self.live.discard(trial_id)
        if trial_id not in self.numbers:
            return
        self.on_trial_result(trial_id, result or {})  # Tune hands the last result to this call only
        self.search.finish(self.numbers[trial_id], int((result or {}).get("epoch", 0)), failed=error)

    def save(self, checkpoint_path: str) -> None:
        # The study is on disk already; this is the map from Tune's trials to its trials.
        state = {"numbers": self.numbers, "records": self.records, "live": sorted(self.live)}
        Path(checkpoint_path).write_text(json.dumps(state))

    def restore(self, checkpoint_path: str) -> None:
        """After ``Tuner.restore``: the map back, the resuming driver's concurrency limit
        (:data:`_LIVE`), a fresh sampler seed, and proposals asked after Tune last saved its
        state (their trials are unknown to Tune) ended as lost."""
        state = json.loads(Path(checkpoint_path).read_text())
        self.numbers, self.records = state["numbers"], state["records"]
        self.live = set(state.get("live", []))
        if getattr(self, "key", "") in _LIVE:
            self.max_concurrent = _LIVE[self.key].max_concurrent
        self.search.reopened(set(self.numbers.values()))


class _ProgressCallback(tune.Callback):
    """Forwards trial counts and the best ``val_acc`` so far to a :class:`ProgressSink`."""

    def __init__(
        self, sink: ProgressSink, recorder: SweepRecorder | None = None, key: str = "", searcher: Any = None
    ) -> None:
        self.sink, self.recorder, self.key, self.searcher = sink, recorder, key, searcher
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
        take this driver's display, recorder and completed trials (:data:`_LIVE`)."""
        if self.key in _LIVE:
            live = _LIVE[self.key]
            self.sink, self.recorder, self.completed = live.sink, live.recorder, live.completed
            self.running, self.done = set(), len(self.completed)
            self._reconciled = False

    def on_step_begin(self, iteration, trials, **info):
        if self.recorder is not None and not getattr(self, "_reconciled", True):
            self._reconciled = True
            self.recorder.mark_lost({t.trial_id for t in trials})

    def _push(self) -> None:
        if self.sink is not None:
            self.sink.update(self.done, len(self.running), self.best)

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
        if "val_acc" in result and not is_diverged(result):
            self.best = max(self.best or 0.0, float(result["val_acc"]))
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
            state = "diverged" if diverged else completion_state(int(trial.last_result.get("epoch", 0)), epochs)
            self.recorder.trial_ended(trial.trial_id, state, reason=diverged)
        self._finish(trial)

    def on_trial_error(self, iteration, trials, trial, **info):
        error_file = getattr(trial, "error_file", None)
        reason = _error_reason(trial)
        self._problem(trial.trial_id, f"failed: {reason}", error_file)
        if self.recorder is not None:
            self.recorder.trial_ended(trial.trial_id, "error", error_file=error_file, reason=reason)
        self._finish(trial)

    def _problem(self, trial_id: str, what: str, error_file: str | None) -> None:
        """Note and show a trial that failed or diverged (``what``: "failed: ..." or "diverged ...")."""
        self.problems[trial_id] = f"trial {trial_id} {what}"
        if self.sink is not None:
            self.sink.trial_failed(trial_id, error_file, what)


def _error_reason(trial) -> str:
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
    return last.removeprefix(ours) if last.startswith(ours) else _short_error(last)


def _short_error(line: str, limit: int = 160) -> str:
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


@dataclass(frozen=True)
class _Driver:
    """What the driver process that resumes a sweep brings to the objects Tune restores from
    its pickle: the live display, the record, the completed trials, the concurrency limit."""

    sink: ProgressSink
    recorder: SweepRecorder
    completed: frozenset[str]
    max_concurrent: int


# The sweeps this process drives, by sweep folder. A restored callback or searcher finds its
# driver here (see _ProgressCallback.setup and _StudySearcher.restore).
_LIVE: dict[str, _Driver] = {}


class _SchedulerState(tune.Callback):
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
            temp = self.path.with_name(f".{self.path.name}.tmp")
            self.scheduler.save(str(temp))
            os.replace(temp, self.path)

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


def _make_trial_function(
    options: SweepOptions, train_storage: Path, gpus: float, completed: frozenset[str], scheduler: SchedulerSettings
):
    """The Tune function trial: fits one TorchTrainer on the trial's config (its Train run is
    named after the trial and resumes from its own last checkpoint); a trial in ``completed``
    returns at once. Under PBT it reports Tune checkpoints itself and starts each exploit
    generation from the donor's (:func:`raycifar.schedulers.run_population_trial`)."""
    scaling, local = scaling_config(options.resources, gpus), ray_is_local(options.address)

    def run_trial(config: dict) -> None:
        if scheduler.name == "pbt":
            def fit(name: str, init: str | None, callbacks: list) -> None:
                _fit(lambda: make_trainer(config, name, train_storage, scaling, callbacks, local, options.max_failures, init),
                     options.max_failures)  # fmt: skip

            run_population_trial(config, train_storage, scheduler.perturbation_interval, fit)
            return
        trial_id = tune.get_context().get_trial_id()
        if trial_id in completed:  # it ended after Tune last saved its state (every ~10 s)
            return
        callbacks = [TuneReportCallback()]
        _fit(lambda: make_trainer(config, trial_id, train_storage, scaling, callbacks, local, options.max_failures),
             options.max_failures)  # fmt: skip

    return tune.with_resources(run_trial, DRIVER_RESOURCES)


def _fit(make: Callable[[], Any], retries: int) -> None:
    """Fit the TorchTrainer ``make`` builds; a run that failed after its restarts is a
    :class:`TrialFailed`.

    Ray Train restarts a crashed worker group itself (``FailureConfig``), except when a worker
    dies while its group starts: that is a ``ControllerError``, which it never retries, and
    whose placement group it leaves reserved (:mod:`raycifar.worker_groups` releases it). Such
    a run is fitted again under the same name, so it resumes from its latest checkpoint, at
    most ``retries`` times.
    """
    for attempt in range(retries + 1):
        try:
            make().fit()
            return
        except ray.train.ControllerError as err:
            release_leaked()
            if attempt == retries:
                raise TrialFailed(failure_reason(err)) from None
        except ray.train.TrainingFailedError as err:
            raise TrialFailed(failure_reason(err)) from None


def _trial_dirname(trial) -> str:
    """Short trial folder names (Tune's default spells out the whole config)."""
    return f"{TRIAL_DIR_PREFIX}{trial.trial_id}"


def _callbacks(options: SweepOptions, progress: _ProgressCallback, scheduler: TrialScheduler, warm: bool) -> list:
    sweep_dir = options.results_dir / "sweeps" / options.sweep_name
    callbacks: list = [progress, _SchedulerState(scheduler, sweep_dir / SCHEDULER_STATE_FILE, warm)]
    if options.wandb != "off":
        from ray.air.integrations.wandb import WandbLoggerCallback

        wandb_dir = options.results_dir / "wandb"
        wandb_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(
            WandbLoggerCallback(
                project="raycifar",
                group=options.sweep_name,
                mode=options.wandb,
                dir=str(wandb_dir),
                # How long the end of a sweep waits for W&B; offline runs only flush files.
                upload_timeout=30 if options.wandb == "offline" else 300,
                resume="allow",  # a resumed trial continues its own run (Ray passes resume=False)
            )
        )
    return callbacks


def run_sweep(
    plan: SweepPlan,
    scheduler: SchedulerSettings,
    options: SweepOptions,
    progress: ProgressSink,
    resume: Resume | None = None,
) -> SweepOutcome:
    """Run the trials ``plan``'s searcher proposes as Tune trials under the scheduler (Ray
    must be connected) and find the best epoch. A time budget that ends the sweep is not an
    interruption: the best epoch so far is the outcome.

    With ``resume``, continue the sweep ``options.sweep_name`` with ``Tuner.restore``: Tune
    brings back its trials and searcher (``plan.search`` then only reads the study), and
    :class:`_SchedulerState` the scheduler's records.
    """
    started = time.monotonic()
    gpus = resolve_gpus(options.resources, local=options.address is None)
    storage = options.results_dir / "sweeps"
    sweep_dir = storage / options.sweep_name
    completed = resume.completed if resume else frozenset()
    trainable = _make_trial_function(options, sweep_dir / "train_runs", gpus, completed, scheduler)
    max_concurrent = concurrent_runs(options.resources, gpus, options.max_concurrent_trials)
    if plan.population is None:  # Tune holds 1 pending trial with a custom searcher: as many as run at once
        os.environ["TUNE_MAX_PENDING_TRIALS_PG"] = str(max_concurrent)
    else:  # PBT: Tune's own variant generator and its own default
        os.environ.pop("TUNE_MAX_PENDING_TRIALS_PG", None)
    if resume is None:
        recorder = SweepRecorder.start(
            sweep_dir, options.sweep_name, plan.search.space.name, plan.trials,
            scheduler=scheduler.model_dump(), searcher=plan.search.settings.name,
        )  # fmt: skip
    else:
        recorder = SweepRecorder.reopen(sweep_dir)
        recorder.resumed(planned_trials=plan.trials if resume.extend else None)
    if resume is None or resume.extend:
        tuner = _new_tuner(trainable, plan, scheduler, options, max_concurrent, progress, recorder, resume is not None)
    else:
        # A trial that ended after Tune's last save is run again and returns at once, with no
        # result: Tune's check that every result has val_acc would end the sweep (Tune's own switch).
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
        _LIVE[str(sweep_dir)] = _Driver(progress, recorder, completed, max_concurrent)
        tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable, resume_errored=True)
    try:
        results = tuner.fit()
    finally:
        _LIVE.pop(str(sweep_dir), None)
    out_of_time = plan.time_budget_s is not None and time.monotonic() - started >= plan.time_budget_s
    if out_of_time:  # Tune stops the trials it was running without ending them in callbacks
        recorder.stop_unended("stopped by the time budget")
        plan.search.end_running()
    unfinished = None if plan.trials is None else plan.trials - recorder.record.done_trials()
    if not out_of_time and (unfinished is None or unfinished > 0):  # Tune ends early only when interrupted
        recorder.ended("interrupted")
        left = "its" if unfinished is None else f"{unfinished}"
        raise SweepInterrupted(
            f"sweep {options.sweep_name} stopped with {left} unfinished trials; nothing promoted. "
            f"Its results so far are in {results.experiment_path}: resume with raycifar sweep --resume {options.sweep_name}"
        )
    try:
        outcome = _summarise(results, recorder, options, time.monotonic() - started, out_of_time, _problems(recorder))
    except SweepFailed:
        recorder.ended("failed")
        raise
    recorder.ended("completed", pareto=plan.search.pareto())
    return outcome


def _problems(recorder: SweepRecorder) -> tuple[str, ...]:
    """One line per trial that failed or diverged, from the sweep record."""
    lines = []
    for trial_id, entry in recorder.record.trials.items():
        if entry.state == "error":
            lines.append(f"trial {trial_id} failed: {entry.reason or 'see its error.txt'}")
        elif entry.state == "diverged":
            lines.append(f"trial {trial_id} {entry.reason or 'diverged'}; not promoted")
    return tuple(lines)


def _new_tuner(
    trainable, plan: SweepPlan, scheduler: SchedulerSettings, options: SweepOptions, max_concurrent: int,
    progress: ProgressSink, recorder: SweepRecorder, extension: bool = False,
) -> tune.Tuner:  # fmt: skip
    """The Tuner of a new sweep, or of an extension of an ended one (a new Tune experiment in
    the same folder; its scheduler starts from the saved rung records): the plan's searcher
    proposes ``plan.proposals`` trials, ``max_concurrent`` at once, the scheduler stops early."""
    sweep_dir = options.results_dir / "sweeps" / options.sweep_name
    searcher = None  # PBT refuses searchers: Tune's variant generator runs its population
    if not plan.population:
        searcher = _StudySearcher(plan.search, plan.proposals, max_concurrent, key=str(sweep_dir))
    tracker = _ProgressCallback(progress, recorder, key=str(sweep_dir), searcher=searcher)
    if extension:  # the display goes on from the earlier trials
        tracker.done, tracker.best = recorder.record.done_trials(), _best_so_far(_histories([], recorder))
    trial_scheduler = make_scheduler(scheduler, plan.max_epochs, plan.mutations)
    callbacks = _callbacks(options, tracker, trial_scheduler, warm=extension)
    population = population_space([c.model_dump(mode="json") for c in plan.population]) if plan.population else None
    return tune.Tuner(
        trainable,
        param_space=population,
        tune_config=tune.TuneConfig(
            metric="val_acc",
            mode="max",
            scheduler=trial_scheduler,
            search_alg=searcher,
            num_samples=1 if population else (plan.proposals if plan.proposals is not None else -1),
            max_concurrent_trials=max_concurrent if population else None,
            trial_dirname_creator=_trial_dirname,
            time_budget_s=plan.time_budget_s,
        ),
        run_config=tune.RunConfig(
            name=options.sweep_name,
            storage_path=str(options.results_dir / "sweeps"),
            callbacks=callbacks,
            verbose=0,
        ),
    )


def _checkpoint_exists(path: str) -> bool:
    checkpoint = ray.train.Checkpoint(path)
    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def _history(result) -> TrialHistory:
    """A Tune trial result as a :class:`TrialHistory` (its reported epochs in order)."""
    frame = result.metrics_dataframe
    records = [] if frame is None or frame.empty else frame.to_dict("records")
    planned = TrialConfig.model_validate(result.config).train.epochs
    return TrialHistory(str(result.metrics.get("trial_id", "")) or result.path, planned, records, result.error is not None)


def _histories(results, recorder: SweepRecorder) -> list[TrialHistory]:
    """Every trial's history: those of this Tune experiment (``results``), and the ended
    trials of the sweep's earlier experiments (an extended sweep), read from their folders."""
    started = [result for result in results if result.config]  # a time budget can end a trial before it has one
    histories = [_history(result) for result in started]
    known = {history.trial_id for history in histories}
    earlier = {tid for tid, entry in recorder.record.trials.items() if tid not in known and entry.state in TERMINAL_STATES - {"lost"}}
    if earlier:
        histories += [h for h in read_trials(recorder.sweep_dir).histories if h.trial_id in earlier]
    return histories


def _best_so_far(histories: list[TrialHistory]) -> float | None:
    """The best ``val_acc`` any of these trials reported in an epoch that did not diverge."""
    scores = [float(r["val_acc"]) for h in histories for r in h.results if "val_acc" in r and not is_diverged(r)]
    return max(scores, default=None)


def _summarise(
    results, recorder: SweepRecorder, options: SweepOptions, wall_seconds: float, out_of_time: bool = False,
    problems: tuple[str, ...] = (),
) -> SweepOutcome:  # fmt: skip
    """The best epoch across all the sweep's trials whose checkpoint is kept and that did not
    diverge (see :mod:`raycifar.selection`); ``problems``: one line per failed or diverged trial."""
    selection: Selection = select_best(_histories(results, recorder), _checkpoint_exists)
    best = selection.best
    if best is None:
        first = f" ({problems[0]}{f'; {len(problems) - 1} more' if len(problems) > 1 else ''})" if problems else ""
        raise SweepFailed(
            f"no trial of sweep {options.sweep_name} left a checkpoint to promote{first}; "
            f"see the error.txt files under {results.experiment_path}"
        )
    return SweepOutcome(
        best_trial_id=best.trial_id,
        best_val_acc=best.val_acc,
        best_epoch=best.epoch,
        best_checkpoint=best.checkpoint,
        trials=selection.trials,
        stopped_early=selection.stopped_early,
        failed=selection.failed,
        wall_seconds=wall_seconds,
        out_of_time=out_of_time,
        diverged=selection.diverged,
        problems=problems,
    )


class SweepFailed(RunFailed):
    """The sweep ran but produced nothing to promote."""


class SweepInterrupted(Interrupted):
    """The sweep was stopped (Ctrl+C) before all trials finished."""
