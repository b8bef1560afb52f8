"""The user's jobs, top to bottom: sweep-and-promote and train-and-promote.

Each job is a plain function of plain arguments. It validates everything it can before Ray
starts (space, data, names, the leaderboard), then connects to Ray, runs, selects the best
checkpoint and promotes it. It tells a :class:`Display` what happens; the CLI draws it with
Rich, and Python callers may pass nothing.

Errors: :class:`~raycifar.errors.UserError` for bad input (before Ray starts wherever it can
be known then), :class:`~raycifar.errors.RunFailed` when nothing is left to promote,
:class:`~raycifar.errors.Interrupted` on Ctrl+C.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from raycifar.config import TrialConfig, with_settings
from raycifar.display import Display, EpochSink, Quiet
from raycifar.errors import PromotionFailed, UserError
from raycifar.preflight import check_data, check_name, check_resources, check_results_dir, make_results_dir
from raycifar.ray_session import RunResources
from raycifar.wandb_log import check_mode


def _connect(address: str | None, dashboard: bool, display: Display) -> None:
    from raycifar.ray_session import connect

    url = connect(address, dashboard)
    if url:
        display.info(f"Ray dashboard: {url}")


def _log_promoted(row: dict, results_dir: Path, wandb: str, display: Display) -> None:
    """Log the promoted entry to W&B as a ``model`` artifact aliased ``best`` (unless off)."""
    from raycifar.leaderboard import entry_dir
    from raycifar.wandb_log import log_model_artifact

    artifact = log_model_artifact(row, entry_dir(results_dir, row["entry_id"]), results_dir, wandb)
    if artifact:
        display.info(f"W&B ({wandb}): model artifact {artifact}:best in {results_dir / 'wandb'}")


def _promote_checkpoint(checkpoint_path: str, results_dir: Path, **row_fields: Any) -> dict:
    """Fetch a Ray Train checkpoint and promote it to the leaderboard; returns the new row."""
    from raycifar.promote import promote
    from raycifar.train_run import fetch_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = fetch_checkpoint(checkpoint_path, Path(scratch) / "checkpoint")
        return promote(checkpoint, results_dir, source_checkpoint=checkpoint_path, **row_fields)


# --- sweep and promote --------------------------------------------------------------------


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
    max_failures: int = 2  # restarts of a crashed trial from its last checkpoint (raycifar.train_run.MAX_FAILURES)
    scheduler: str | None = None  # --scheduler: replaces the space's scheduler.name


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep produced: its outcome and the promoted leaderboard row."""

    name: str
    outcome: Any  # raycifar.sweep.SweepOutcome
    row: dict
    report: Path | None = None  # sweeps/<name>/report.html, None if it could not be written
    promoted: bool = True  # False: an extension whose best was already on the leaderboard (``row``)


def sweep_and_promote(request: SweepRequest, display: Display | None = None) -> SweepResult:
    """Validate, plan the search, run the sweep on Ray, and promote its best checkpoint."""
    from raycifar.ray_session import prepare_environment
    from raycifar.space import load_space, sample_configs
    from raycifar.sweep_plan import check_scheduler_fits, longest_trial, trial_count, with_searcher

    started = time.monotonic()
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
    if (results_dir / "sweeps" / name).exists():
        raise UserError(f"a sweep named {name!r} already exists in {results_dir / 'sweeps'}: choose another --name")
    check_resources(request.resources, request.address)
    check_results_dir(results_dir)
    check_data(request.data_dir, request.download, loaded.spec, request.seed, display)
    sample_configs(loaded, 1, request.seed, request.data_dir, request.max_epochs)  # a space that cannot fit fails here
    make_results_dir(results_dir)
    display.info(_plan_line(name, loaded, count))
    _save_resume_options(results_dir / "sweeps" / name, request, loaded.path)
    return _run_sweep(request, name, loaded, count.trials, longest_trial(loaded, request.max_epochs), started, display)


def _plan_line(name: str, space: Any, count: Any) -> str:
    from raycifar.search import startup_trials

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


