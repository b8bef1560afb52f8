"""The ``raycifar`` command line: thin wrappers that parse, call the modules, and print."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from raycifar.errors import UserError

if TYPE_CHECKING:
    from raycifar.config import TrialConfig
    from raycifar.trainer import RunOptions

app = typer.Typer(
    help="Find the best CIFAR classifier under a parameter budget with Ray Tune + Ray Train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)  # piped: no 80-col squeeze
stderr = Console(stderr=True)


class OutputFormat(str, Enum):
    table = "table"
    json = "json"
    csv = "csv"


class EvaluateFormat(str, Enum):
    table = "table"
    json = "json"


class DatasetChoice(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"


class LabelModeChoice(str, Enum):
    fine = "fine"
    coarse = "coarse"


class LoaderChoice(str, Enum):
    device = "device"
    ffcv = "ffcv"
    torchvision = "torchvision"


class PrepareFormat(str, Enum):
    ffcv = "ffcv"


class WandbChoice(str, Enum):
    offline = "offline"
    online = "online"
    off = "off"


def _refuse_uri(results_dir: Path) -> Path:
    """--results-dir is a folder path: a URI (s3://, gs://) would silently become a local folder."""
    scheme = results_dir.parts[0] if results_dir.parts else ""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]+:", scheme):
        _fail(
            f"--results-dir {scheme}//…: URIs are not supported; use a folder that every node mounts "
            "(README.md: Running on a cluster)"
        )
    return results_dir


ResultsDir = Annotated[
    Path,
    typer.Option(
        "--results-dir", callback=_refuse_uri, help="Folder holding sweeps, the leaderboard and exported models."
    ),
]
DataDirOption = Annotated[
    Optional[Path],
    typer.Option(
        "--data-dir",
        help="Folder with the dataset in any supported layout (official python or binary version, "
        "as folder or .tar.gz; train.npz/test.npz; train/ and test/ image folders). "
        "Default: $RAYCIFAR_DATA, else ~/.cache/raycifar.",
    ),
]


def _fail(message: str, code: int = 2) -> None:
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


class _RichProgress:
    """Draws sweep progress as one live line: trials done/running and the best val_acc."""

    def __init__(self, progress: Progress, total: int) -> None:
        self.progress = progress
        self.task = progress.add_task("starting trials", total=total)

    def update(self, done: int, running: int, best_val_acc: float | None) -> None:
        best = "-" if best_val_acc is None else f"{best_val_acc:.4f}"
        self.progress.update(
            self.task, completed=done, description=f"trials: {running} running · best val_acc {best}"
        )

    def trial_failed(self, trial_id: str, error_file: str | None) -> None:
        self.progress.console.print(f"[yellow]trial {trial_id} failed[/] (see {error_file or 'its error.txt'})")


def _data_overrides(
    loader: LoaderChoice | None, dataset: DatasetChoice | None, label_mode: LabelModeChoice | None
) -> dict[str, str]:
    """Space-file keys set by ``--loader``, ``--dataset`` and ``--label-mode``."""
    given = {"loader": loader, "dataset": dataset, "label_mode": label_mode}
    return {key: choice.value for key, choice in given.items() if choice is not None}


def _check_data(data_dir: Path, download: bool, spec, split_seed: int) -> None:
    """Make sure the dataset is readable before Ray starts (downloading it if asked); for the
    ffcv loader, write the split's .beton files unless they are already there."""
    from raycifar.data import CATALOG, detect_source
    from raycifar.data import download as download_dataset

    if download:
        console.print(f"downloading {CATALOG[spec.dataset].title} into {data_dir} …")
        download_dataset(data_dir, spec.dataset)
    source = detect_source(data_dir, spec.dataset, spec.label_mode)
    for part in ("train", "test"):
        if not source.read(part).labeled:
            raise UserError(f"{source.path}: the {part} images are unlabeled; a sweep needs labels")
    if spec.loader == "ffcv":
        from raycifar.data.ffcv_loader import prepare_ffcv

        prepared = prepare_ffcv(data_dir, spec.dataset, spec.label_mode, spec.val_fraction, split_seed, workers=2)
        if prepared.written:
            console.print(f"wrote FFCV files to {prepared.folder}")


