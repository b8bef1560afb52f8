"""``raycifar report SWEEP|ENTRY``: one self-contained HTML page about a sweep and the model
it promoted (or one leaderboard entry), rebuilt from the files in the results folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from raycifar.cli.common import ResultsDir, console, exit_codes, stderr


def report(
    target: Annotated[str, typer.Argument(metavar="SWEEP|ENTRY", help="A sweep name (its folder under <results-dir>/sweeps/) or a leaderboard entry id.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="The HTML file to write.")] = Path("report.html"),
    results_dir: ResultsDir = Path("raycifar_results"),
    data_dir: Annotated[Optional[Path], typer.Option("--data-dir", help="Where the test images are, for the grid of misclassified images. Default: the entry's config data_dir.")] = None,
) -> None:
    """Write an HTML report (opens offline): learning curves, accuracy against size, hyperparameters, the promoted model's test results and mistakes, provenance."""
    from raycifar.report.gather import resolve, write_report

    results_dir = results_dir.expanduser().resolve()
    with exit_codes():
        row = resolve(results_dir, target)[1] if data_dir else None
        if row is not None and row.get("config_json"):  # --data-dir re-points the entry's moved data folder, checked
            from raycifar.entries.data_record import entry_data_dir

            data_dir = entry_data_dir(results_dir, row, data_dir, tell=lambda line: stderr.print(line, highlight=False, soft_wrap=True))
        written = write_report(
            results_dir, target, output.expanduser().resolve(), data_dir.expanduser().resolve() if data_dir else None
        )
    console.print(f"report: {written}", highlight=False, soft_wrap=True)