def _with_scheduler(loaded: Any, name: str, display: Display) -> Any:
    """The loaded space under ``--scheduler name``; says which of the file's settings it drops."""
    from raycifar.space_file import with_scheduler

    spec, dropped = with_scheduler(loaded.spec, name, str(loaded.path))
    if dropped:
        display.info(f"--scheduler {name}: not using the space's {', '.join('scheduler.' + k for k in dropped)}")
    return replace(loaded, spec=spec)


def _run_sweep(
    request: SweepRequest, name: str, space: Any, trials: int | None, max_epochs: int, started: float,
    display: Display, resume: Any = None,
) -> SweepResult:
    from raycifar import sweep
    from raycifar.ray_session import disconnect
    from raycifar.schedulers import label
    from raycifar.sweep_record import SweepRecorder

    if request.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    options = sweep.SweepOptions(
        results_dir=request.results_dir, sweep_name=name, resources=request.resources,
        address=request.address, max_concurrent_trials=request.max_concurrent_trials, wandb=request.wandb,
        max_failures=request.max_failures,
    )  # fmt: skip
    sweep_dir = request.results_dir / "sweeps" / name
    try:
        _connect(request.address, request.dashboard, display)
        budget = (
            None if request.time_budget_s is None else max(1.0, request.time_budget_s - (time.monotonic() - started))
        )
        plan = _plan(request, space, sweep_dir, trials, max_epochs, budget, resume is not None)
        if resume is not None and resume.extend:
            plan = replace(plan, to_propose=resume.added)
        with display.sweep_progress(trials) as progress:
            outcome = sweep.run_sweep(plan, space.spec.scheduler, options, progress, resume)
        from raycifar.promote_sweep import promote_command, promoted_row, sweep_costs

        spent = sweep_costs(sweep_dir, outcome.best_trial_id)
        display.info(f"{_outcome_line(outcome, plan.search.infeasible, label(space.spec.scheduler))}; {spent.line}")
        for problem in outcome.problems:
            display.info(f"  {problem}")
        row = promoted_row(request.results_dir, outcome.best_checkpoint)  # an extension that found nothing better
        promoted = row is None
        if row is not None:
            display.info(f"the best epoch is still leaderboard entry {row['entry_id']}: nothing new to promote")
        else:
            try:
                row = _promote_checkpoint(
                    outcome.best_checkpoint, request.results_dir, sweep=name, trial_id=outcome.best_trial_id,
                    val_acc=outcome.best_val_acc, epochs=outcome.best_epoch, **spent.row_fields,
                )  # fmt: skip
            except PromotionFailed as err:  # the record says completed, not promoted: `raycifar promote` finishes it
                raise err.finish_with(f"sweep {name}", promote_command(request.results_dir, name)) from None
            _log_promoted(row, request.results_dir, request.wandb, display)
        SweepRecorder.reopen(request.results_dir / "sweeps" / name).promoted(row["entry_id"])
    finally:
        disconnect()
    return SweepResult(name, outcome, row, _write_sweep_report(request.results_dir, name, display), promoted)


def _plan(
    request: SweepRequest, space: Any, sweep_dir: Path, trials: int | None, max_epochs: int,
    budget: float | None, resumed: bool,
) -> Any:
    """The :class:`raycifar.sweep.SweepPlan`: the study of the space's searcher (on a resume:
    the study as saved, read for its Pareto set); under PBT, which takes no searcher, the
    first population drawn at random instead."""
    from raycifar.search import Search
    from raycifar.space_file import pbt_dimensions
    from raycifar.sweep import SweepPlan

    spec = space.spec
    if spec.scheduler.name != "pbt":
        search = Search.on_disk(
            space, spec.searcher, request.seed, request.data_dir, request.max_epochs, sweep_dir, trials
        )
        return SweepPlan(search, trials, max_epochs, budget)
    search = Search.in_memory(space, "random", request.seed, request.data_dir, request.max_epochs)
    population = None if resumed else [search.propose().config for _ in range(trials or 0)]
    return SweepPlan(search, trials, max_epochs, budget, population, pbt_dimensions(spec))