def _make_results_dir(results_dir: Path) -> None:
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--results-dir {results_dir}: cannot create it ({err.strerror})") from None


@app.command()
def sweep(
    space: Annotated[str, typer.Argument(help="A shipped space name (e.g. smoke_space, resnet_space) or a path to a YAML file.")],
    data_dir: DataDirOption = None,
    download: Annotated[bool, typer.Option("--download", help="Fetch CIFAR-10 into --data-dir with torchvision first (needs internet).")] = False,
    results_dir: ResultsDir = Path("raycifar_results"),
    num_samples: Annotated[Optional[int], typer.Option(min=1, help="Number of trials. Default: the space file's num_samples.")] = None,
    max_epochs: Annotated[Optional[int], typer.Option(min=1, help="Cap every trial's epochs at this number.")] = None,
    cpus_per_trial: Annotated[float, typer.Option(min=0.01, help="CPUs reserved by each trial, split across its workers.")] = 1.0,
    gpus_per_trial: Annotated[Optional[float], typer.Option(min=0.0, help="GPUs per trial, split across its workers. Default: 1 when the cluster has GPUs, else 0.")] = None,
    workers_per_trial: Annotated[int, typer.Option(min=1, help="Ray Train workers per trial (DDP when above 1).")] = 1,
    seed: Annotated[int, typer.Option(help="Seed for drawing configs, the validation split and the trials.")] = 0,
    address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster (e.g. 'auto' or ray://host:10001). Default: start a local Ray.")] = None,
    max_concurrent_trials: Annotated[Optional[int], typer.Option(min=1, help="Trials at once. Default: what the cluster fits when the sweep starts; set it on an autoscaling cluster to let the autoscaler add workers.")] = None,
    wandb: Annotated[WandbChoice, typer.Option(help="W&B logging per trial: offline (default, no network), online (needs WANDB_API_KEY), off.")] = WandbChoice.offline,
    dashboard: Annotated[bool, typer.Option(help="Start the Ray dashboard with a local Ray.")] = True,
    name: Annotated[Optional[str], typer.Option(help="Sweep name. Default: <space>-<date>-<time>.")] = None,
    loader: Annotated[Optional[LoaderChoice], typer.Option(help="Data loader: device, ffcv or torchvision. Default: the space file's loader (device).")] = None,
    dataset: Annotated[Optional[DatasetChoice], typer.Option(help="cifar10 or cifar100. Default: the space file's dataset (cifar10).")] = None,
    label_mode: Annotated[Optional[LabelModeChoice], typer.Option(help="CIFAR-100 labels: fine (100 classes) or coarse (20). Default: the space file's (fine).")] = None,
) -> None:
    """Run an ASHA sweep of a search space on Ray, then promote the best model to the leaderboard."""
    from raycifar.data import default_data_dir
    from raycifar.space import load_space, sample_configs

    data_dir = (data_dir or default_data_dir()).expanduser().resolve()
    results_dir = results_dir.expanduser().resolve()
    try:
        loaded = load_space(space, _data_overrides(loader, dataset, label_mode))
        if wandb is WandbChoice.online and not os.environ.get("WANDB_API_KEY"):
            raise UserError("--wandb online needs WANDB_API_KEY in the environment (or use --wandb offline)")
        _check_data(data_dir, download, loaded.spec, seed)
        draws = sample_configs(loaded, num_samples or loaded.spec.num_samples, seed, data_dir, max_epochs)
        _make_results_dir(results_dir)
        from raycifar.leaderboard import read_table

        read_table(results_dir)  # an unreadable table fails now, not after the sweep
    except UserError as err:
        _fail(str(err))
    sweep_name = name or f"{loaded.name}-{datetime.now():%Y%m%d-%H%M%S}"
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", sweep_name):
        _fail(f"--name {sweep_name!r}: use letters, digits, '.', '_' and '-' only")
    if (results_dir / "sweeps" / sweep_name).exists():
        _fail(f"a sweep named {sweep_name!r} already exists in {results_dir / 'sweeps'}: choose another --name")
    sizes = [c.params for c in draws.configs]
    console.print(
        f"sweep [bold]{sweep_name}[/]: {len(draws.configs)} trials from {loaded.path}, "
        f"{min(sizes):,}–{max(sizes):,} params (budget {loaded.spec.budget:,}; {draws.redrawn} over-budget draws redrawn)"
    )
    prepare_ray_environment(address)
    from raycifar.sweep import SweepOptions

    options = SweepOptions(
        results_dir=results_dir, sweep_name=sweep_name, cpus_per_trial=cpus_per_trial,
        gpus_per_trial=gpus_per_trial, workers_per_trial=workers_per_trial, address=address,
        max_concurrent_trials=max_concurrent_trials, wandb=wandb.value, dashboard=dashboard,
    )  # fmt: skip
    _run_and_promote(draws.configs, loaded.spec.scheduler, options)


def prepare_ray_environment(address: str | None) -> None:
    """Settings Ray reads once, at import: call before ``ray`` is first imported.

    - A local (or loopback) Ray listens on 127.0.0.1 only. Ray otherwise swaps 127.0.0.1
      for the machine's reachable address unless told this is a single-machine setup.
    - Joining a cluster with token authentication (on by default in Ray 2.60) needs
      ``RAY_AUTH_MODE=token`` on the client; it is set when a token is at hand.
    - Tune stays quiet (the CLI draws its own progress line) and does not warn about
      slow callbacks: W&B's start-up takes a few seconds per trial.
    """
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0 the classic reporter prints nothing
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "30")
    host = (address or "127.0.0.1").split("://")[-1].rsplit(":", 1)[0]
    if host in ("localhost", "::1", "[::1]") or host.startswith("127."):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if address and "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def _progress() -> Progress:
    """A live progress line: spinner, description, bar, count and elapsed time."""
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    return Progress(*columns, console=console)


