"""``raycifar sweep`` and ``raycifar train``: parse the options, call :mod:`raycifar.pipeline`,
draw its progress, and print a short summary (or the whole row with ``--format json``)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from raycifar.cli.common import (
    DataDirOption,
    FormatOption,
    ResultsDir,
    console,
    exit_codes,
    fail,
    jsonable,
    print_json,
    resolve_data_dir,
    stderr,
)
from raycifar.config import DatasetName, LabelMode, LoaderName, TrainOn, WandbMode
from raycifar.results.schema import CHECKPOINT_PATH, EPOCH, TRAIN_LOSS, TRAIN_SECONDS, VAL_ACC, VAL_ACC_TTA, VAL_LOSS
from raycifar.search.plan import parse_duration
from raycifar.space.sections import SchedulerName, SearcherName


class _SweepLine:
    """Sweep progress as one live line: trials done and running, and the best score."""

    def __init__(self, progress: Progress, total: int | None) -> None:
        self.progress = progress
        self.task = progress.add_task("starting trials", total=total)  # None: until the time budget

    def update(self, done: int, running: int, best: float | None, metric: str) -> None:
        shown = "-" if best is None else f"{best:.4f}"
        self.progress.update(self.task, completed=done, description=f"trials: {running} running · best {metric} {shown}")

    def trial_failed(self, trial_id: str, error_file: str | None, what: str | None = None) -> None:
        see = f" (see {error_file})" if error_file else ""
        self.progress.console.print(f"[yellow]trial {trial_id}[/] {escape(what or 'failed')}{see}", highlight=False)


class _EpochLines:
    """Each epoch's metrics printed above a live progress bar over the run's epochs."""

    SHOWN = (TRAIN_LOSS, VAL_LOSS, VAL_ACC, VAL_ACC_TTA, "lr")

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress, self.epochs = progress, epochs
        self.task = progress.add_task("starting workers", total=epochs)

    def epoch(self, metrics: dict) -> None:
        shown = "  ".join(f"{key} {metrics[key]:.4f}" for key in self.SHOWN if key in metrics)
        self.progress.console.print(
            f"epoch {metrics[EPOCH]:>3}/{self.epochs}  {shown}  {metrics[TRAIN_SECONDS]:.1f} s", highlight=False
        )
        self.progress.update(self.task, completed=metrics[EPOCH], description=f"epoch {metrics[EPOCH]}/{self.epochs}")


class RichDisplay:
    """A :class:`raycifar.display.Display` drawn with Rich on ``out``."""

    def __init__(self, out: Console) -> None:
        self.out = out

    def info(self, message: str) -> None:
        self.out.print(message, highlight=False, soft_wrap=True)

    def _progress(self) -> Progress:
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        return Progress(*columns, console=self.out)

    @contextmanager
    def sweep_progress(self, trials: int | None) -> Iterator[_SweepLine]:
        with self._progress() as progress:
            yield _SweepLine(progress, trials)

    @contextmanager
    def epoch_progress(self, epochs: int) -> Iterator[_EpochLines]:
        with self._progress() as progress:
            yield _EpochLines(progress, epochs)


def _summary(row: dict, files: Path, report: Path | None = None, headline: str = "promoted to the leaderboard") -> None:
    """The promoted entry in a few lines."""
    tta = f" (with TTA {row['test_acc_tta']:.4f})" if row.get("test_acc_tta") is not None else ""
    val = "val_acc - (trained on train+val)" if row[VAL_ACC] is None else f"val_acc {row[VAL_ACC]:.4f}"
    seeds = ""
    if (row.get("seeds") or 0) > 1:
        seeds = f"; over {row['seeds']} seeds {row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f} (mean ± std)"
    console.print(f"{headline}: [bold]{row['entry_id']}[/]", highlight=False)
    lines = {
        "model": f"{row['model']}, {row['params']:,} params (budget {row['budget']:,}), {row['epochs']} epochs",
        "accuracy": f"{val}, test_acc {row['test_acc']:.4f}{tta}{seeds}",
        "files": str(files),
        "next": f"raycifar evaluate {row['entry_id']} --results-dir {files.parent.parent}",
    }
    if report is not None:
        lines["report"] = str(report)
    for key, value in lines.items():
        console.print(f"  {key:<9}{value}", highlight=False, soft_wrap=True)


def sweep(
    ctx: typer.Context,
    space: Annotated[Optional[str], typer.Argument(help="A shipped space name (e.g. smoke_space, resnet_space) or a path to a YAML file (not needed with --resume).")] = None,
    data_dir: DataDirOption = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch the space's dataset (CIFAR-10 or CIFAR-100) into --data-dir with torchvision first (needs internet).")] = False,
    results_dir: ResultsDir = Path("raycifar_results"),
    num_samples: Annotated[Optional[int], typer.Option(min=1, help="Number of trials. Default: the space file's num_samples. With --resume NAME of a sweep that ended: the trials to add, proposed by its study.")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(min=1, help="Cap every trial's epochs at this number.")] = None,
    cpus_per_trial: Annotated[float, typer.Option(min=0.01, help="CPUs reserved by each trial, split across its workers.")] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(min=0.0, help="GPUs per trial, split across its workers. Default: one per worker when the cluster has them, else 0.")] = None,
    workers_per_trial: Annotated[int, typer.Option(min=1, help="Ray Train workers per trial (DDP when above 1).")] = 1,
    seed: Annotated[int, typer.Option(min=0, help="Seed (0 or more) for drawing configs, the validation split and the trials.")] = 0,
    address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster (e.g. 'auto' or ray://host:10001). Default: start a local Ray.")] = None,
    max_concurrent_trials: Annotated[Optional[int], typer.Option(min=1, help="Trials at once. Default: what the cluster fits when the sweep starts; set it on an autoscaling cluster to let the autoscaler add workers.")] = None,
    wandb: Annotated[WandbMode, typer.Option(help="W&B logging per trial: offline (default, no network), online (needs WANDB_API_KEY), off.")] = "offline",
    dashboard: Annotated[bool, typer.Option(help="Print the local Ray's dashboard URL (the dashboard runs either way: Ray Train needs its state API to free the CPUs of stopped trials).")] = True,
    name: Annotated[Optional[str], typer.Option(help="Sweep name. Default: <space>-<date>-<time>.")] = None,
    max_failures: Annotated[int, typer.Option(min=0, help="Restart a trial whose worker crashed (killed, out of memory, lost node) from its last checkpoint up to this many times; then it fails and the others go on.")] = 2,
    torch_trainer: Annotated[bool, typer.Option("--torch-trainer", help="Fit a Ray Train TorchTrainer per trial even for single-worker trials (slower to start; gives Ray Train's dashboard page). Default: single-worker trials train inside their Tune trial.")] = False,
    loader: Annotated[Optional[LoaderName], typer.Option(help="Data loader. Default: the space file's loader (device).")] = None,
    dataset: Annotated[Optional[DatasetName], typer.Option(help="Dataset. Default: the space file's dataset (cifar10).")] = None,
    label_mode: Annotated[Optional[LabelMode], typer.Option(help="CIFAR-100 labels: fine (100 classes) or coarse (20). Default: the space file's (fine).")] = None,
    scheduler: Annotated[Optional[SchedulerName], typer.Option(help="Tune scheduler: asha, hyperband, median, pbt or fifo. Default: the space file's scheduler.name (asha); the file's settings for other schedulers are not used.")] = None,
    searcher: Annotated[Optional[SearcherName], typer.Option(help="How configs are proposed: random, grid (every choice), tpe (Optuna TPE), qmc (quasi-random), nsga2 (val_acc vs size, Pareto set). Default: the space file's searcher (random).")] = None,
    max_trials: Annotated[Optional[int], typer.Option(min=1, help="Run at most this many trials (a cap on num_samples; with num_samples: unlimited, the trial count).")] = None,
    time_budget: Annotated[Optional[str], typer.Option(help="Stop the sweep this long after the command starts (30s, 10m, 2h, 1h30m): no trial starts or runs past it, and the best epoch so far is promoted.")] = None,
    resume: Annotated[Optional[str], typer.Option("--resume", metavar="NAME", help="Continue the sweep NAME whose driver died (killed, Ctrl+C, a restarted head) with its own options: ended trials are kept, unfinished ones go on from their last checkpoint. With --num-samples N, add N trials to a sweep that ended.")] = None,
    output_format: FormatOption = "table",
    corrupted: Annotated[Optional[Path], typer.Option("--corrupted", help="A corrupted test set (a folder of raycifar data corrupt, or the official CIFAR-10-C) to score the promoted model on. Default: <data-dir>/corrupted/<dataset>-test-corrupted-seed0 if it exists; none is ever generated.")] = None,
    robustness: Annotated[Optional[bool], typer.Option("--robustness/--no-robustness", help="Score the corrupted test set at promotion (--robustness), or never. Default: when its predicted time is under 60 s or under 10% of the sweep's wall time.")] = None,
    submit: Annotated[bool, typer.Option("--submit", help="Send the sweep to the cluster whose dashboard --address names (http://HEAD:8265) as a Ray job and return at once; --data-dir and --results-dir are then absolute paths on the cluster.")] = False,
) -> None:
    """Search a space on Ray (a searcher proposes, a scheduler stops weak trials early), then promote the best model to the leaderboard."""
    started = time.monotonic()  # the time budget counts from here, before the pipeline's imports
    if submit:  # raycifar.cli.jobs: the same options, run on the cluster as a Ray job
        from raycifar.cli.jobs import submit as submit_job

        return submit_job(ctx, space, address, output_format)
    from raycifar.cluster.session import RunResources
    from raycifar.pipeline.sweep_job import SweepRequest, sweep_and_promote

    if resume is not None:
        _resume(ctx, resume, results_dir, address, dashboard, output_format, time_budget, started, corrupted, robustness)
        return
    if space is None:
        fail("give a SPACE (a shipped space name or a YAML file), or --resume NAME")

    given = {"loader": loader, "dataset": dataset, "label_mode": label_mode}
    with exit_codes():
        budget_s = None if time_budget is None else parse_duration(time_budget)
    request = SweepRequest(
        space=space, data_dir=resolve_data_dir(data_dir), results_dir=results_dir.expanduser().resolve(),
        num_samples=num_samples, max_epochs=max_epochs, seed=seed, address=address,
        max_concurrent_trials=max_concurrent_trials, wandb=wandb, dashboard=dashboard, name=name, download=download,
        max_failures=max_failures, torch_trainer=torch_trainer,
        overrides={key: value for key, value in given.items() if value is not None},
        scheduler=scheduler, searcher=searcher, max_trials=max_trials, time_budget_s=budget_s,
        corrupted=corrupted.expanduser().resolve() if corrupted else None, robustness=robustness,
        resources=RunResources(
            workers=workers_per_trial, cpus=cpus_per_trial, gpus=gpus_per_trial,
            cpu_request=f"--cpus-per-trial {cpus_per_trial:g}", gpu_request=f"--gpus-per-trial {gpus_per_trial or 0:g}",
        ),
        started=started,
    )  # fmt: skip
    display = RichDisplay(stderr if output_format == "json" else console)
    with exit_codes():
        result = sweep_and_promote(request, display)
    _finish(result.row, output_format, result.report, result.promoted)


# Options of `raycifar sweep` that --resume compares with the sweep's own (CLI name -> value kind).
_RESUME_COMPARED = (
    "space", "data_dir", "num_samples", "max_epochs", "cpus_per_trial", "gpus_per_trial", "workers_per_trial",
    "seed", "max_concurrent_trials", "wandb", "loader", "dataset", "label_mode", "searcher", "max_trials",
    "max_failures", "scheduler",
)
_NOT_WITH_RESUME = ("name", "download", "torch_trainer")


def _resume(
    ctx: typer.Context, name: str, results_dir: Path, address: str | None, dashboard: bool, output_format: str,
    time_budget: str | None, started: float, corrupted: Path | None = None, robustness: bool | None = None,
) -> None:
    """``raycifar sweep --resume NAME``: the options typed with it must be the sweep's own."""
    from raycifar.pipeline.resume_job import ResumeRequest, resume_sweep

    # By name: Typer may bring its own click, whose ParameterSource is another enum.
    typed = {key for key in ctx.params if getattr(ctx.get_parameter_source(key), "name", "") in ("COMMANDLINE", "ENVIRONMENT")}
    for key in _NOT_WITH_RESUME:
        if key in typed:
            fail(f"--{key.replace('_', '-')}: not with --resume (the sweep keeps its name, its data and where its trials train)")
    given = {key: ctx.params[key] for key in _RESUME_COMPARED if key in typed}
    if "data_dir" in given:
        given["data_dir"] = given["data_dir"].expanduser().resolve()
    with exit_codes():
        budget_s = None if time_budget is None else parse_duration(time_budget)
    request = ResumeRequest(
        name=name, results_dir=results_dir.expanduser().resolve(), address=address, dashboard=dashboard, given=given,
        time_budget_s=budget_s, started=started, corrupted=corrupted.expanduser().resolve() if corrupted else None,
        robustness=robustness,
    )
    display = RichDisplay(stderr if output_format == "json" else console)
    with exit_codes():
        result = resume_sweep(request, display)
    _finish(result.row, output_format, result.report, result.promoted)


