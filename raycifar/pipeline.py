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
import re
import tempfile
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from raycifar.config import TrialConfig, with_settings
from raycifar.errors import UserError
from raycifar.ray_session import RunResources

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


class ProgressSink(Protocol):
    """Sweep progress: trials done and running, the best ``val_acc`` so far, failures."""

    def update(self, done: int, running: int, best_val_acc: float | None) -> None: ...

    def trial_failed(self, trial_id: str, error_file: str | None) -> None: ...


class EpochSink(Protocol):
    """A training run's metrics after every epoch."""

    def epoch(self, metrics: dict) -> None: ...


class Display(Protocol):
    """What a job tells its caller: lines of information and live progress."""

    def info(self, message: str) -> None: ...

    def sweep_progress(self, trials: int) -> AbstractContextManager[ProgressSink]: ...

    def epoch_progress(self, epochs: int) -> AbstractContextManager[EpochSink]: ...


class _Silent:
    def update(self, done: int, running: int, best_val_acc: float | None) -> None:
        pass

    def trial_failed(self, trial_id: str, error_file: str | None) -> None:
        pass

    def epoch(self, metrics: dict) -> None:
        pass


class Quiet:
    """A :class:`Display` that shows nothing (the default for Python callers)."""

    def info(self, message: str) -> None:
        pass

    def sweep_progress(self, trials: int) -> AbstractContextManager[ProgressSink]:
        return nullcontext(_Silent())

    def epoch_progress(self, epochs: int) -> AbstractContextManager[EpochSink]:
        return nullcontext(_Silent())


# --- checks before Ray --------------------------------------------------------------------


def check_name(name: str, option: str = "--name") -> str:
    """``name`` if it is a valid sweep/run name (letters, digits, '.', '_', '-')."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise UserError(f"{option} {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def check_data(data_dir: Path, download: bool, spec: Any, split_seed: int, display: Display) -> None:
    """Make sure the dataset ``spec`` names (``dataset``, ``label_mode``, ``loader``,
    ``val_fraction``) is readable and labelled before Ray starts, downloading it if asked;
    for the ffcv loader, write the split's .beton files unless they are already there."""
    from raycifar.data import CATALOG, detect_source, split_image_set
    from raycifar.data import download as download_dataset

    if download:
        display.info(f"downloading {CATALOG[spec.dataset].title} into {data_dir} …")
        download_dataset(data_dir, spec.dataset)
    source = detect_source(data_dir, spec.dataset, spec.label_mode)
    parts = {part: source.read(part) for part in ("train", "test")}
    for part, images in parts.items():
        if not images.labeled:
            raise UserError(f"{source.path}: the {part} images are unlabeled; a sweep needs labels")
    split_image_set(parts["train"], spec.val_fraction, split_seed, str(source.path))  # as data info splits
    if spec.loader == "ffcv":
        from raycifar.data.ffcv_loader import prepare_ffcv

        prepared = prepare_ffcv(data_dir, spec.dataset, spec.label_mode, spec.val_fraction, split_seed, workers=2)
        if prepared.written:
            display.info(f"wrote FFCV files to {prepared.folder}")


RESULT_FOLDERS = ("sweeps", "runs", "leaderboard", "wandb")  # what raycifar writes under --results-dir