def _promote_checkpoint(checkpoint_path: str, results_dir: Path, **row_fields) -> dict:
    """Fetch a Ray Train checkpoint and promote it to the leaderboard; returns the new row."""
    from raycifar.leaderboard import promote
    from raycifar.sweep import fetch_checkpoint

    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = fetch_checkpoint(checkpoint_path, Path(scratch) / "checkpoint")
        return promote(checkpoint, results_dir, source_checkpoint=checkpoint_path, **row_fields)


def _run_and_promote(configs: list, scheduler, options) -> None:
    """Connect to Ray, run the sweep with a live progress line, promote the best checkpoint."""
    from raycifar import sweep as sweeps
    from raycifar.sweep_record import SweepRecorder

    if options.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    try:
        dashboard_url = sweeps.connect(options)
        if dashboard_url:
            console.print(f"Ray dashboard: {dashboard_url}")
        with _progress() as progress:
            outcome = sweeps.run_sweep(configs, scheduler, options, _RichProgress(progress, len(configs)))
        console.print(
            f"sweep finished in {outcome.wall_seconds:.0f} s: {outcome.trials} trials, "
            f"{outcome.stopped_early} stopped early by ASHA, {outcome.failed} failed; "
            f"best val_acc {outcome.best_val_acc:.4f} (trial {outcome.best_trial_id}, epoch {outcome.best_epoch})"
        )
        row = _promote_checkpoint(
            outcome.best_checkpoint, options.results_dir, sweep=options.sweep_name, trial_id=outcome.best_trial_id,
            val_acc=outcome.best_val_acc, epochs=outcome.best_epoch,
        )  # fmt: skip
        SweepRecorder.reopen(options.results_dir / "sweeps" / options.sweep_name).promoted(row["entry_id"])
    except UserError as err:
        _fail(str(err))
    except sweeps.SweepFailed as err:
        _fail(str(err), code=1)
    except sweeps.SweepInterrupted as err:
        _fail(str(err), code=130)
    finally:
        sweeps.disconnect()
    console.print("promoted to the leaderboard:")
    _print_record(_jsonable(row))


