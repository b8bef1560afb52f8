"""What every command shares: the consoles, one-line errors, common options, table printing."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Annotated, Literal, NoReturn, Optional

import typer
from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from raycifar.errors import Interrupted, RunFailed, UserError

console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)  # piped: no 80-col squeeze
stderr = Console(stderr=True, width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160)

TableOrJson = Literal["table", "json"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {escape(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@contextmanager
def exit_codes() -> Iterator[None]:
    """Turn raycifar's exceptions into one-line errors: bad input exits 2, a run that left
    nothing to promote exits 1, Ctrl+C exits 130."""
    try:
        yield
    except UserError as err:
        fail(str(err))
    except RunFailed as err:
        fail(str(err), code=1)
    except Interrupted as err:
        fail(str(err), code=130)


def _refuse_uri(results_dir: Path) -> Path:
    """--results-dir is a folder path: a URI (s3://, gs://) would silently become a local folder."""
    scheme = results_dir.parts[0] if results_dir.parts else ""
    if re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]+:", scheme):
        fail(
            f"--results-dir {scheme}//…: URIs are not supported; use a folder that every node mounts "
            "(docs/cluster.md: Results on shared storage)"
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
FormatOption = Annotated[TableOrJson, typer.Option("--format", help="table or json.")]


def resolve_data_dir(data_dir: Path | None) -> Path:
    """``--data-dir``, else ``$RAYCIFAR_DATA``, else ``~/.cache/raycifar``, as an absolute path."""
    from raycifar.data.readers import default_data_dir

    return (data_dir or default_data_dir()).expanduser().resolve()


def jsonable(row: dict) -> dict:
    """A row with its datetimes as ISO 8601 strings."""
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row.items()}


def print_json(value: object) -> None:
    sys.stdout.write(json.dumps(value, indent=2) + "\n")


def print_record(record: dict) -> None:
    """One record as a two-column key/value table."""
    table = Table("key", "value")
    for key, value in record.items():
        table.add_row(key, escape(f"{value:.4f}" if isinstance(value, float) else str(value)))
    console.print(table)


def table(*columns: str) -> Table:
    """A plain table with these column headers."""
    return Table(*columns, box=box.SIMPLE_HEAD, pad_edge=False)


def print_csv(rows: list[dict], columns: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(jsonable(r) for r in rows)
    sys.stdout.write(buffer.getvalue())