def check_results_dir(results_dir: Path) -> None:
    """Refuse, before anything runs, a results folder raycifar could not write its results
    in: a file where it or one of its folders (:data:`RESULT_FOLDERS`) should be, a folder
    it may not write in, or an unreadable leaderboard. Creates and changes nothing."""
    from raycifar.leaderboard import read_table

    existing = next((path for path in (results_dir, *results_dir.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == results_dir else f"{existing}, a folder above it, "
        raise UserError(f"--results-dir {results_dir}: {where}is a file, not a folder; choose another --results-dir")
    for name in RESULT_FOLDERS:
        if (results_dir / name).exists() and not (results_dir / name).is_dir():
            raise UserError(
                f"--results-dir {results_dir}: {results_dir / name} is a file where raycifar keeps its {name} folder; "
                "move it away or choose another --results-dir"
            )
    if results_dir.is_dir():
        _check_writable(results_dir)
        read_table(results_dir)


def _check_writable(folder: Path) -> None:
    """Raise :class:`UserError` unless a file can be created in ``folder`` (tried with an
    unnamed temporary file, which leaves nothing behind)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"--results-dir {folder}: cannot write in it ({err.strerror or 'not writable'})") from None


def make_results_dir(results_dir: Path) -> None:
    """Create ``results_dir`` and check it as :func:`check_results_dir` does, so that neither
    fails only after a long run."""
    check_results_dir(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--results-dir {results_dir}: cannot create it ({err.strerror})") from None
    _check_writable(results_dir)


def check_resources(resources: RunResources, address: str | None) -> None:
    """Refuse, before a local Ray starts, CPUs or GPUs the machine does not have.

    A local Ray (``address`` None) gets :func:`~raycifar.ray_session.available_cpus` CPUs
    and the GPUs torch sees; a cluster's resources are checked after joining it
    (:func:`~raycifar.ray_session.resolve_gpus`), where the autoscaler may still add nodes.
    """
    from raycifar.ray_session import available_cpus

    if address is not None:
        return
    cpus = available_cpus()
    if resources.cpus > cpus:
        raise UserError(f"{resources.cpu_request} is more than this machine's {cpus} CPUs")
    if resources.gpus:
        import torch

        gpus = torch.cuda.device_count()
        if resources.gpus > gpus:
            raise UserError(f"{resources.gpu_request} is more than this machine's {gpus} GPUs")


def _connect(address: str | None, dashboard: bool, display: Display) -> None:
    from raycifar.ray_session import connect

    url = connect(address, dashboard)
    if url:
        display.info(f"Ray dashboard: {url}")


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


@dataclass(frozen=True)
class SweepResult:
    """What a finished sweep produced: its outcome and the promoted leaderboard row."""

    name: str
    outcome: Any  # raycifar.sweep.SweepOutcome
    row: dict
    report: Path | None = None  # sweeps/<name>/report.html, None if it could not be written


def sweep_and_promote(request: SweepRequest, display: Display | None = None) -> SweepResult:
    """Validate, draw configs, run the sweep on Ray, and promote its best checkpoint."""
    from raycifar.ray_session import prepare_environment
    from raycifar.space import load_space, sample_configs

    prepare_environment(request.address)  # before anything imports Ray: it reads these settings once
    display = display or Quiet()
    results_dir = request.results_dir
    loaded = load_space(request.space, request.overrides)
    if request.wandb == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UserError("--wandb online needs WANDB_API_KEY in the environment (or use --wandb offline)")
    name = check_name(request.name or f"{loaded.name}-{datetime.now():%Y%m%d-%H%M%S}")
    if (results_dir / "sweeps" / name).exists():
        raise UserError(f"a sweep named {name!r} already exists in {results_dir / 'sweeps'}: choose another --name")
    check_resources(request.resources, request.address)
    check_results_dir(results_dir)
    check_data(request.data_dir, request.download, loaded.spec, request.seed, display)
    draws = sample_configs(
        loaded, request.num_samples or loaded.spec.num_samples, request.seed, request.data_dir, request.max_epochs
    )
    make_results_dir(results_dir)
    sizes = [c.params for c in draws.configs]
    display.info(
        f"sweep {name}: {len(draws.configs)} trials from {loaded.path}, {min(sizes):,}–{max(sizes):,} params "
        f"(budget {loaded.spec.budget:,}; {draws.redrawn} over-budget draws redrawn)"
    )
    return _run_sweep(request, name, draws.configs, loaded.spec.scheduler, display)


def _run_sweep(request: SweepRequest, name: str, configs: list[TrialConfig], scheduler: Any, display: Display) -> SweepResult:
    from raycifar import sweep
    from raycifar.ray_session import disconnect
    from raycifar.sweep_record import SweepRecorder

    if request.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    options = sweep.SweepOptions(
        results_dir=request.results_dir, sweep_name=name, resources=request.resources,
        address=request.address, max_concurrent_trials=request.max_concurrent_trials, wandb=request.wandb,
    )  # fmt: skip
    try:
        _connect(request.address, request.dashboard, display)
        with display.sweep_progress(len(configs)) as progress:
            outcome = sweep.run_sweep(configs, scheduler, options, progress)
        display.info(
            f"sweep finished in {outcome.wall_seconds:.0f} s: {outcome.trials} trials, "
            f"{outcome.stopped_early} stopped early by ASHA, {outcome.failed} failed; "
            f"best val_acc {outcome.best_val_acc:.4f} (trial {outcome.best_trial_id}, epoch {outcome.best_epoch})"
        )
        from raycifar.promote_sweep import sweep_costs

        wall_s, device_hours = sweep_costs(request.results_dir / "sweeps" / name, outcome.best_trial_id)
        row = _promote_checkpoint(
            outcome.best_checkpoint, request.results_dir, sweep=name, trial_id=outcome.best_trial_id,
            val_acc=outcome.best_val_acc, epochs=outcome.best_epoch, wall_s=wall_s, device_hours=device_hours,
        )  # fmt: skip
        SweepRecorder.reopen(request.results_dir / "sweeps" / name).promoted(row["entry_id"])
    finally:
        disconnect()
    return SweepResult(name, outcome, row, _write_sweep_report(request.results_dir, name, display))


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


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced: its outcome and, when promoted, the leaderboard row."""

    name: str
    config: TrialConfig
    outcome: Any  # raycifar.train_run.RunOutcome
    row: dict | None


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
        return with_settings(entry, request.settings, request.epochs, request.seed, request.data_dir)
    base = trial_config_from_file(request.config, request.data_dir or default_data_dir().resolve(), request.seed or 0)
    return with_settings(base, request.settings, request.epochs)


def train_and_promote(request: TrainRequest, display: Display | None = None) -> TrainResult:
    """Validate, train one config on Ray Train (no Tune), and promote it if asked."""
    from raycifar.ray_session import prepare_environment

    prepare_environment(request.address)  # before anything imports Ray: it reads these settings once
    from raycifar.train_run import check_new_run

    display = display or Quiet()
    config = resolve_train_config(request)
    name = check_name(request.name or f"{config.space}-train-{datetime.now():%Y%m%d-%H%M%S}")
    check_new_run(request.results_dir, name)
    check_resources(request.resources, request.address)
    check_results_dir(request.results_dir)
    check_data(Path(config.data_dir), False, config, config.split_seed, display)
    make_results_dir(request.results_dir)
    display.info(
        f"run {name}: {config.params:,} params, {config.train.epochs} epochs, "
        f"{request.resources.workers} worker(s), data {config.data_dir}"
    )
    return _run_training(request, name, config, display)


def _run_training(request: TrainRequest, name: str, config: TrialConfig, display: Display) -> TrainResult:
    from raycifar import train_run
    from raycifar.ray_session import disconnect, resolve_gpus
    from raycifar.train_backend import ray_is_local

    row = None
    try:
        _connect(request.address, request.dashboard, display)
        gpus = resolve_gpus(request.resources, local=request.address is None)
        scaling = train_run.scaling_config(request.resources, gpus)
        with display.epoch_progress(config.train.epochs) as sink:
            local = ray_is_local(request.address)
            outcome = train_run.run_training(config, request.results_dir, name, scaling, sink, local)
        display.info(
            f"trained in {outcome.wall_seconds:.0f} s: best val_acc {outcome.best_val_acc:.4f} at epoch "
            f"{outcome.best_epoch}; metrics {outcome.run_dir / train_run.METRICS_FILE}"
        )
        if request.promote:
            row = _promote_checkpoint(
                outcome.best_checkpoint, request.results_dir, sweep=name, trial_id=name,
                val_acc=outcome.best_val_acc, epochs=outcome.best_epoch, wall_s=outcome.wall_seconds,
                device_hours=outcome.wall_seconds * request.resources.workers / 3600,
            )  # fmt: skip
    finally:
        disconnect()
    return TrainResult(name, config, outcome, row)