def _finish(row: dict | None, output_format: str, report: Path | None = None, promoted: bool = True) -> None:
    if output_format == "json":
        print_json(jsonable(row) if row is not None else None)
    elif row is not None:
        headline = "promoted to the leaderboard" if promoted else "best entry, already on the leaderboard"
        _summary(row, Path(row[CHECKPOINT_PATH]), report, headline)


def train(
    config: Annotated[Optional[str], typer.Argument(help="A space file whose every key has one value (path or shipped name).")] = None,
    from_entry: Annotated[Optional[str], typer.Option(help="Retrain the config of this leaderboard entry instead.")] = None,
    data_dir: DataDirOption = None,
    results_dir: ResultsDir = Path("raycifar_results"),
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Train this many epochs instead of the config's.")] = None,
    seed: Annotated[Optional[int], typer.Option(min=0, help="CONFIG: seeds the split and the trial as trial 0 of a sweep with this --seed (default 0). --from-entry: the trial seed (default: the entry's).")] = None,
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE: set a training key, e.g. --set ema_decay=0.999 (repeatable).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers (DDP when above 1).")] = 1,
    cpus_per_worker: Annotated[float, typer.Option(min=0.01, help="CPUs reserved by each worker.")] = 1.0,
    gpus_per_worker: Annotated[Optional[float], typer.Option(min=0.0, help="GPUs per worker. Default: 1 when the cluster has a GPU for every worker, else 0.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster (e.g. 'auto'). Default: start a local Ray.")] = None,
    dashboard: Annotated[bool, typer.Option(help="Print the local Ray's dashboard URL (the dashboard runs either way: Ray Train needs its state API to free the CPUs of stopped trials).")] = True,
    name: Annotated[Optional[str], typer.Option(help="Run name (its folder under runs/). Default: <space>-train-<date>-<time>.")] = None,
    promote: Annotated[bool, typer.Option("--promote", help="Add the best checkpoint to the leaderboard (test evaluation + export).")] = False,
    seeds: Annotated[int, typer.Option(min=1, help="Train this many runs, with trial seeds seed, seed+1, ... (named <name>-seed<k>); --promote then promotes the first and records the test accuracy's mean and std over all.")] = 1,
    train_on: Annotated[Optional[TrainOn], typer.Option(help="train: the split's train part, keeping the best val_acc epoch. train+val: train and val together (val is then seen), keeping the last epoch. Default: the config's (train).")] = None,
    wandb: Annotated[WandbMode, typer.Option(help="W&B logging of the run(s) and the promoted model: offline (default, no network), online (needs WANDB_API_KEY), off.")] = "offline",
    output_format: FormatOption = "table",
) -> None:
    """Train one config on Ray Train (no Tune) with per-epoch metrics; optionally promote it."""
    from raycifar.cluster.session import RunResources
    from raycifar.pipeline.train_job import TrainRequest, train_and_promote

    gpus = None if gpus_per_worker is None else gpus_per_worker * workers
    request = TrainRequest(
        results_dir=results_dir.expanduser().resolve(), config=config, from_entry=from_entry,
        data_dir=data_dir.expanduser().resolve() if data_dir else None, epochs=epochs, seed=seed,
        settings=settings or [], address=address, dashboard=dashboard, name=name, promote=promote,
        seeds=seeds, train_on=train_on, wandb=wandb,
        resources=RunResources(
            workers=workers, cpus=cpus_per_worker * workers, gpus=gpus,
            cpu_request=f"--workers {workers} x --cpus-per-worker {cpus_per_worker:g}",
            gpu_request=f"--workers {workers} x --gpus-per-worker {gpus_per_worker or 0:g}",
        ),
    )  # fmt: skip
    display = RichDisplay(stderr if output_format == "json" else console)
    with exit_codes():
        result = train_and_promote(request, display)
    if output_format == "json":
        outcome = result.outcome
        print_json({
            "run": result.name, "best_val_acc": outcome.best_val_acc, "best_epoch": outcome.best_epoch,
            "best_checkpoint": outcome.best_checkpoint, "run_dir": str(outcome.run_dir),
            "selected_on": outcome.selected_on, "row": jsonable(result.row) if result.row else None,
            "seed_runs": [_seed_json(run) for run in result.seed_runs],
        })  # fmt: skip
        return
    console.print(f"selected checkpoint: {result.outcome.best_checkpoint}", highlight=False, soft_wrap=True)
    _finish(result.row, output_format)
    if len(result.seed_runs) > 1:
        console.print(_seed_table(result.seed_runs, result.row))


