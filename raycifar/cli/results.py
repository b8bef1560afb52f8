"""``raycifar leaderboard [show ENTRY]``, ``raycifar promote`` and ``raycifar evaluate``: the
promoted models, how they get there from a sweep's files, and their test scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.markup import escape as markup_escape
from rich.table import Table

from raycifar.cli.common import (
    DataDirOption,
    FormatOption,
    ResultsDir,
    console,
    exit_codes,
    fail,
    jsonable,
    print_csv,
    print_json,
    print_record,
    stderr,
    strict_json,
    table,
)
from raycifar.cli.tables import print_fitted
from raycifar.results.cost import hours_unit
from raycifar.results.leaderboard_schema import (
    CORRUPTED_ACC,
    CORRUPTED_SET,
    ENTRY_FOLDER,
    ROBUSTNESS_FILE,
    ROBUSTNESS_GAP,
)
from raycifar.results.schema import VAL_ACC

CorruptedOption = Annotated[
    Optional[Path],
    typer.Option(
        "--corrupted", help="A corrupted test set: a folder written by raycifar data corrupt, or the official "
        "CIFAR-10-C (one <corruption>.npy per corruption and labels.npy).",
    ),
]
BoardFormat = Literal["table", "json", "csv", "markdown"]
TABLE_COLUMNS = ("entry_id", "model", "params", VAL_ACC, "test_acc", "95% CI", "tta", "epochs")
TABLE_DROPPED = ("epochs", "tta", VAL_ACC, "95% CI", "params", "model")  # first dropped first in a narrow terminal
MARKDOWN_COLUMNS = (
    "#", "entry", "model", "params", "MACs", "test acc", "95% CI", "TTA acc", "val acc", "dataset", "epochs",
)  # fmt: skip

leaderboard_app = typer.Typer(
    help="Show promoted models, best test accuracy first; `leaderboard show ENTRY` shows one in full.",
    add_completion=False,
)


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def _ci(row: dict) -> str:
    low, high = row.get("test_acc_ci_low"), row.get("test_acc_ci_high")
    return "-" if low is None or high is None else f"{low:.4f}–{high:.4f}"


def _count(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def _markdown_cells(rank: int, row: dict) -> list[str]:
    return [
        str(rank), f"`{row['entry_id']}`", str(row["model"]), _count(row["params"]), _count(row.get("macs")),
        _acc(row["test_acc"]), _ci(row), _acc(row.get("test_acc_tta")), _acc(row[VAL_ACC]),
        str(row["dataset"]), str(row["epochs"]),
    ]  # fmt: skip


def markdown_table(rows: list[dict]) -> str:
    """``rows`` as a GitHub-flavoured Markdown pipe table (ranked as given), one line per row."""
    escape = lambda cell: cell.replace("|", "\\|").replace("\n", " ")  # noqa: E731
    lines = ["| " + " | ".join(MARKDOWN_COLUMNS) + " |", "|" + "---|" * len(MARKDOWN_COLUMNS)]
    for rank, row in enumerate(rows, start=1):
        lines.append("| " + " | ".join(escape(c) for c in _markdown_cells(rank, row)) + " |")
    return "\n".join(lines) + "\n"


def _csv_ready(row: dict) -> dict:
    """The map column as a JSON object string (CSV cells are text)."""
    extra = row.get("extra_test_acc")
    return {**row, "extra_test_acc": json.dumps(strict_json(extra), sort_keys=True) if extra else None}


def _print_rows(rows: list[dict], output_format: BoardFormat, where: Path) -> None:
    from raycifar.results.leaderboard import rows_dir
    from raycifar.results.leaderboard_schema import COLUMNS

    if output_format == "json":
        print_json([jsonable(r) for r in rows])
    elif output_format == "csv":
        print_csv([_csv_ready(r) for r in rows], COLUMNS)
    elif output_format == "markdown":
        typer.echo(markdown_table(rows), nl=False)
    elif not rows:
        console.print(f"no leaderboard yet at {rows_dir(where)}: run `raycifar sweep` first", highlight=False)
    else:
        shown = table(*TABLE_COLUMNS, drop=TABLE_DROPPED)
        for row in rows:
            cells = {
                **row, "params": _count(row["params"]), VAL_ACC: _acc(row[VAL_ACC]),
                "test_acc": _acc(row["test_acc"]), "95% CI": _ci(row), "tta": _acc(row.get("test_acc_tta")),
            }  # fmt: skip
            shown.add_row(*(markup_escape(str(cells[c])) for c in TABLE_COLUMNS))
        print_fitted(console, shown)


@leaderboard_app.callback(invoke_without_command=True)
def leaderboard(
    ctx: typer.Context,
    results_dir: ResultsDir = Path("raycifar_results"),
    dataset: Annotated[Optional[str], typer.Option(help="Only entries of this dataset (cifar10, cifar100).")] = None,
    space: Annotated[Optional[str], typer.Option(help="Only entries of this search space.")] = None,
    top: Annotated[Optional[int], typer.Option(min=1, help="Only the best K entries.")] = None,
    output_format: Annotated[BoardFormat, typer.Option("--format", help="table, json (a list of objects), csv, or markdown (a pipe table for a README).")] = "table",
) -> None:
    """Show promoted models, best test accuracy first.

    `raycifar leaderboard show ENTRY` shows every column and the config of one entry.
    """
    if ctx.invoked_subcommand is not None:
        return
    from raycifar.results.leaderboard import ranked, read_table

    results_dir = results_dir.expanduser()
    with exit_codes():
        rows = ranked(read_table(results_dir), dataset, space, top)
    _print_rows(rows, output_format, results_dir)


def _group_results_dir(ctx: typer.Context, results_dir: Path) -> Path:
    """``show``'s --results-dir, else the one given before ``show`` (``leaderboard --results-dir X show E``)."""
    parent = ctx.parent
    source = ctx.get_parameter_source("results_dir")
    if getattr(source, "name", None) == "DEFAULT" and parent is not None:  # Typer may bring its own click
        return parent.params.get("results_dir") or results_dir
    return results_dir


