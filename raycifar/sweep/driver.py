"""The sweep's driver: the Tuner of a new sweep, of a resumed one (``Tuner.restore``) or of
an extension of an ended one, run to its end, and the best epoch over all its trials
(:mod:`raycifar.results.selection`).

Faults: a trial whose process crashed is restarted from its last checkpoint, up to
``SweepOptions.max_failures`` times: by Tune (``FailureConfig``) on the in-trial path, by
Ray Train on the ``TorchTrainer`` path (:mod:`raycifar.sweep.trial`). Tune leaves the
``error.txt`` of a trial it restarted, so the sweep record, not that file, says which
trials failed. A trial that still fails ends in ``error`` with a one-line reason in its
``error.txt``, its record entry and the outcome's ``problems``; a trial whose loss diverged
ends in ``diverged`` and is never selected. The other trials go on.
"""

from __future__ import annotations

import os
import time

from ray import tune
from ray.tune.schedulers import TrialScheduler

from raycifar.cluster.session import concurrent_runs, resolve_gpus
from raycifar.config import TrialConfig
from raycifar.display import ProgressSink
from raycifar.results import layout
from raycifar.results.resume import SCHEDULER_STATE_FILE
from raycifar.results.schema import VAL_ACC
from raycifar.results.selection import Selection, TrialHistory, is_diverged, select_best, why_nothing
from raycifar.results.sweep_record import TERMINAL_STATES, SweepRecorder
from raycifar.results.trial_files import read_trials
from raycifar.space.sections import SchedulerSettings
from raycifar.sweep import legacy
from raycifar.sweep.options import IN_TRIAL, Resume, SweepOptions, SweepPlan
from raycifar.sweep.outcome import SweepFailed, SweepInterrupted, SweepOutcome
from raycifar.sweep.schedulers import make_scheduler, population_space
from raycifar.sweep.trial import make_trial_function, trial_dirname
from raycifar.sweep.tune_hooks import LIVE_DRIVERS, DriverState, ProgressCallback, SchedulerState, StudySearcher
from raycifar.sweep.wandb_trials import TrialRuns
from raycifar.train.run import checkpoint_exists


def _callbacks(options: SweepOptions, progress: ProgressCallback, scheduler: TrialScheduler, warm: bool) -> list:
    sweep_dir = layout.sweep_dir(options.results_dir, options.sweep_name)
    callbacks: list = [progress, SchedulerState(scheduler, sweep_dir / SCHEDULER_STATE_FILE, warm)]
    if options.wandb != "off":  # one W&B run per trial, written by this process (no actor per trial)
        wandb_dir = layout.wandb_dir(options.results_dir)
        wandb_dir.mkdir(parents=True, exist_ok=True)
        callbacks.append(TrialRuns(options.wandb, wandb_dir, options.sweep_name))
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
    :class:`SchedulerState` the scheduler's records.
    """
    started = time.monotonic()
    gpus = resolve_gpus(options.resources, local=options.address is None)
    storage = layout.sweeps_dir(options.results_dir)
    sweep_dir = storage / options.sweep_name
    completed = resume.completed if resume else frozenset()
    trainable = make_trial_function(options, layout.train_runs_dir(sweep_dir), gpus, completed, scheduler)
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
        LIVE_DRIVERS[str(sweep_dir)] = DriverState(progress, recorder, completed, max_concurrent)
        legacy.register()  # a sweep of an older raycifar names its pickled classes by their old paths
        tuner = tune.Tuner.restore(str(sweep_dir), trainable=trainable, resume_errored=True)
    try:
        results = tuner.fit()
    finally:
        LIVE_DRIVERS.pop(str(sweep_dir), None)
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
        outcome = _summarise(
            results, recorder, options, time.monotonic() - started, out_of_time, _problems(recorder), plan.search.metric
        )
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


def reuses_trial_processes(runner: str, scheduler: str) -> bool:
    """Whether Tune runs the next trial in a finished trial's process (``reuse_actors``):
    torch, raycifar and the data stay loaded. Always on the in-trial path, whose stopped
    trials end at their next report. A ``TorchTrainer`` trial's process waits in ``fit()``
    and hears of no stop, so only under FIFO, which stops no trial early: under ASHA,
    HyperBand, median or PBT, Tune ends a stopped trial's Train run by ending its process."""
    return runner == IN_TRIAL or scheduler == "fifo"