def _outcome_line(outcome: Any, infeasible: int, scheduler: str) -> str:
    ended = "ended by its time budget after" if outcome.out_of_time else "finished in"
    return (
        f"sweep {ended} {outcome.wall_seconds:.0f} s: {outcome.trials} trials, "
        f"{outcome.stopped_early} stopped early by {scheduler}, {outcome.failed} failed, {outcome.diverged} diverged, "
        f"{infeasible} over-budget proposals "
        f"refused; best val_acc {outcome.best_val_acc:.4f} (trial {outcome.best_trial_id}, epoch {outcome.best_epoch})"
    )


def _save_resume_options(sweep_dir: Path, request: SweepRequest, space_path: Path) -> None:
    """Keep what ``--resume`` needs: the sweep's options (:mod:`raycifar.resume`)."""
    from raycifar.resume import SavedOptions, save_options

    resources = request.resources
    save_options(sweep_dir, SavedOptions(
        space=str(Path(space_path).resolve()), data_dir=str(request.data_dir), seed=request.seed,
        num_samples=request.num_samples, max_epochs=request.max_epochs, cpus_per_trial=resources.cpus,
        searcher=request.searcher, max_trials=request.max_trials, time_budget_s=request.time_budget_s,
        max_failures=request.max_failures,
        gpus_per_trial=resources.gpus, workers_per_trial=resources.workers,
        max_concurrent_trials=request.max_concurrent_trials, wandb=request.wandb, address=request.address,
        **{key: request.overrides.get(key) for key in ("loader", "dataset", "label_mode")},
    ))  # fmt: skip


@dataclass(frozen=True)
class ResumeRequest:
    """``raycifar sweep --resume NAME``: the sweep, where Ray runs now, and the other options
    typed on the command line (by :class:`raycifar.resume.SavedOptions` field; they must
    equal the sweep's own)."""

    name: str
    results_dir: Path
    address: str | None = None
    dashboard: bool = True
    given: dict[str, Any] = field(default_factory=dict)
    time_budget_s: float | None = None  # None: the sweep's own budget, counted again from the resume


def resume_sweep(request: ResumeRequest, display: Display | None = None) -> SweepResult:
    """Continue sweep ``request.name`` after its driver died: trials that ended are kept,
    unfinished ones go on from their last checkpoint, errored ones are run again; then the
    best checkpoint is promoted as by :func:`sweep_and_promote`.

    Raises UserError (one line, before Ray starts) when there is no such sweep, it is still
    running or already ended, or an option given differs from the sweep's own.
    """
    from raycifar.ray_session import prepare_environment
    from raycifar.resume import check_resumable, refuse_changes
    from raycifar.space import load_space
    from raycifar.sweep_plan import longest_trial, trial_count, with_searcher

    started = time.monotonic()
    prepare_environment(request.address)
    display = display or Quiet()
    added = request.given.get("num_samples")
    found = check_resumable(request.results_dir, request.name, extend=added)
    saved = found.options
    refuse_changes(request.name, saved, {k: v for k, v in request.given.items() if k != "num_samples" or not found.ended})
    check_mode(saved.wandb)
    sweep_request = _saved_request(request, saved)
    check_resources(sweep_request.resources, request.address)
    check_results_dir(request.results_dir)
    if not Path(saved.data_dir).is_dir():
        raise UserError(f"--resume {request.name}: its data folder {saved.data_dir} is gone")
    loaded = with_searcher(load_space(saved.space, sweep_request.overrides), saved.searcher)
    count = trial_count(loaded, saved.num_samples, saved.max_trials, sweep_request.time_budget_s)
    done = found.record.done_trials()
    trials = saved.extended_to if saved.extended_to is not None else count.trials
    if found.ended:
        trials = _extend(found, loaded, added, display)
    else:
        left = "trials until the time budget" if trials is None else f"{trials - done} to run or continue"
        display.info(f"resuming sweep {request.name}: {done} trials finished, {left}")
    from raycifar.sweep import Resume

    resume = Resume(completed=found.completed, added=added if found.ended else 0)
    longest = longest_trial(loaded, saved.max_epochs)
    return _run_sweep(sweep_request, request.name, loaded, trials, longest, started, display, resume)


