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
from typing import Annotated, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from raycifar.errors import UserError

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


ResultsDir = Annotated[
    Path, typer.Option("--results-dir", help="Folder holding sweeps, the leaderboard and exported models.")
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
        wandb=wandb.value, dashboard=dashboard,
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


def _run_and_promote(configs: list, scheduler, options) -> None:
    """Connect to Ray, run the sweep with a live progress line, promote the best checkpoint."""
    from raycifar import sweep as sweeps
    from raycifar.leaderboard import promote

    if options.wandb == "offline":
        os.environ["WANDB_MODE"] = "offline"
    try:
        dashboard_url = sweeps.connect(options)
        if dashboard_url:
            console.print(f"Ray dashboard: {dashboard_url}")
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=console) as progress:
            outcome = sweeps.run_sweep(configs, scheduler, options, _RichProgress(progress, len(configs)))
        console.print(
            f"sweep finished in {outcome.wall_seconds:.0f} s: {outcome.trials} trials, "
            f"{outcome.stopped_early} stopped early by ASHA, {outcome.failed} failed; "
            f"best val_acc {outcome.best_val_acc:.4f} (trial {outcome.best_trial_id}, epoch {outcome.best_epoch})"
        )
        with tempfile.TemporaryDirectory() as scratch:
            checkpoint = sweeps.fetch_checkpoint(outcome.best_checkpoint, Path(scratch) / "checkpoint")
            row = promote(
                checkpoint, options.results_dir, sweep=options.sweep_name, trial_id=outcome.best_trial_id,
                val_acc=outcome.best_val_acc, epochs=outcome.best_epoch, source_checkpoint=outcome.best_checkpoint,
            )  # fmt: skip
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
        table.add_row(key, f"{value:.4f}" if isinstance(value, float) else str(value))
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