def _entry_record(row: dict, folder: Path) -> dict:
    """Every column of ``row`` (the config left out) and the entry's files, for reading."""
    from raycifar.entries.evaluate import PREDICTIONS_FILE
    from raycifar.entries.model_card import CARD_FILE

    record = {k: v for k, v in row.items() if k != "config_json"}
    for key in ("params", "budget", "macs", "test_images"):
        record[key] = _count(record.get(key))
    extra = record.get("extra_test_acc") or {}
    record["extra_test_acc"] = ", ".join(f"{k}: {v:.4f}" for k, v in sorted(extra.items())) or None
    record["wall_s"] = None if row.get("wall_s") is None else f"{row['wall_s']:.1f} s"
    hours = row.get("device_hours")
    record["device_hours"] = None if hours is None else f"{hours:.4f} {hours_unit(row.get('device'))}"
    record["corrupted"] = _robust_line(row) if row.get(CORRUPTED_ACC) is not None else None
    for key in (CORRUPTED_ACC, ROBUSTNESS_GAP):
        record[key] = None if row.get(key) is None else _acc(row[key])
    record["files"] = str(folder)
    record["model card"] = str(folder / CARD_FILE) if (folder / CARD_FILE).is_file() else None
    record["predictions"] = str(folder / PREDICTIONS_FILE) if (folder / PREDICTIONS_FILE).is_file() else None
    record["robustness"] = str(folder / ROBUSTNESS_FILE) if (folder / ROBUSTNESS_FILE).is_file() else None
    return record


@leaderboard_app.command("show")
def show(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(help="The leaderboard entry to show.")],
    results_dir: ResultsDir = Path("raycifar_results"),
    output_format: FormatOption = "table",
) -> None:
    """Every column of one leaderboard entry, its files, and its config."""
    from raycifar.results.layout import entry_dir
    from raycifar.results.leaderboard import find_entry, read_robustness

    results_dir = _group_results_dir(ctx, results_dir).expanduser()
    with exit_codes():
        row = find_entry(results_dir, entry_id)
        figures = read_robustness(entry_dir(results_dir, entry_id))
    config = _config(row["config_json"])
    if output_format == "json":
        print_json({**jsonable({k: v for k, v in row.items() if k != "config_json"}), "config": config, "robustness": figures})
        return
    print_record({k: "-" if v is None else v for k, v in _entry_record(row, entry_dir(results_dir, entry_id)).items()})
    if figures is not None:
        console.print(_robustness_table(figures))
    console.print("config:", highlight=False)
    console.print_json(json.dumps(config, sort_keys=True))


def _config(text: str | None) -> object:
    """The row's config as a dict; text that is not JSON (a damaged row) as it is; None if none."""
    try:
        return json.loads(text) if text else None
    except ValueError:
        return text