def _extend(found: Any, loaded: Any, added: int, display: Display) -> int:
    """``--resume NAME --num-samples N`` on an ended sweep: check it can take ``added`` more
    trials, save its new trial count in ``resume.json``, and return that count."""
    from raycifar.resume import save_options

    name, done = found.record.name, found.record.done_trials()
    if loaded.spec.scheduler.name == "pbt":
        raise UserError(
            f"--num-samples {added}: sweep {name} ran PBT, whose population is fixed; start a new sweep instead"
        )
    total = done + added
    save_options(found.sweep_dir, found.options.model_copy(update={"extended_to": total}))
    display.info(
        f"extending sweep {name}: {done} trials ended, {added} more proposed by {loaded.spec.searcher.name} "
        f"from the same study (it knows the {done} before)"
    )
    return total


def _saved_request(request: ResumeRequest, saved: Any) -> SweepRequest:
    """The :class:`SweepRequest` a sweep was started with (its ``resume.json``), joining
    Ray at ``request.address`` this time."""
    cpus, gpus = saved.cpus_per_trial, saved.gpus_per_trial
    overrides = {key: getattr(saved, key) for key in ("loader", "dataset", "label_mode") if getattr(saved, key)}
    return SweepRequest(
        space=saved.space, data_dir=Path(saved.data_dir), results_dir=request.results_dir,
        num_samples=saved.num_samples, max_epochs=saved.max_epochs, seed=saved.seed, address=request.address,
        max_concurrent_trials=request.given.get("max_concurrent_trials", saved.max_concurrent_trials),
        wandb=saved.wandb, dashboard=request.dashboard,
        name=request.name, overrides=overrides, searcher=saved.searcher, max_trials=saved.max_trials,
        max_failures=saved.max_failures,
        time_budget_s=request.time_budget_s if request.time_budget_s is not None else saved.time_budget_s,
        resources=RunResources(
            workers=saved.workers_per_trial, cpus=cpus, gpus=gpus, cpu_request=f"--cpus-per-trial {cpus:g}",
            gpu_request=f"--gpus-per-trial {gpus or 0:g}",
        ),
    )  # fmt: skip


def _write_sweep_report(results_dir: Path, name: str, display: Display) -> Path | None:
    """Write the sweep's HTML report to ``sweeps/<name>/report.html``. A failure is told, not
    raised: the model is promoted by then, and ``raycifar report`` rebuilds the page."""
    from raycifar.report import REPORT_FILE, write_report

    try:
        return write_report(results_dir, name, results_dir / "sweeps" / name / REPORT_FILE)
    except Exception as err:  # noqa: BLE001 - a page that failed must not fail a finished sweep
        display.info(f"no report written ({err}); write it with: raycifar report {name} --results-dir {results_dir}")
        return None


# --- train and promote --------------------------------------------------------------------


@dataclass(frozen=True)
class TrainRequest:
    """One training run as the user asks for it (``raycifar train``'s options)."""

    results_dir: Path
    config: str | None = None  # a space file with one value per key ...
    from_entry: str | None = None  # ... or a leaderboard entry to retrain
    data_dir: Path | None = None
    epochs: int | None = None
    seed: int | None = None
    settings: list[str] = field(default_factory=list)
    resources: RunResources = RunResources(cpu_request="--cpus-per-worker", gpu_request="--gpus-per-worker")
    address: str | None = None
    dashboard: bool = True
    name: str | None = None
    promote: bool = False
    seeds: int = 1  # runs with the trial seeds seed, seed + 1, ..., seed + seeds - 1
    train_on: str | None = None  # "train" or "train+val"; None: the config's (train)
    wandb: str = "offline"