def _new_tuner(
    trainable, plan: SweepPlan, scheduler: SchedulerSettings, options: SweepOptions, max_concurrent: int,
    progress: ProgressSink, recorder: SweepRecorder, extension: bool = False,
) -> tune.Tuner:  # fmt: skip
    """The Tuner of a new sweep, or of an extension of an ended one (a new Tune experiment in
    the same folder; its scheduler starts from the saved rung records): the plan's searcher
    proposes ``plan.proposals`` trials, ``max_concurrent`` at once, the scheduler stops early."""
    sweep_dir = layout.sweep_dir(options.results_dir, options.sweep_name)
    searcher = None  # PBT refuses searchers: Tune's variant generator runs its population
    if not plan.population:
        searcher = StudySearcher(plan.search, plan.proposals, max_concurrent, key=str(sweep_dir))
    tracker = ProgressCallback(progress, recorder, key=str(sweep_dir), searcher=searcher, metric=plan.search.metric)
    if extension:  # the display goes on from the earlier trials
        tracker.done = recorder.record.done_trials()
        tracker.best = _best_so_far(_histories([], recorder), plan.search.metric)
    trial_scheduler = make_scheduler(scheduler, plan.max_epochs, plan.mutations)
    callbacks = _callbacks(options, tracker, trial_scheduler, warm=extension)
    population = population_space([c.model_dump(mode="json") for c in plan.population]) if plan.population else None
    in_trial = options.runner == IN_TRIAL  # Tune restarts the trials' own processes
    reuse = reuses_trial_processes(options.runner, scheduler.name)
    return tune.Tuner(
        trainable,
        param_space=population,
        tune_config=tune.TuneConfig(
            metric=plan.search.metric,
            mode="max",
            scheduler=trial_scheduler,
            search_alg=searcher,
            num_samples=1 if population else (plan.proposals if plan.proposals is not None else -1),
            max_concurrent_trials=max_concurrent if population else None,
            trial_dirname_creator=trial_dirname,
            time_budget_s=plan.time_budget_s,
            reuse_actors=reuse,
        ),
        run_config=tune.RunConfig(
            name=options.sweep_name,
            storage_path=str(layout.sweeps_dir(options.results_dir)),
            callbacks=callbacks,
            verbose=0,
            failure_config=tune.FailureConfig(max_failures=options.max_failures if in_trial else 0),
        ),
    )


def _history(result) -> TrialHistory:
    """A Tune trial result as a :class:`TrialHistory` (its reported epochs in order)."""
    frame = result.metrics_dataframe
    records = [] if frame is None or frame.empty else frame.to_dict("records")
    planned = TrialConfig.model_validate(result.config).train.epochs
    return TrialHistory(
        str(result.metrics.get("trial_id", "")) or result.path, planned, records, result.error is not None
    )


def _histories(results, recorder: SweepRecorder) -> list[TrialHistory]:
    """Every trial's history: those of this Tune experiment (``results``), and the ended
    trials of the sweep's earlier experiments (an extended sweep), read from their folders."""
    started = [result for result in results if result.config]  # a time budget can end a trial before it has one
    histories = [_history(result) for result in started]
    known = {history.trial_id for history in histories}
    earlier = {
        tid
        for tid, entry in recorder.record.trials.items()
        if tid not in known and entry.state in TERMINAL_STATES - {"lost"}
    }
    if earlier:
        histories += [h for h in read_trials(recorder.sweep_dir).histories if h.trial_id in earlier]
    return histories


def _best_so_far(histories: list[TrialHistory], metric: str) -> float | None:
    """The best ``metric`` (the sweep's selected score) any of these trials reported in an epoch
    that did not diverge."""
    scores = [float(r[metric]) for h in histories for r in h.results if metric in r and not is_diverged(r)]
    return max(scores, default=None)


def _summarise(
    results, recorder: SweepRecorder, options: SweepOptions, wall_seconds: float, out_of_time: bool = False,
    problems: tuple[str, ...] = (), metric: str = VAL_ACC,
) -> SweepOutcome:  # fmt: skip
    """The best epoch by ``metric`` (the sweep's selected score) across all the sweep's trials
    whose checkpoint is kept and that did not diverge (see :mod:`raycifar.results.selection`);
    ``problems``: one line per failed or diverged trial."""
    histories = _histories(results, recorder)
    selection: Selection = select_best(histories, checkpoint_exists, metric)
    best = selection.best
    if best is None:
        first = f" (first: {problems[0]})" if problems else ""
        raise SweepFailed(
            f"no trial of sweep {options.sweep_name} left a checkpoint to promote: "
            f"{why_nothing(histories, checkpoint_exists)}{first}; see the error.txt files under {results.experiment_path}"
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
        metric=metric,
        best_score=best.score,
    )