def _extra_tests(values: list[str]) -> dict[str, Path]:
    """``NAME=DIR`` options as a dict; a one-line error for a malformed or repeated one."""
    tests: dict[str, Path] = {}
    for value in values:
        name, sep, folder = value.partition("=")
        if not sep or not name or not folder:
            fail(f"--extra-test {value!r}: write NAME=DIR (e.g. cifar10_1=data/cifar10.1)")
        if name in tests:
            fail(f"--extra-test {name}: given twice")
        tests[name] = Path(folder)
    return tests


def promote_command(
    sweep: Annotated[str, typer.Argument(help="The sweep's name (its folder under <results-dir>/sweeps/).")],
    trial: Annotated[Optional[str], typer.Option("--trial", help="Promote this trial's best epoch instead of the sweep's best.")] = None,
    extra_test: Annotated[Optional[list[str]], typer.Option("--extra-test", help="NAME=DIR: also score a labelled test set (an image folder of class folders, or any supported layout) as NAME. Repeatable.")] = None,
    corrupted: CorruptedOption = None,
    robustness: Annotated[Optional[bool], typer.Option("--robustness/--no-robustness", help="Score the corrupted test set (--robustness), or never. Default: when its predicted time is under 60 s or under 10% of the sweep's wall time.")] = None,
    results_dir: ResultsDir = Path("raycifar_results"),
    output_format: FormatOption = "table",
) -> None:
    """Promote the best trial (or --trial ID) of a finished or interrupted sweep from its files (no Ray).

    The best epoch is the highest val_acc among the epochs whose checkpoint is still on disk.
    """
    from raycifar.entries.from_sweep import promote_sweep

    tests = _extra_tests(extra_test or [])
    results_dir = results_dir.expanduser().resolve()
    folder = corrupted.expanduser().resolve() if corrupted else None
    tell = lambda line: stderr.print(line, highlight=False, soft_wrap=True)  # noqa: E731
    with exit_codes():
        row, chosen = promote_sweep(results_dir, sweep, trial, tests, folder, robustness, tell)
    if output_format == "json":
        print_json(jsonable(row))
        return
    tta = f" (with TTA {row['test_acc_tta']:.4f})" if row["test_acc_tta"] is not None else ""
    extra = "".join(f", {k} {v:.4f}" for k, v in sorted((row["extra_test_acc"] or {}).items()))
    console.print(f"promoted to the leaderboard: [bold]{row['entry_id']}[/]", highlight=False)
    lines = {
        "from": f"sweep {sweep}, trial {chosen.trial_id}, epoch {chosen.epoch}",
        "model": f"{row['model']}, {row['params']:,} params (budget {row['budget']:,}), {row['macs']:,} MACs",
        "accuracy": f"val_acc {row[VAL_ACC]:.4f}, test_acc {row['test_acc']:.4f} "
        f"(95% CI {_ci(row)}){tta}{extra}",
        "corrupted": _robust_line(row),
        "files": row[ENTRY_FOLDER],
        "next": f"raycifar leaderboard show {row['entry_id']} --results-dir {results_dir}",
    }
    for key, value in lines.items():
        console.print(f"  {key:<9}{value}", highlight=False, soft_wrap=True)


def _robust_line(row: dict) -> str:
    """``corrupted_acc 0.6123, gap 0.1877 (<folder>)``, or ``-`` when not scored."""
    if row.get(CORRUPTED_ACC) is None:
        return "- (not scored)"
    return f"corrupted_acc {row[CORRUPTED_ACC]:.4f}, gap {_acc(row.get(ROBUSTNESS_GAP))} ({row.get(CORRUPTED_SET)})"


def _robustness_table(figures: dict) -> Table:
    """Accuracy by corruption (rows) and severity (columns), with the mean of each."""
    severities = list(figures["by_severity"])
    shown = table("corruption", *severities, "mean")
    for name, cells in figures["by_corruption_severity"].items():
        shown.add_row(name, *(_acc(cells.get(s)) for s in severities), _acc(figures["by_corruption"][name]))
    shown.add_row("mean", *(_acc(figures["by_severity"][s]) for s in severities), _acc(figures["corrupted_acc"]))
    return shown


def _same(a: float | None, b: float | None) -> bool:
    return a is not None and b is not None and abs(a - b) < 1e-9


