"""``raycifar train``: one config trained on Ray Train (no Tune), with several seeds if asked,
and promoted if asked.

The config comes from a space file whose every key has one value, or from a leaderboard
entry (``--from-entry``); ``--set`` changes training keys. Everything is checked before Ray
starts. Errors: :class:`~raycifar.errors.UserError` for bad input,
:class:`~raycifar.errors.RunFailed` when the run left nothing to select.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from raycifar.cluster.session import RunResources, check_reachable, disconnect, prepare_environment, resolve_gpus
from raycifar.config import TrialConfig, with_settings
from raycifar.data import default_data_dir
from raycifar.data.readers import DataNotFound
from raycifar.display import Display, EpochSink, Quiet
from raycifar.entries.data_record import entry_data_dir
from raycifar.entries.evaluate import evaluate_on_test
from raycifar.errors import UserError
from raycifar.models.files import rebuild
from raycifar.pipeline import lazy
from raycifar.pipeline.preflight import check_data, check_name, check_resources, check_results_dir, make_results_dir
from raycifar.pipeline.steps import connect_ray, log_promoted, promote_checkpoint
from raycifar.pipeline.wandb_log import EpochLog, artifact_name, check_mode, train_run_logger
from raycifar.results import layout
from raycifar.results.leaderboard import find_entry
from raycifar.results.names import check_fits
from raycifar.results.schema import EPOCH, EpochMetrics
from raycifar.search.sample import trial_config_from_file

if TYPE_CHECKING:
    from raycifar.train.run import RunOutcome  # imports Ray: reached through lazy.train_run()


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
    outcome: RunOutcome
    test_acc: float | None = None


@dataclass(frozen=True)
class TrainResult:
    """What a finished run produced: its outcome and, when promoted, the leaderboard row.

    With several seeds, ``outcome`` is the first seed's run (the one promoted) and
    ``seed_runs`` lists every run in seed order; with one, ``seed_runs`` holds that run.
    """

    name: str
    config: TrialConfig
    outcome: RunOutcome
    row: dict | None
    seed_runs: list[SeedRun] = field(default_factory=list)


def config_from_entry(results_dir: Path, entry_id: str) -> TrialConfig:
    """The resolved config a leaderboard entry was trained with."""
    return TrialConfig.model_validate_json(find_entry(results_dir, entry_id)["config_json"])


def resolve_train_config(request: TrainRequest, tell: Callable[[str], None] = lambda line: None) -> TrialConfig:
    """The trial config a :class:`TrainRequest` trains, with its overrides applied; ``tell``
    gets the line saying that ``--data-dir`` re-pointed the entry's moved data folder."""
    if (request.config is None) == (request.from_entry is None):
        raise UserError("give either a CONFIG file or --from-entry ENTRY_ID (exactly one)")
    if request.from_entry:
        row = find_entry(request.results_dir, request.from_entry)
        entry = TrialConfig.model_validate_json(row["config_json"])
        data_dir = entry_data_dir(request.results_dir, row, request.data_dir, tell)
        config = with_settings(entry, request.settings, request.epochs, request.seed, data_dir)
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
    prepare_environment(request.address)  # before anything imports Ray: it reads these settings once

    display = display or Quiet()
    if request.seeds < 1:
        raise UserError(f"--seeds {request.seeds}: must be 1 or more")
    check_mode(request.wandb)
    config = resolve_train_config(request, display.info)
    name = check_name(request.name or f"{config.space}-train-{datetime.now():%Y%m%d-%H%M%S}")
    option = "--name" if request.name else "run name"
    artifact = artifact_name({"sweep": name}) if request.wandb != "off" and request.promote else None
    run_names = [run_name for _, run_name in seed_run_names(name, config.seed, request.seeds)]
    check_fits(name, option, [path for run in run_names for path in layout.run_paths(request.results_dir, run)], artifact)
    for run_name in run_names:
        lazy.train_run().check_new_run(request.results_dir, run_name)
    check_resources(request.resources, request.address)
    check_results_dir(request.results_dir)
    try:
        check_data(Path(config.data_dir), False, config, config.split_seed, display)
    except DataNotFound as err:
        source = f"entry {request.from_entry}'s recorded data folder" if request.from_entry else "the data folder"
        raise err.with_hint(f"it is {source}; pass --data-dir FOLDER to read the data from elsewhere") from None
    if request.address is not None:  # nothing is written before the cluster answers
        check_reachable(request.address)
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
    if request.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    try:
        connect_ray(request.address, request.dashboard, display)
        runs = [
            SeedRun(seed, run_name, _train_one(request, name, run_name, config.model_copy(update={"seed": seed}), display))
            for seed, run_name in seed_run_names(name, config.seed, request.seeds)
        ]  # fmt: skip
        row = None
        if request.promote:
            runs, row = _promote_seed_runs(request, name, runs)
            log_promoted(row, request.results_dir, request.wandb, display)
    finally:
        disconnect()
    return TrainResult(name, config, runs[0].outcome, row, runs)