def _print_record(record: dict) -> None:
    """One record as a two-column key/value table."""
    table = Table("key", "value")
    for key, value in record.items():
        table.add_row(key, escape(f"{value:.4f}" if isinstance(value, float) else str(value)))
    console.print(table)


def _jsonable(row: dict) -> dict:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


TABLE_COLUMNS = ("entry_id", "model", "params", "val_acc", "test_acc", "epochs")


def _print_rows(rows: list[dict], fmt: OutputFormat) -> None:
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps([_jsonable(r) for r in rows], indent=2) + "\n")
        return
    if fmt is OutputFormat.csv:
        from raycifar.leaderboard import COLUMNS

        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(_jsonable(r) for r in rows)
        sys.stdout.write(buffer.getvalue())
        return
    table = Table(box=box.SIMPLE_HEAD, pad_edge=False)
    for column in TABLE_COLUMNS:
        table.add_column(column, no_wrap=column == "entry_id")
    for row in rows:
        cells = {
            **row,
            "params": f"{row['params']:,}",
            "val_acc": f"{row['val_acc']:.4f}",
            "test_acc": f"{row['test_acc']:.4f}",
        }
        table.add_row(*(str(cells[c]) for c in TABLE_COLUMNS))
    console.print(table)


@app.command()
def leaderboard(
    results_dir: ResultsDir = Path("raycifar_results"),
    output_format: Annotated[OutputFormat, typer.Option("--format", help="table, json (a list of objects) or csv.")] = OutputFormat.table,
) -> None:
    """Show promoted models, best test accuracy first."""
    from raycifar.leaderboard import read_table, table_path

    try:
        rows = read_table(results_dir.expanduser())
    except UserError as err:
        _fail(str(err))
    rows.sort(key=lambda r: r["test_acc"], reverse=True)
    if not rows and output_format is OutputFormat.table:
        console.print(f"no leaderboard yet at {table_path(results_dir)}: run `raycifar sweep` first")
        return
    _print_rows(rows, output_format)


@app.command()
def evaluate(
    entry_id: Annotated[str, typer.Argument(help="The leaderboard entry to re-evaluate.")],
    results_dir: ResultsDir = Path("raycifar_results"),
    data_dir: DataDirOption = None,
    output_format: Annotated[EvaluateFormat, typer.Option("--format", help="table or json.")] = EvaluateFormat.table,
) -> None:
    """Re-run the test evaluation of a leaderboard entry from its exported files.

    --data-dir defaults to the data folder the entry was trained on.
    """
    from raycifar.leaderboard import entry_dir, evaluate_on_test, find_entry

    results_dir = results_dir.expanduser()
    try:
        row = find_entry(results_dir, entry_id)
        folder = entry_dir(results_dir, entry_id)
        recorded_data = Path(json.loads(row["config_json"])["data_dir"])
        scores = evaluate_on_test(folder, (data_dir or recorded_data).expanduser().resolve())
    except UserError as err:
        _fail(str(err))
    report = {
        "entry_id": entry_id,
        **scores,
        "recorded_test_acc": row["test_acc"],
        "matches_recorded": abs(scores["test_acc"] - row["test_acc"]) < 1e-9,
    }
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps(report, indent=2) + "\n")
        return
    _print_record(report)


model_app = typer.Typer(help="The registered model family: names, sizes, MACs.", no_args_is_help=True)
app.add_typer(model_app, name="model")
space_app = typer.Typer(help="Search spaces: show their dimensions, draw configs without Ray.", no_args_is_help=True)
app.add_typer(space_app, name="space")
FormatOption = Annotated[EvaluateFormat, typer.Option("--format", help="table or json.")]