def _score_corrupted(entry_folder: Path, corrupted: Path | None, data_dir: Path, device: object = None) -> dict | None:
    """``robustness.json``'s figures of the entry's model on ``corrupted`` (None: not asked)."""
    if corrupted is None:
        return None
    from raycifar.data.corrupted_reader import read_corrupted_set
    from raycifar.entries.evaluate import test_predictions
    from raycifar.entries.robustness import check_matches, robustness_figures
    from raycifar.models.files import rebuild

    found = read_corrupted_set(corrupted)
    model, config = rebuild(entry_folder)
    check_matches(found, config)
    return robustness_figures(model, config, found, data_dir, test_predictions(model, config, data_dir, device), device)


def evaluate_command(
    entry_id: Annotated[str, typer.Argument(help="The leaderboard entry to re-evaluate.")],
    results_dir: ResultsDir = Path("raycifar_results"),
    data_dir: DataDirOption = None,
    corrupted: CorruptedOption = None,
    output_format: FormatOption = "table",
    on: Annotated[
        Optional[list[Path]],
        typer.Option(
            "--on",
            help="Score these labelled image array files (.npy with labels.npy beside, .npz or pickle with a "
            "labels array) or corrupted-set folders instead of the test set; repeatable.",
        ),
    ] = None,
    block_size: Annotated[
        Optional[int], typer.Option("--block-size", min=1, help="With --on: also the accuracy of each block of N images (e.g. a severity).")
    ] = None,
    device: Annotated[
        Literal["auto", "cpu", "cuda"],
        typer.Option("--device", help="Where the model runs: auto (a CUDA GPU when there is one), cpu, or cuda."),
    ] = "auto",
) -> None:
    """Re-run the test evaluation of a leaderboard entry from its exported files.

    --data-dir defaults to the data folder the entry was trained on. With the config's
    train.tta on, the test-time-augmented accuracy is reported and compared too. With
    --corrupted DIR, also the accuracy on that corrupted test set, per corruption and
    severity (the entry is not changed). With --on FILE, the accuracy on those files
    instead, per file and block (docs/competitions.md).
    """
    if on:
        from raycifar.cli.predict import evaluate_on_files

        return evaluate_on_files(entry_id, results_dir.expanduser(), on, block_size, device, output_format)
    from raycifar.cli.predict import print_per_class
    from raycifar.entries.competition import choose_device
    from raycifar.entries.data_record import entry_data_dir
    from raycifar.entries.evaluate import evaluate_on_test
    from raycifar.entries.predict import per_class_accuracy
    from raycifar.results.layout import entry_dir
    from raycifar.results.leaderboard import find_entry

    results_dir = results_dir.expanduser()
    with exit_codes():
        chosen = choose_device(device)
        row = find_entry(results_dir, entry_id)
        data = entry_data_dir(results_dir, row, data_dir, tell=lambda line: stderr.print(line, highlight=False, soft_wrap=True))
        scores = evaluate_on_test(entry_dir(results_dir, entry_id), data, chosen)
        per_class = per_class_accuracy(entry_dir(results_dir, entry_id), data, chosen)
        figures = _score_corrupted(entry_dir(results_dir, entry_id), corrupted, data, chosen)
    recorded_tta = row.get("test_acc_tta")
    if scores["test_acc_tta"] is None or (recorded_tta is None and row.get("schema_version") == 1):
        tta_matches = recorded_tta is None  # no TTA, or an imported entry that never measured it
    else:
        tta_matches = _same(scores["test_acc_tta"], recorded_tta)
    report = {
        "entry_id": entry_id,
        **scores,
        "recorded_test_acc": row["test_acc"],
        "recorded_test_acc_tta": recorded_tta,
        "matches_recorded": _same(scores["test_acc"], row["test_acc"]) and tta_matches,
    }
    if figures is not None:
        recorded = row.get(CORRUPTED_ACC) if row.get(CORRUPTED_SET) == figures["corrupted_set"]["folder"] else None
        report.update({
            CORRUPTED_ACC: figures["corrupted_acc"], ROBUSTNESS_GAP: figures["gap"],
            CORRUPTED_SET: figures["corrupted_set"]["folder"], "recorded_corrupted_acc": recorded,
        })  # fmt: skip
        if recorded is not None:
            report["matches_recorded"] = report["matches_recorded"] and _same(figures["corrupted_acc"], recorded)
    if output_format == "json":
        print_json({**report, "per_class": per_class, **({"robustness": figures} if figures is not None else {})})
    else:
        print_record({k: "-" if v is None else v for k, v in report.items()})
        print_per_class(per_class)
        if figures is not None:
            console.print(_robustness_table(figures))
