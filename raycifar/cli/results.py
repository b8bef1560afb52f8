"""``raycifar leaderboard`` and ``raycifar evaluate``: the promoted models and their test scores."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from raycifar.cli.common import (
    DataDirOption,
    FormatOption,
    ResultsDir,
    RowsFormat,
    console,
    exit_codes,
    jsonable,
    print_csv,
    print_json,
    print_record,
    table,
)

TABLE_COLUMNS = ("entry_id", "model", "params", "val_acc", "test_acc", "epochs")


def leaderboard(
    results_dir: ResultsDir = Path("raycifar_results"),
    output_format: Annotated[RowsFormat, typer.Option("--format", help="table, json (a list of objects) or csv.")] = "table",
) -> None:
    """Show promoted models, best test accuracy first."""
    from raycifar.leaderboard import COLUMNS, read_table, table_path

    with exit_codes():
        rows = read_table(results_dir.expanduser())
    rows.sort(key=lambda r: r["test_acc"], reverse=True)
    if output_format == "json":
        print_json([jsonable(r) for r in rows])
    elif output_format == "csv":
        print_csv(rows, COLUMNS)
    elif not rows:
        console.print(f"no leaderboard yet at {table_path(results_dir)}: run `raycifar sweep` first")
    else:
        shown = table(*TABLE_COLUMNS)
        for row in rows:
            cells = {**row, "params": f"{row['params']:,}", "val_acc": f"{row['val_acc']:.4f}", "test_acc": f"{row['test_acc']:.4f}"}
            shown.add_row(*(str(cells[c]) for c in TABLE_COLUMNS))
        console.print(shown)


def evaluate(
    entry_id: Annotated[str, typer.Argument(help="The leaderboard entry to re-evaluate.")],
    results_dir: ResultsDir = Path("raycifar_results"),
    data_dir: DataDirOption = None,
    output_format: FormatOption = "table",
) -> None:
    """Re-run the test evaluation of a leaderboard entry from its exported files.

    --data-dir defaults to the data folder the entry was trained on.
    """
    from raycifar.cli.predict import print_per_class
    from raycifar.evaluate import evaluate_on_test
    from raycifar.leaderboard import entry_dir, find_entry
    from raycifar.predict import per_class_accuracy

    results_dir = results_dir.expanduser()
    with exit_codes():
        row = find_entry(results_dir, entry_id)
        recorded_data = Path(json.loads(row["config_json"])["data_dir"])
        scores = evaluate_on_test(entry_dir(results_dir, entry_id), (data_dir or recorded_data).expanduser().resolve())
        per_class = per_class_accuracy(entry_dir(results_dir, entry_id), (data_dir or recorded_data).expanduser().resolve())
    report = {
        "entry_id": entry_id,
        **scores,
        "recorded_test_acc": row["test_acc"],
        "matches_recorded": abs(scores["test_acc"] - row["test_acc"]) < 1e-9,
    }
    if output_format == "json":
        print_json({**report, "per_class": per_class})
    else:
        print_record(report)
        print_per_class(per_class)
