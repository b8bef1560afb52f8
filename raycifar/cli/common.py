"""What every command shares: the consoles, one-line errors, common options, table printing."""

from __future__ import annotations

import csv
import io
import json
import math
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

from raycifar.cli.tables import FREE_TEXT, FittedTable, print_fitted
from raycifar.data.file_names import escape_streams, is_utf8, shown
from raycifar.errors import Interrupted, RunFailed, UserError

escape_streams(sys.stdout, sys.stderr)  # a name that is not UTF-8 is printed \xNN, never a traceback
console = Console(width=None if sys.stdout.isatty() or "COLUMNS" in os.environ else 160)  # piped: no 80-col squeeze
stderr = Console(stderr=True, width=None if sys.stderr.isatty() or "COLUMNS" in os.environ else 160)

TableOrJson = Literal["table", "json"]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` on one line of stderr and exit with ``code``."""
    stderr.print(f"[bold red]error:[/] {escape(shown(message))}", highlight=False, soft_wrap=True)
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


def refuse_non_utf8(option: str, path: Path | None) -> Path | None:
    """A folder path that raycifar records (in JSON, Parquet, HTML) must be UTF-8 text: one
    that is not (bytes from another system's zip) is refused in one line, its bytes shown ``\\xNN``."""
    if path is not None and not is_utf8(str(path)):
        fail(f"{option} {shown(str(path))}: the path is not valid UTF-8 (bytes shown as \\xNN), and raycifar "
             "records it in its files; rename the folder, or pass a symbolic link with a UTF-8 name")  # fmt: skip
    return path


def _refuse_uri(results_dir: Path) -> Path:
    """--results-dir is a folder path: a URI (s3://, gs://) would silently become a local folder."""
    refuse_non_utf8("--results-dir", results_dir)
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
        callback=lambda path: refuse_non_utf8("--data-dir", path),
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


def strict_json(value: object) -> object:
    """``value`` as standard JSON holds it, whatever the files it came from held: NaN and
    infinities become ``null``; bytes and the bytes of file names that are not UTF-8 are
    written ``\\xNN`` (:mod:`raycifar.data.file_names`); NumPy scalars and arrays, datetimes,
    paths and sets become numbers, ISO 8601 strings, strings and lists."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (str, bytes, os.PathLike)):
        return shown(value)
    if isinstance(value, dict):
        return {str(strict_json(k)): strict_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [strict_json(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return strict_json(value.tolist())
    return value


def print_json(value: object) -> None:
    """``value`` as indented standard JSON on stdout (never a bare NaN: see :func:`strict_json`)."""
    sys.stdout.write(json.dumps(strict_json(value), indent=2, allow_nan=False, default=str) + "\n")


def print_record(record: dict) -> None:
    """One record as a two-column key/value table."""
    table = FittedTable("key", "value", text=(), pairs=True)  # values whole: else one "key: value" line each
    for key, value in record.items():
        table.add_row(escape(key), escape(f"{value:.4f}" if isinstance(value, float) else str(value)))
    print_fitted(console, table)


def table(*columns: str, drop: tuple[str, ...] = (), text: tuple[str, ...] = FREE_TEXT) -> FittedTable:
    """A plain table with these column headers that fits the terminal without cutting an id or
    a number (:mod:`raycifar.cli.tables`): ``drop``, the columns it may leave out, first
    dropped first; ``text``, the free-text columns it may fold."""
    return FittedTable(*columns, drop=drop, text=text, box=box.SIMPLE_HEAD, pad_edge=False)


def print_csv(rows: list[dict], columns: tuple[str, ...]) -> None:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=columns, extrasaction="ignore")
    writer.writeheader()
    writer.writerows({k: shown(v) if isinstance(v, str) else v for k, v in jsonable(r).items()} for r in rows)
    sys.stdout.write(buffer.getvalue())