def _model_summary(config) -> dict:
    """Size and shape of one resolved model, as plain values."""
    from raycifar.budget import count_macs, count_params
    from raycifar.models import model_name

    return {
        "model": model_name(config),
        "params": count_params(config),
        "macs": count_macs(config),
        "depths": list(config.depths),
        "widths": list(config.widths),
        "feature_sizes": config.feature_sizes(),
        "architecture": config.model_dump(mode="json"),
    }


@model_app.command("list")
def model_list(output_format: FormatOption = EvaluateFormat.table) -> None:
    """List the registered models with their size on CIFAR-10 (10 classes)."""
    from raycifar.models import VARIANTS, variant_config

    rows = [{"name": name, **_model_summary(variant_config(name)), "description": v.description} for name, v in VARIANTS.items()]
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("name", "params", "MMACs", "widths", "description", box=box.SIMPLE_HEAD, pad_edge=False)
    for row in rows:
        widths = "/".join(map(str, row["widths"]))
        table.add_row(row["name"], f"{row['params']:,}", f"{row['macs'] / 1e6:,.0f}", widths, row["description"])
    console.print(table)


@model_app.command("info")
def model_info(
    name: Annotated[str, typer.Argument(help="A registered model name (see `raycifar model list`).")],
    num_classes: Annotated[int, typer.Option(min=2, help="Classifier outputs (10 for CIFAR-10, 100 for CIFAR-100).")] = 10,
    output_format: FormatOption = EvaluateFormat.table,
) -> None:
    """Parameters, MACs per 32x32 image and per-stage widths of one registered model."""
    from raycifar.models import VARIANTS, variant_config

    try:
        config = variant_config(name, num_classes)
    except UserError as err:
        _fail(str(err))
    info = {"name": name, "description": VARIANTS[name].description, "num_classes": num_classes, **_model_summary(config)}
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    architecture = info.pop("architecture")
    _print_record({**info, **{k: v for k, v in architecture.items() if k not in info}})


def _describe_dimension(dimension) -> str:
    if dimension.sampler == "constant":
        return json.dumps(dimension.args[0])
    return f"{dimension.sampler} {json.dumps(list(dimension.args))}"


@space_app.command("show")
def space_show(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a YAML file.")],
    output_format: FormatOption = EvaluateFormat.table,
) -> None:
    """Show a space's budget, dataset and every dimension (constant or sampler)."""
    from raycifar.space import load_space

    try:
        loaded = load_space(space)
    except UserError as err:
        _fail(str(err))
    spec = loaded.spec
    dimensions = {
        f"{section}.{key}": str(value) if isinstance(value, int) else _describe_dimension(value)
        for section in ("arch", "train")
        for key, value in getattr(spec, section)
        if value is not None
    }
    summary = {
        "space": loaded.name, "path": str(loaded.path), "description": spec.description, "dataset": spec.dataset,
        "budget": spec.budget, "num_samples": spec.num_samples, "val_fraction": spec.val_fraction,
        "scheduler": spec.scheduler.model_dump(),
    }  # fmt: skip
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps({**summary, "dimensions": dimensions}, indent=2) + "\n")
        return
    _print_record({**summary, "scheduler": json.dumps(summary["scheduler"])})
    table = Table("dimension", "value or sampler", box=box.SIMPLE_HEAD, pad_edge=False)
    for key, value in dimensions.items():
        table.add_row(key, escape(value))
    console.print(table)