def _train_one(request: TrainRequest, group: str, run_name: str, config: TrialConfig, display: Display) -> RunOutcome:
    """One Ray Train run of ``config`` named ``run_name`` (Ray connected), its epochs drawn
    by ``display`` and logged to W&B in ``group``; returns its RunOutcome."""
    train_run = lazy.train_run()
    gpus = resolve_gpus(request.resources, local=request.address is None)
    scaling = train_run.scaling_config(request.resources, gpus)
    wandb_config = config.model_dump(mode="json")
    with (
        train_run_logger(request.wandb, request.results_dir, group, run_name, wandb_config) as log,
        display.epoch_progress(config.train.epochs) as sink,
    ):
        local = lazy.process_group().ray_is_local(request.address)
        outcome = train_run.run_training(config, request.results_dir, run_name, scaling, _Tee(sink, log), local)
    metrics = outcome.run_dir / train_run.RUN_METRICS_FILE
    if outcome.selected_on == EPOCH:
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

    def __init__(self, sink: EpochSink, log: EpochLog) -> None:
        self.sink, self.log = sink, log

    def epoch(self, metrics: EpochMetrics) -> None:
        self.sink.epoch(metrics)
        self.log(metrics)


def _promote_seed_runs(request: TrainRequest, name: str, runs: list[SeedRun]) -> tuple[list[SeedRun], dict]:
    """Score every run but the first on the test set (the CPU float32 evaluation of
    promotion), then promote the first run with the seeds' mean and standard deviation.
    Returns the runs with their test accuracies, and the new row."""
    others = [replace(run, test_acc=_test_acc(run.outcome.best_checkpoint)) for run in runs[1:]]
    first = runs[0].outcome
    held_out = first.selected_on != EPOCH
    row = promote_checkpoint(
        first.best_checkpoint, request.results_dir, sweep=name, trial_id=runs[0].name,
        val_acc=first.best_val_acc if held_out else None, epochs=first.best_epoch, wall_s=first.wall_seconds,
        device_hours=sum(run.outcome.wall_seconds for run in runs) * request.resources.workers / 3600,
        other_seed_test_accs=[run.test_acc for run in others],
    )  # fmt: skip
    return [replace(runs[0], test_acc=row["test_acc"]), *others], row


def _test_acc(checkpoint_path: str) -> float:
    """The test accuracy of a run's checkpoint on its config's data, measured as promotion
    measures it (:func:`raycifar.entries.evaluate.evaluate_on_test`: CPU, float32)."""
    with tempfile.TemporaryDirectory() as scratch:
        folder = lazy.train_run().fetch_checkpoint(checkpoint_path, Path(scratch) / "checkpoint")
        data_dir = Path(rebuild(folder)[1].data_dir)
        return float(evaluate_on_test(folder, data_dir)["test_acc"])
