"""``raycifar sweep``: validate everything before Ray starts (space, data, names, the
leaderboard), plan the search, run the sweep on Ray, promote its best checkpoint and write
its report.

It tells a :class:`~raycifar.display.Display` what happens; the CLI draws it with Rich.
Errors: :class:`~raycifar.errors.UserError` for bad input (before Ray starts wherever it can
be known then), :class:`~raycifar.errors.RunFailed` when nothing is left to promote,
:class:`~raycifar.errors.Interrupted` on Ctrl+C.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path

from raycifar.cluster.session import RunResources, check_reachable, disconnect, prepare_environment
from raycifar.config import MAX_FAILURES
from raycifar.data.corrupted_reader import read_corrupted_set
from raycifar.data.fingerprint import data_fingerprint
from raycifar.data.readers import DataNotFound
from raycifar.display import Display, Quiet
from raycifar.entries.from_sweep import promote_command_line, promoted_row, sweep_costs
from raycifar.errors import PromotionFailed, UserError
from raycifar.pipeline import lazy
from raycifar.pipeline.preflight import (
    check_data,
    check_name,
    check_resources,
    check_results_dir,
    claim_sweep_dir,
    holding_sweep,
    make_results_dir,
)
from raycifar.pipeline.steps import connect_ray, log_promoted, promote_checkpoint, write_sweep_report
from raycifar.pipeline.wandb_log import artifact_name, check_mode
from raycifar.results import layout
from raycifar.results.names import check_fits
from raycifar.results.resume import SavedOptions, save_options
from raycifar.results.sweep_record import SweepRecorder
from raycifar.search.plan import TrialCount, check_scheduler_fits, longest_trial, trial_count, with_searcher
from raycifar.search.sample import sample_configs
from raycifar.search.samplers import startup_trials
from raycifar.search.searchers import Search
from raycifar.space.file import pbt_dimensions, with_scheduler
from raycifar.space.find import Space, load_space
from raycifar.sweep.options import IN_TRIAL, TORCH_TRAINER, Resume, SweepOptions, SweepPlan, TrialRunner, choose_runner
from raycifar.sweep.outcome import SweepOutcome
from raycifar.timeline import mark


@dataclass(frozen=True)
class SweepRequest:
    """A sweep as the user asks for it (``raycifar sweep``'s options, as plain values)."""

    space: str
    data_dir: Path
    results_dir: Path
    num_samples: int | None = None
    max_epochs: int | None = None
    resources: RunResources = RunResources()
    seed: int = 0
    address: str | None = None
    max_concurrent_trials: int | None = None
    wandb: str = "offline"
    dashboard: bool = True
    name: str | None = None
    download: bool = False
    overrides: dict[str, str] = field(default_factory=dict)  # space keys set by --loader/--dataset/--label-mode
    searcher: str | None = None  # None: the space file's searcher (random by default)
    max_trials: int | None = None  # a cap on the trials, whatever num_samples says
    time_budget_s: float | None = None  # from the command's start: no trial runs past it
    max_failures: int = MAX_FAILURES  # restarts of a crashed trial from its last checkpoint
    scheduler: str | None = None  # --scheduler: replaces the space's scheduler.name
    started: float | None = None  # time.monotonic() when the command started (None: now); the time budget counts from it
    torch_trainer: bool = False  # --torch-trainer: a Ray Train run per trial even for one worker
    runner: TrialRunner | None = None  # where trials train; None: chosen (choose_runner); a resume: the sweep's own
    corrupted: Path | None = None  # --corrupted: the corrupted test set to score the winner on (None: the default folder, if any)
    robustness: bool | None = None  # --robustness / --no-robustness; None: the default rule (raycifar.entries.robustness)
    data_fingerprint: str | None = None  # the data's (raycifar.data.fingerprint), recorded with the sweep
    repointed: bool = False  # a resume's --data-dir re-pointed the sweep's moved data folder: trials read data_dir


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep produced: its outcome and the promoted leaderboard row."""

    name: str
    outcome: SweepOutcome
    row: dict
    report: Path | None = None  # sweeps/<name>/report.html, None if it could not be written
    promoted: bool = True  # False: an extension whose best was already on the leaderboard (``row``)


def sweep_and_promote(request: SweepRequest, display: Display | None = None) -> SweepResult:
    """Validate, plan the search, run the sweep on Ray, and promote its best checkpoint."""
    started = request.started if request.started is not None else time.monotonic()
    prepare_environment(request.address)  # before anything imports Ray: it reads these settings once
    display = display or Quiet()
    results_dir = request.results_dir
    loaded = with_searcher(load_space(request.space, request.overrides), request.searcher)
    if request.scheduler is not None:
        loaded = _with_scheduler(loaded, request.scheduler, display)
    count = trial_count(loaded, request.num_samples, request.max_trials, request.time_budget_s)
    check_scheduler_fits(loaded, count)
    check_mode(request.wandb)
    name = check_name(request.name or f"{loaded.name}-{datetime.now():%Y%m%d-%H%M%S}")
    artifact = artifact_name({"sweep": name}) if request.wandb != "off" else None
    check_fits(name, "--name" if request.name else "sweep name", layout.sweep_paths(results_dir, name), artifact)
    if layout.sweep_dir(results_dir, name).exists():
        raise UserError(f"a sweep named {name!r} already exists in {layout.sweeps_dir(results_dir)}: choose another --name")
    check_resources(request.resources, request.address)
    check_results_dir(results_dir)
    try:
        check_data(request.data_dir, request.download, loaded.spec, request.seed, display)
    except DataNotFound as err:
        raise err.with_hint("pass --data-dir FOLDER where it is, or --download to fetch it into the --data-dir") from None
    if request.corrupted is not None:  # a bad --corrupted stops here, before Ray, not after the sweep
        _check_corrupted(request.corrupted, loaded.spec.dataset, loaded.spec.label_mode)
    sample_configs(loaded, 1, request.seed, request.data_dir, request.max_epochs)  # a space that cannot fit fails here
    if request.address is not None:  # nothing is written before the cluster answers
        check_reachable(request.address)
    make_results_dir(results_dir)
    runner = choose_runner(request.resources.workers, loaded.spec.scheduler.name, request.torch_trainer)
    fingerprint = data_fingerprint(request.data_dir, loaded.spec.dataset, loaded.spec.label_mode)
    request = replace(request, runner=runner, data_fingerprint=fingerprint)
    sweep_dir = claim_sweep_dir(results_dir, name)
    with holding_sweep(sweep_dir):
        display.info(_plan_line(name, loaded, count))
        _save_resume_options(sweep_dir, request, loaded.path)
        longest = longest_trial(loaded, request.max_epochs)
        return run_and_promote(request, name, loaded, count.trials, longest, started, display)


def _check_corrupted(folder: Path, dataset: str, label_mode: str) -> None:
    """A :class:`UserError` for a ``--corrupted`` folder that is not a corrupted set of the
    space's dataset and label mode (promotion checks the labels against the model again)."""
    found = read_corrupted_set(folder)
    if not found.official and (found.dataset, found.label_mode) != (dataset, label_mode):
        raise UserError(
            f"--corrupted {found.folder}: a corrupted {found.dataset} ({found.label_mode}) set, but the sweep is "
            f"{dataset} ({label_mode})"
        )


def _plan_line(name: str, space: Space, count: TrialCount) -> str:
    searcher = space.spec.searcher
    how = searcher.name
    if searcher.name == "tpe":
        trials = count.trials if count.trials is not None else None
        how += f" (first {searcher.n_startup_trials or startup_trials(trials)} proposals random)"
    trials = f"{count.trials} trials" if count.trials is not None else "trials until the time budget"
    note = f"; {count.note}" if count.note else ""
    return (
        f"sweep {name}: {trials} proposed by {how} from {space.path}{note}, "
        f"each fitted to the budget of {space.spec.budget:,} parameters"
    )


def _with_scheduler(loaded: Space, name: str, display: Display) -> Space:
    """The loaded space under ``--scheduler name``; says which of the file's settings it drops."""
    spec, dropped = with_scheduler(loaded.spec, name, str(loaded.path))
    if dropped:
        display.info(f"--scheduler {name}: not using the space's {', '.join('scheduler.' + k for k in dropped)}")
    return replace(loaded, spec=spec)


def run_and_promote(
    request: SweepRequest, name: str, space: Space, trials: int | None, max_epochs: int, started: float,
    display: Display, resume: Resume | None = None,
) -> SweepResult:
    """Run sweep ``name`` (Ray connected here, disconnected at the end), promote its best
    epoch, record the promotion and write the report; ``resume``: the sweep continues."""
    if request.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    options = SweepOptions(
        results_dir=request.results_dir, sweep_name=name, resources=request.resources,
        address=request.address, max_concurrent_trials=request.max_concurrent_trials, wandb=request.wandb,
        max_failures=request.max_failures, runner=request.runner or TORCH_TRAINER,
        data_fingerprint=(  # in-trial trials keep the decoded split under it; TorchTrainer workers never reuse one
            (request.data_fingerprint or data_fingerprint(request.data_dir, space.spec.dataset, space.spec.label_mode))
            if request.runner == IN_TRIAL else None
        ),
        data_dir=str(request.data_dir) if request.repointed else None,
    )  # fmt: skip
    sweep_dir = layout.sweep_dir(request.results_dir, name)
    mark(sweep_dir, "command_start", at=time.time() - (time.monotonic() - started))
    try:
        connect_ray(request.address, request.dashboard, display)
        mark(sweep_dir, "ray_up")
        budget = (
            None if request.time_budget_s is None else max(1.0, request.time_budget_s - (time.monotonic() - started))
        )
        plan = _plan(request, space, sweep_dir, trials, max_epochs, budget, resume is not None)
        if resume is not None and resume.extend:
            plan = replace(plan, to_propose=resume.added)
        with display.sweep_progress(trials) as progress:
            mark(sweep_dir, "sweep_start")
            outcome = lazy.sweep_driver().run_sweep(plan, space.spec.scheduler, options, progress, resume)
            mark(sweep_dir, "sweep_end")

        spent = sweep_costs(sweep_dir, outcome.best_trial_id)
        display.info(f"{_outcome_line(outcome, plan.search.infeasible, lazy.sweep_schedulers().label(space.spec.scheduler))}; {spent.line}")
        for problem in outcome.problems:
            display.info(f"  {problem}")
        row = promoted_row(request.results_dir, outcome.best_checkpoint)  # an extension that found nothing better
        promoted = row is None
        if row is not None:
            display.info(f"the best epoch is still leaderboard entry {row['entry_id']}: nothing new to promote")
        else:
            try:
                row = promote_checkpoint(
                    outcome.best_checkpoint, request.results_dir, sweep=name, trial_id=outcome.best_trial_id,
                    val_acc=outcome.best_val_acc, epochs=outcome.best_epoch, **spent.row_fields,
                    corrupted=request.corrupted, robustness=request.robustness, sweep_wall_s=outcome.wall_seconds,
                    tell=display.info, data_dir=request.data_dir if request.repointed else None,
                )  # fmt: skip
            except PromotionFailed as err:  # the record says completed, not promoted: `raycifar promote` finishes it
                command = promote_command_line(
                    request.results_dir, name, corrupted=request.corrupted, robustness=request.robustness
                )
                raise err.finish_with(f"sweep {name}", command) from None
            log_promoted(row, request.results_dir, request.wandb, display)
        SweepRecorder.reopen(layout.sweep_dir(request.results_dir, name)).promoted(row["entry_id"])
    finally:  # before the report: nothing may run beside ray.shutdown (a Ray handle freed in
        disconnect()  # another thread during it makes Ray end the process with exit code 1)
        mark(sweep_dir, "ray_down")
    report = write_sweep_report(request.results_dir, name, display)
    mark(sweep_dir, "report_written")
    return SweepResult(name, outcome, row, report, promoted)


def _plan(
    request: SweepRequest, space: Space, sweep_dir: Path, trials: int | None, max_epochs: int,
    budget: float | None, resumed: bool,
) -> SweepPlan:
    """The :class:`raycifar.sweep.options.SweepPlan`: the study of the space's searcher (on a resume:
    the study as saved, read for its Pareto set); under PBT, which takes no searcher, the
    first population drawn at random instead."""
    spec = space.spec
    if spec.scheduler.name != "pbt":
        search = Search.on_disk(
            space, spec.searcher, request.seed, request.data_dir, request.max_epochs, sweep_dir, trials
        )
        return SweepPlan(search, trials, max_epochs, budget)
    search = Search.in_memory(space, "random", request.seed, request.data_dir, request.max_epochs)
    population = None if resumed else [search.propose().config for _ in range(trials or 0)]
    return SweepPlan(search, trials, max_epochs, budget, population, pbt_dimensions(spec))


def _outcome_line(outcome: SweepOutcome, infeasible: int, scheduler: str) -> str:
    ended = "ended by its time budget after" if outcome.out_of_time else "finished in"
    return (
        f"sweep {ended} {outcome.wall_seconds:.0f} s: {outcome.trials} trials, "
        f"{outcome.stopped_early} stopped early by {scheduler}, {outcome.failed} failed, {outcome.diverged} diverged, "
        f"{infeasible} over-budget proposals "
        f"refused; {_best(outcome)} (trial {outcome.best_trial_id}, epoch {outcome.best_epoch})"
    )


def _best(outcome: SweepOutcome) -> str:
    """``best val_acc 0.8123``, or with another selected score ``best val_acc_mean 0.7710 (val_acc 0.8123)``."""
    if outcome.best_score is None:
        return f"best val_acc {outcome.best_val_acc:.4f}"
    return f"best {outcome.metric} {outcome.best_score:.4f} (val_acc {outcome.best_val_acc:.4f})"


def _save_resume_options(sweep_dir: Path, request: SweepRequest, space_path: Path) -> None:
    """Keep what ``--resume`` needs: the sweep's options (:mod:`raycifar.results.resume`)."""
    resources = request.resources
    save_options(sweep_dir, SavedOptions(
        space=str(Path(space_path).resolve()), data_dir=str(request.data_dir), seed=request.seed,
        data_fingerprint=request.data_fingerprint,
        num_samples=request.num_samples, max_epochs=request.max_epochs, cpus_per_trial=resources.cpus,
        searcher=request.searcher, max_trials=request.max_trials, time_budget_s=request.time_budget_s,
        max_failures=request.max_failures,
        gpus_per_trial=resources.gpus, workers_per_trial=resources.workers,
        max_concurrent_trials=request.max_concurrent_trials, wandb=request.wandb, address=request.address,
        trial_runner=request.runner,
        **{key: request.overrides.get(key) for key in ("loader", "dataset", "label_mode")},
    ))  # fmt: skip