@space_app.command("sample")
def space_sample(
    space: Annotated[str, typer.Argument(help="A shipped space name or a path to a YAML file.")],
    num: Annotated[int, typer.Option("-n", "--num", min=1, help="How many configs to draw.")] = 10,
    seed: Annotated[int, typer.Option(help="Seed for drawing (the same seed as `raycifar sweep --seed` gives the same configs).")] = 0,
    output_format: FormatOption = EvaluateFormat.table,
) -> None:
    """Draw configs as a sweep would (fitted widths, params, MACs) without starting Ray."""
    import time

    from raycifar.data import default_data_dir
    from raycifar.space import load_space, sample_configs

    started = time.perf_counter()
    try:
        loaded = load_space(space)
        draws = sample_configs(loaded, num, seed, default_data_dir())
    except UserError as err:
        _fail(str(err))
    seconds = time.perf_counter() - started
    rows = [
        {**_model_summary(c.model), "budget_use": c.params / c.budget, "seed": c.seed, "train": c.train.model_dump(mode="json")}
        for c in draws.configs
    ]
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    table = Table("#", "model", "params", "budget", "MMACs", "widths", "regularizers", "lr", box=box.SIMPLE_HEAD, pad_edge=False)
    for index, (row, config) in enumerate(zip(rows, draws.configs, strict=True)):
        model = config.model
        regularizers = f"drop_path {model.drop_path:.2f} dropout {model.dropout:.2f}"
        table.add_row(
            str(index), row["model"], f"{row['params']:,}", f"{row['budget_use']:.1%}", f"{row['macs'] / 1e6:,.0f}",
            "/".join(map(str, row["widths"])), regularizers, f"{config.train.lr:.4f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"{num} configs from {loaded.path} in {seconds:.2f} s; budget {loaded.spec.budget:,}; "
        f"{draws.redrawn} over-budget draws redrawn"
    )


@app.command()
def status(
    results_dir: ResultsDir = Path("raycifar_results"),
    sweep_name: Annotated[Optional[str], typer.Option("--sweep", help="Show this sweep's trials one by one.")] = None,
    dashboard_url: Annotated[Optional[str], typer.Option(envvar="RAY_API_SERVER_ADDRESS", help="Also show the nodes and jobs of the Ray cluster whose dashboard is here (e.g. http://127.0.0.1:8265).")] = None,
    output_format: Annotated[EvaluateFormat, typer.Option("--format", help="table or json.")] = EvaluateFormat.table,
) -> None:
    """Show the sweeps in a results folder (trials by state, best val_acc) and, with
    --dashboard-url, the Ray cluster's nodes and jobs."""
    from raycifar import status as report

    results_dir = results_dir.expanduser()
    try:
        sweeps = report.read_sweeps(results_dir, sweep_name)
        cluster = report.read_cluster(dashboard_url) if dashboard_url else None
    except UserError as err:
        _fail(str(err))
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps(report.as_json(sweeps, cluster), indent=2) + "\n")
        return
    report.print_sweeps(console, sweeps, results_dir)
    if sweep_name:
        report.print_trials(console, sweeps[0])
    if cluster:
        report.print_cluster(console, cluster)


class _EpochPrinter:
    """Prints each epoch's metrics above a live progress bar over the run's epochs."""

    SHOWN = ("train_loss", "val_loss", "val_acc", "val_acc_tta", "lr")

    def __init__(self, progress: Progress, epochs: int) -> None:
        self.progress, self.epochs = progress, epochs
        self.task = progress.add_task("starting workers", total=epochs)

    def epoch(self, metrics: dict) -> None:
        shown = "  ".join(f"{key} {metrics[key]:.4f}" for key in self.SHOWN if key in metrics)
        self.progress.console.print(
            f"epoch {metrics['epoch']:>3}/{self.epochs}  {shown}  {metrics['train_seconds']:.1f} s", highlight=False
        )
        self.progress.update(self.task, completed=metrics["epoch"], description=f"epoch {metrics['epoch']}/{self.epochs}")