def _seed_json(run) -> dict:  # noqa: ANN001 - a raycifar.pipeline.SeedRun
    outcome = run.outcome
    return {
        "seed": run.seed, "run": run.name, EPOCH: outcome.best_epoch, VAL_ACC: outcome.best_val_acc,
        "selected_on": outcome.selected_on, "test_acc": run.test_acc, "checkpoint": outcome.best_checkpoint,
    }  # fmt: skip


def _seed_table(runs: list, row: dict | None) -> Table:
    """Per-seed results (``runs``: SeedRun), the promoted run marked, and the mean ± std row."""
    held_out = runs[0].outcome.selected_on != EPOCH
    table = Table(title="runs by seed", title_justify="left")
    for column in ("seed", "run", EPOCH, VAL_ACC if held_out else "val_acc (seen)", "test_acc", ""):
        table.add_column(column, justify="left" if column in ("run", "") else "right")
    for index, run in enumerate(runs):
        test = "-" if run.test_acc is None else f"{run.test_acc:.4f}"
        mark = "promoted" if index == 0 and row is not None else ""
        table.add_row(str(run.seed), run.name, str(run.outcome.best_epoch), f"{run.outcome.best_val_acc:.4f}", test, mark)
    if row is not None and row.get("test_acc_mean") is not None:
        table.add_row("", "mean ± std", "", "", f"{row['test_acc_mean']:.4f} ± {row['test_acc_std']:.4f}", "")
    return table