@dataclass(frozen=True)
class SeedRun:
    """One run of a several-seed ``raycifar train``: its trial seed, run name and outcome, and
    its test accuracy (the CPU float32 evaluation of promotion; None when not promoted)."""

    seed: int
    name: str
    outcome: Any  # raycifar.train_run.RunOutcome
    test_acc: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced: its outcome and, when promoted, the leaderboard row.

    With several seeds, ``outcome`` is the first seed's run (the one promoted) and
    ``seed_runs`` lists every run in seed order; with one, ``seed_runs`` holds that run.
    """

    name: str
    config: TrialConfig
    outcome: Any  # raycifar.train_run.RunOutcome
    row: dict | None
    seed_runs: list[SeedRun] = field(default_factory=list)


def config_from_entry(results_dir: Path, entry_id: str) -> TrialConfig:
    """The resolved config a leaderboard entry was trained with."""
    from raycifar.leaderboard import find_entry

    return TrialConfig.model_validate_json(find_entry(results_dir, entry_id)["config_json"])


def resolve_train_config(request: TrainRequest) -> TrialConfig:
    """The trial config a :class:`TrainRequest` trains, with its overrides applied."""
    from raycifar.data import default_data_dir
    from raycifar.space import trial_config_from_file

    if (request.config is None) == (request.from_entry is None):
        raise UserError("give either a CONFIG file or --from-entry ENTRY_ID (exactly one)")
    if request.from_entry:
        entry = config_from_entry(request.results_dir, request.from_entry)
        config = with_settings(entry, request.settings, request.epochs, request.seed, request.data_dir)
    else:
        data_dir = request.data_dir or default_data_dir().resolve()
        base = trial_config_from_file(request.config, data_dir, request.seed or 0)
        config = with_settings(base, request.settings, request.epochs)
    return _with_train_on(config, request.train_on)


def _with_train_on(config: TrialConfig, train_on: str | None) -> TrialConfig:
    """``config`` training on ``train_on`` (None: as it is); a :class:`UserError` for a value
    other than train or train+val, or train+val with the ffcv loader."""
    if train_on is not None:
        if train_on not in ("train", "train+val"):
            raise UserError(f"--train-on {train_on!r}: use train or train+val")
        config = config.model_copy(update={"train_on": train_on})
    if config.train_on == "train+val" and config.loader == "ffcv":
        raise UserError(
            "--train-on train+val needs the device or torchvision loader; this config's loader is ffcv, "
            "whose files keep train and val apart"
        )
    return config


def seed_run_names(name: str, first_seed: int, seeds: int) -> list[tuple[int, str]]:
    """(trial seed, run name) of each run: ``name`` itself for one seed, else
    ``<name>-seed<k>`` for k = first_seed, first_seed + 1, ..., first_seed + seeds - 1."""
    if seeds == 1:
        return [(first_seed, name)]
    return [(first_seed + index, f"{name}-seed{first_seed + index}") for index in range(seeds)]


def train_and_promote(request: TrainRequest, display: Display | None = None) -> TrainResult:
    """Validate, train one config on Ray Train (no Tune), and promote it if asked."""
    from raycifar.ray_session import prepare_environment

    prepare_environment(request.address)  # before anything imports Ray: it reads these settings once
    from raycifar.train_run import check_new_run

    display = display or Quiet()
    if request.seeds < 1:
        raise UserError(f"--seeds {request.seeds}: must be 1 or more")
    check_mode(request.wandb)
    config = resolve_train_config(request)
    name = check_name(request.name or f"{config.space}-train-{datetime.now():%Y%m%d-%H%M%S}")
    for _, run_name in seed_run_names(name, config.seed, request.seeds):
        check_new_run(request.results_dir, run_name)
    check_resources(request.resources, request.address)
    check_results_dir(request.results_dir)
    check_data(Path(config.data_dir), False, config, config.split_seed, display)
    make_results_dir(request.results_dir)
    runs = seed_run_names(name, config.seed, request.seeds)
    seeds = f", seeds {', '.join(str(seed) for seed, _ in runs)}" if len(runs) > 1 else ""
    data = "train+val (the val part is seen: the last epoch is kept)" if config.train_on == "train+val" else "train"
    display.info(
        f"run {name}: {config.params:,} params, {config.train.epochs} epochs, "
        f"{request.resources.workers} worker(s), data {config.data_dir} ({data}){seeds}"
    )
    return _run_training(request, name, config, display)


def _run_training(request: TrainRequest, name: str, config: TrialConfig, display: Display) -> TrainResult:
    from raycifar.ray_session import disconnect

    if request.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    try:
        _connect(request.address, request.dashboard, display)
        runs = [
            SeedRun(seed, run_name, _train_one(request, name, run_name, config.model_copy(update={"seed": seed}), display))
            for seed, run_name in seed_run_names(name, config.seed, request.seeds)
        ]  # fmt: skip
        row = None
        if request.promote:
            runs, row = _promote_seed_runs(request, name, runs)
            _log_promoted(row, request.results_dir, request.wandb, display)
    finally:
        disconnect()
    return TrainResult(name, config, runs[0].outcome, row, runs)


def _train_one(request: TrainRequest, group: str, run_name: str, config: TrialConfig, display: Display) -> Any:
    """One Ray Train run of ``config`` named ``run_name`` (Ray connected), its epochs drawn
    by ``display`` and logged to W&B in ``group``; returns its RunOutcome."""
    from raycifar import train_run
    from raycifar.ray_session import resolve_gpus
    from raycifar.train_backend import ray_is_local
    from raycifar.wandb_log import train_run_logger

    gpus = resolve_gpus(request.resources, local=request.address is None)
    scaling = train_run.scaling_config(request.resources, gpus)
    wandb_config = config.model_dump(mode="json")
    with (
        train_run_logger(request.wandb, request.results_dir, group, run_name, wandb_config) as log,
        display.epoch_progress(config.train.epochs) as sink,
    ):
        local = ray_is_local(request.address)
        outcome = train_run.run_training(config, request.results_dir, run_name, scaling, _Tee(sink, log), local)
    metrics = outcome.run_dir / train_run.METRICS_FILE
    if outcome.selected_on == "epoch":
        display.info(
            f"{run_name} trained in {outcome.wall_seconds:.0f} s: kept the last epoch {outcome.best_epoch} "
            f"(val_acc {outcome.best_val_acc:.4f} on the val part it trained on: not a held-out score); metrics {metrics}"
        )
    else:
        display.info(
            f"{run_name} trained in {outcome.wall_seconds:.0f} s: best val_acc {outcome.best_val_acc:.4f} at epoch "
            f"{outcome.best_epoch}; metrics {metrics}"
        )
    return outcome


class _Tee:
    """An epoch sink that hands every epoch's metrics to ``sink`` and to ``log``."""

    def __init__(self, sink: EpochSink, log: Any) -> None:
        self.sink, self.log = sink, log

    def epoch(self, metrics: dict) -> None:
        self.sink.epoch(metrics)
        self.log(metrics)