@app.command()
def train(
    config: Annotated[Optional[str], typer.Argument(help="A space file whose every key has one value (path or shipped name).")] = None,
    from_entry: Annotated[Optional[str], typer.Option(help="Retrain the config of this leaderboard entry instead.")] = None,
    data_dir: DataDirOption = None,
    results_dir: ResultsDir = Path("raycifar_results"),
    epochs: Annotated[Optional[int], typer.Option(min=1, help="Train this many epochs instead of the config's.")] = None,
    seed: Annotated[Optional[int], typer.Option(help="CONFIG: seeds the split and the trial as trial 0 of a sweep with this --seed (default 0). --from-entry: the trial seed (default: the entry's).")] = None,
    settings: Annotated[Optional[list[str]], typer.Option("--set", help="KEY=VALUE: set a training key, e.g. --set ema_decay=0.999 (repeatable).")] = None,
    workers: Annotated[int, typer.Option(min=1, help="Ray Train workers (DDP when above 1).")] = 1,
    cpus_per_worker: Annotated[float, typer.Option(min=0.01, help="CPUs reserved by each worker.")] = 1.0,
    gpus_per_worker: Annotated[Optional[float], typer.Option(min=0.0, help="GPUs per worker. Default: 1 when the cluster has a GPU for every worker, else 0.")] = None,
    address: Annotated[Optional[str], typer.Option(help="Join this Ray cluster (e.g. 'auto'). Default: start a local Ray.")] = None,
    dashboard: Annotated[bool, typer.Option(help="Start the Ray dashboard with a local Ray.")] = True,
    name: Annotated[Optional[str], typer.Option(help="Run name (its folder under runs/). Default: <space>-train-<date>-<time>.")] = None,
    promote: Annotated[bool, typer.Option("--promote", help="Add the best checkpoint to the leaderboard (test evaluation + export).")] = False,
) -> None:
    """Train one config on Ray Train (no Tune) with per-epoch metrics; optionally promote it."""
    prepare_ray_environment(address)  # before anything imports ray
    from raycifar.data import default_data_dir
    from raycifar.trainer import RunOptions, check_new_run, config_from_entry, config_from_file, with_overrides

    results_dir = results_dir.expanduser().resolve()
    data_dir = data_dir.expanduser().resolve() if data_dir else None
    try:
        if (config is None) == (from_entry is None):
            raise UserError("give either a CONFIG file or --from-entry ENTRY_ID (exactly one)")
        if from_entry:
            resolved = with_overrides(config_from_entry(results_dir, from_entry), settings or [], epochs, seed, data_dir)
        else:
            base = config_from_file(config, data_dir or default_data_dir().resolve(), seed or 0)
            resolved = with_overrides(base, settings or [], epochs)
        run_name = name or f"{resolved.space}-train-{datetime.now():%Y%m%d-%H%M%S}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", run_name):
            raise UserError(f"--name {run_name!r}: use letters, digits, '.', '_' and '-' only")
        check_new_run(results_dir, run_name)
        _check_data(Path(resolved.data_dir), False, resolved, resolved.split_seed)
        _make_results_dir(results_dir)
    except UserError as err:
        _fail(str(err))
    options = RunOptions(
        results_dir=results_dir, name=run_name, workers=workers, cpus_per_worker=cpus_per_worker,
        gpus_per_worker=gpus_per_worker, address=address, dashboard=dashboard,
    )  # fmt: skip
    console.print(
        f"run [bold]{run_name}[/]: {resolved.params:,} params, {resolved.train.epochs} epochs, "
        f"{workers} worker(s), data {resolved.data_dir}"
    )
    _train_and_promote(resolved, options, promote)


def _train_and_promote(config: TrialConfig, options: RunOptions, promote_best: bool) -> None:
    """Connect to Ray, train with per-epoch lines and a progress bar, then promote if asked."""
    from raycifar import sweep as sweeps
    from raycifar import trainer

    row = None
    try:
        dashboard_url = sweeps.connect(options.as_trial())
        if dashboard_url:
            console.print(f"Ray dashboard: {dashboard_url}")
        with _progress() as progress:
            outcome = trainer.run_training(config, options, _EpochPrinter(progress, config.train.epochs))
        console.print(
            f"trained in {outcome.wall_seconds:.0f} s: best val_acc {outcome.best_val_acc:.4f} at epoch "
            f"{outcome.best_epoch}; checkpoint {outcome.best_checkpoint}; metrics {outcome.run_dir / trainer.METRICS_FILE}"
        )
        if promote_best:
            row = _promote_checkpoint(
                outcome.best_checkpoint, options.results_dir, sweep=options.name, trial_id=options.name,
                val_acc=outcome.best_val_acc, epochs=outcome.best_epoch,
            )  # fmt: skip
    except UserError as err:
        _fail(str(err))
    except trainer.RunFailed as err:
        _fail(str(err), code=1)
    except trainer.RunInterrupted as err:
        _fail(str(err), code=130)
    finally:
        sweeps.disconnect()
    if row is not None:
        console.print("promoted to the leaderboard:")
        _print_record(_jsonable(row))