def _promote_seed_runs(request: TrainRequest, name: str, runs: list[SeedRun]) -> tuple[list[SeedRun], dict]:
    """Score every run but the first on the test set (the CPU float32 evaluation of
    promotion), then promote the first run with the seeds' mean and standard deviation.
    Returns the runs with their test accuracies, and the new row."""
    others = [replace(run, test_acc=_test_acc(run.outcome.best_checkpoint)) for run in runs[1:]]
    first = runs[0].outcome
    held_out = first.selected_on == "val_acc"
    row = _promote_checkpoint(
        first.best_checkpoint, request.results_dir, sweep=name, trial_id=runs[0].name,
        val_acc=first.best_val_acc if held_out else None, epochs=first.best_epoch, wall_s=first.wall_seconds,
        device_hours=sum(run.outcome.wall_seconds for run in runs) * request.resources.workers / 3600,
        other_seed_test_accs=[run.test_acc for run in others],
    )  # fmt: skip
    return [replace(runs[0], test_acc=row["test_acc"]), *others], row


def _test_acc(checkpoint_path: str) -> float:
    """The test accuracy of a run's checkpoint on its config's data, measured as promotion
    measures it (:func:`raycifar.evaluate.evaluate_on_test`: CPU, float32)."""
    from raycifar.evaluate import evaluate_on_test, rebuild
    from raycifar.train_run import fetch_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        folder = fetch_checkpoint(checkpoint_path, Path(scratch) / "checkpoint")
        data_dir = Path(rebuild(folder)[1].data_dir)
        return float(evaluate_on_test(folder, data_dir)["test_acc"])