data_app = typer.Typer(help="Inspect a data folder and prepare loader files.", no_args_is_help=True)
app.add_typer(data_app, name="data")
DatasetOption = Annotated[DatasetChoice, typer.Option(help="cifar10 or cifar100.")]
LabelModeOption = Annotated[LabelModeChoice, typer.Option(help="CIFAR-100 labels: fine (100 classes) or coarse (20).")]
ValFractionOption = Annotated[float, typer.Option(help="Share of the training part held out for validation, as in a sweep.")]
SplitSeedOption = Annotated[int, typer.Option(help="Seed of the validation split (a sweep's --seed).")]


def _resolve_data_dir(data_dir: Path | None, val_fraction: float) -> Path:
    from raycifar.data import default_data_dir

    if not 0 < val_fraction < 0.5:
        _fail(f"--val-fraction {val_fraction:g}: must be above 0 and below 0.5")
    return (data_dir or default_data_dir()).expanduser().resolve()


@data_app.command("info")
def data_info(
    data_dir: DataDirOption = None,
    dataset: DatasetOption = DatasetChoice.cifar10,
    label_mode: LabelModeOption = LabelModeChoice.fine,
    val_fraction: ValFractionOption = 0.1,
    seed: SplitSeedOption = 0,
    output_format: Annotated[EvaluateFormat, typer.Option("--format", help="table or json.")] = EvaluateFormat.table,
) -> None:
    """Show the detected layout, images per split and per class, and channel mean/std."""
    from raycifar.data.info import describe

    folder = _resolve_data_dir(data_dir, val_fraction)
    try:
        info = describe(folder, dataset.value, label_mode.value, val_fraction, seed)
    except UserError as err:
        _fail(str(err))
    if output_format is EvaluateFormat.json:
        sys.stdout.write(json.dumps(info, indent=2) + "\n")
        return
    splits = info.pop("splits")
    info["images"] = ", ".join(f"{name} {split['count']:,}" for name, split in splits.items())
    _print_record(info)
    labeled = {name: split for name, split in splits.items() if split["labeled"]}
    if labeled:
        table = Table("class", *labeled, box=box.SIMPLE_HEAD, pad_edge=False)
        for name in next(iter(labeled.values()))["per_class"]:
            table.add_row(name, *(f"{split['per_class'][name]:,}" for split in labeled.values()))
        console.print(table)


@data_app.command("prepare")
def data_prepare(
    output_format: Annotated[PrepareFormat, typer.Option("--format", help="What to write: ffcv (.beton files).")],
    data_dir: DataDirOption = None,
    dataset: DatasetOption = DatasetChoice.cifar10,
    label_mode: LabelModeOption = LabelModeChoice.fine,
    val_fraction: ValFractionOption = 0.1,
    seed: SplitSeedOption = 0,
) -> None:
    """Write train/val/test .beton files for the ffcv loader, split as a sweep with this
    --val-fraction and --seed splits them, under <data-dir>/ffcv/."""
    from raycifar.data.ffcv_loader import prepare_ffcv

    folder = _resolve_data_dir(data_dir, val_fraction)
    try:
        prepared = prepare_ffcv(folder, dataset.value, label_mode.value, val_fraction, seed, workers=2)
    except UserError as err:
        _fail(str(err))
    state = "wrote" if prepared.written else "up to date:"
    counts = ", ".join(f"{name} {count:,}" for name, count in prepared.counts.items())
    console.print(f"{state} {prepared.folder} ({counts} images)")
