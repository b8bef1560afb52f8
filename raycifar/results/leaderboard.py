"""The leaderboard: one Parquet file per promoted model, read together as one dataset.

Layout under the results directory::

    leaderboard/rows/<entry_id>.parquet      one row: the entry's scores and provenance
    leaderboard/<entry_id>/model.safetensors the evaluated weights
    leaderboard/<entry_id>/config.json       the resolved trial config
    leaderboard/<entry_id>/README.md         the model card
    leaderboard/<entry_id>/predictions.npz   per-image test predictions

``leaderboard/rows/`` holds only row files, so any Parquet reader takes it as one table:
``pyarrow.dataset.dataset(dir)``, ``pandas.read_parquet(dir)``, DuckDB's
``read_parquet('dir/*.parquet', union_by_name=true)``.

A row file is created once and never rewritten: written to a dot-named temp file in the same
folder, fsynced, then hard-linked to its final name, which fails rather than overwrite. So
promotions from any number of processes (or machines sharing the folder) never lose a row
and need no lock. A row file that cannot be read is named in one warning line on stderr and
skipped; the other rows are still listed, and the file is left as it is.

The single-file table of older raycifars (``leaderboard.parquet``, schema version 1) is
imported once, automatically, on the first read: each row becomes a row file (schema_version
1: the columns added since are null) and the old file is kept as
``leaderboard.parquet.v1-backup``. Row files of an older schema version read with the columns
added since as null (version 3 added ``test_acc_mean``, ``test_acc_std`` and ``seeds``;
version 4 ``device``, the unit of ``device_hours``; version 5 ``corrupted_acc``,
``robustness_gap`` and ``corrupted_set``).
This module imports neither torch nor Ray.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from raycifar.errors import UserError
from raycifar.results.layout import (
    ENTRY_ID_DIGITS,
    ROW_SUFFIX,
    ROWS_DIR,
    TEMP_DIGITS,
    entries_dir,
    entry_dir,
    entry_staging_dir,
    row_file,
    row_temporary,
)
from raycifar.results.layout import entry_id as layout_entry_id
from raycifar.results.leaderboard_schema import COLUMNS, LEGACY_COLUMNS, ROBUSTNESS_FILE, SCHEMA, SCHEMA_VERSION

TABLE_FILE = "leaderboard.parquet"  # the single-file table of raycifar before schema version 2


BACKUP_SUFFIX = ".v1-backup"


LOCK_FILE = ".leaderboard.lock"  # held only while importing the single-file table


LOCK_TIMEOUT_S = 120.0


DAMAGED = "damaged, truncated or not Parquet; raycifar leaves it as it is: restore it from a copy, or move it away"


Warn = Callable[[str], None]


def warn_on_stderr(message: str) -> None:
    """Print ``warning: message`` as one line on stderr."""
    sys.stderr.write(f"warning: {' '.join(message.split())}\n")
    sys.stderr.flush()


def table_path(results_dir: Path) -> Path:
    """The single-file table of older raycifars (imported on the first read)."""
    return results_dir / TABLE_FILE


def rows_dir(results_dir: Path) -> Path:
    """The folder of row files: one Parquet dataset."""
    return entries_dir(results_dir) / ROWS_DIR


def row_path(results_dir: Path, entry_id: str) -> Path:
    return row_file(results_dir, entry_id)




def new_entry_id(sweep: str) -> str:
    """A readable id: the sweep name plus four random hex digits (see :func:`claim_entry`)."""
    return layout_entry_id(sweep, secrets.token_hex(ENTRY_ID_DIGITS // 2))


def claim_entry(results_dir: Path, sweep: str) -> tuple[str, Path]:
    """A new entry id of ``sweep`` and its empty staging folder ``leaderboard/.<id>.partial``.

    Creating the staging folder claims the id: it fails if another process holds the id
    now, and an id whose entry folder or row exists is passed over. Since a staging folder
    becomes its entry folder by one rename, no two promotions ever get the same id.
    """
    parent = entries_dir(results_dir)
    parent.mkdir(parents=True, exist_ok=True)
    while True:
        entry_id = new_entry_id(sweep)
        staging = entry_staging_dir(results_dir, entry_id)
        try:
            staging.mkdir()
        except FileExistsError:
            continue
        if entry_dir(results_dir, entry_id).exists() or row_path(results_dir, entry_id).exists():
            staging.rmdir()
            continue
        return entry_id, staging


class LeaderboardLocked(UserError):
    """Another process held the leaderboard lock (``path``) for longer than ``timeout_s`` seconds."""

    def __init__(self, path: Path, timeout_s: float) -> None:
        self.path, self.timeout_s = path, timeout_s
        super().__init__(
            f"{path}: the leaderboard stayed locked for {timeout_s:.0f} s by another raycifar process; "
            "try again when it has finished (delete the lock file only if no raycifar is running)"
        )


@contextmanager
def locked(results_dir: Path, timeout_s: float | None = None) -> Iterator[None]:
    """Hold the results folder's leaderboard lock while the block runs (``timeout_s``:
    default :data:`LOCK_TIMEOUT_S`).

    Raises :class:`LeaderboardLocked` (a :class:`UserError`) when another process holds it
    for longer than ``timeout_s``.
    """
    path = results_dir / LOCK_FILE
    timeout_s = LOCK_TIMEOUT_S if timeout_s is None else timeout_s
    try:
        with FileLock(path, timeout=timeout_s):
            yield
    except Timeout:
        raise LeaderboardLocked(path, timeout_s) from None


def _fsync_folder(folder: Path) -> None:
    """Make a new name in ``folder`` durable (where the platform allows opening folders)."""
    try:
        handle = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(handle)
    except OSError:
        pass
    finally:
        os.close(handle)


def _create_exclusively(temp: Path, final: Path) -> None:
    """Give ``temp`` the name ``final`` unless ``final`` exists (FileExistsError then)."""
    try:
        os.link(temp, final)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename
        if final.exists():
            raise FileExistsError(final) from None
        os.rename(temp, final)
        return
    temp.unlink()


def write_row(results_dir: Path, row: dict) -> Path:
    """Create the row file of ``row["entry_id"]`` (columns missing from ``row`` are null).

    The file appears whole or not at all, and never replaces another: an existing row of
    the same entry is a :class:`UserError`. Returns the file's path.
    """
    folder = rows_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    final = row_path(results_dir, row["entry_id"])
    temp = row_temporary(results_dir, row["entry_id"], secrets.token_hex(TEMP_DIGITS // 2))
    try:
        with open(temp, "xb") as stream:
            pq.write_table(pa.Table.from_pylist([{"schema_version": SCHEMA_VERSION, **row}], schema=SCHEMA), stream)
            stream.flush()
            os.fsync(stream.fileno())
        _create_exclusively(temp, final)
    except FileExistsError:
        raise UserError(f"{final}: the leaderboard already has entry {row['entry_id']!r}; it was left as it is") from None
    finally:
        temp.unlink(missing_ok=True)
    _fsync_folder(folder)
    return final


def _plain(value: object) -> object:
    """Arrow's map values (lists of key/value pairs) as dicts."""
    if isinstance(value, list) and all(isinstance(item, tuple) and len(item) == 2 for item in value):
        return dict(value)
    return value


def _conform(rows: list[dict]) -> list[dict]:
    """Rows with every column of :data:`SCHEMA` (null where a file lacks it), maps as dicts."""
    return [{name: None for name in COLUMNS} | {k: _plain(v) for k, v in row.items()} for row in rows]


def _read_row_file(path: Path) -> list[dict]:
    """The rows of one row file; ValueError naming the problem if it is not one."""
    try:
        table = pq.read_table(path)
    except OSError as err:
        if err.strerror:  # the OS's reason (permission denied, ...)
            raise ValueError(f"cannot read it ({err.strerror})") from None
        raise ValueError(f"not a readable Parquet file ({DAMAGED})") from None
    except pa.ArrowException:
        raise ValueError(f"not a readable Parquet file ({DAMAGED})") from None
    if "entry_id" not in table.column_names:
        raise ValueError("not a raycifar leaderboard row (no entry_id column)")
    return _conform(table.to_pylist())


def _legacy_rows(results_dir: Path) -> list[dict]:
    """The rows of the single-file table; ValueError naming the problem if it cannot be read."""
    path = table_path(results_dir)
    try:
        table = pq.read_table(path)
    except OSError as err:
        if err.strerror:
            raise ValueError(f"cannot read it ({err.strerror})") from None
        raise ValueError(f"not a readable leaderboard table ({DAMAGED})") from None
    except pa.ArrowException:
        raise ValueError(f"not a readable leaderboard table ({DAMAGED})") from None
    missing = [name for name in LEGACY_COLUMNS if name not in table.column_names]
    if missing:
        raise ValueError(f"not a raycifar leaderboard (missing columns: {', '.join(missing)})")
    return [{**row, "schema_version": 1} for row in _conform(table.to_pylist())]


def _backup_name(path: Path) -> Path:
    """``leaderboard.parquet.v1-backup``, or with a UTC time stamp when that name is taken."""
    backup = path.with_name(path.name + BACKUP_SUFFIX)
    if backup.exists():
        backup = path.with_name(f"{path.name}{BACKUP_SUFFIX}-{datetime.now(timezone.utc):%Y%m%dT%H%M%S%f}")
    return backup


def import_legacy_table(results_dir: Path, warn: Warn = warn_on_stderr) -> list[dict]:
    """Import ``leaderboard.parquet`` (schema version 1) into row files, once, and keep the
    old file as ``leaderboard.parquet.v1-backup``.

    Returns the rows that could not be imported and must be read from the old file in place
    (the folder is read-only): [] normally. An unreadable old table is warned about and left
    untouched. Rows already imported (by an earlier, interrupted import) are kept as they are.
    """
    path = table_path(results_dir)
    if not path.exists():
        return []
    try:
        with locked(results_dir):
            return _import_locked(results_dir, warn)
    except OSError as err:  # the lock file cannot be created: a read-only folder
        return _rows_in_place(results_dir, warn, err)


def _import_locked(results_dir: Path, warn: Warn) -> list[dict]:
    path = table_path(results_dir)
    if not path.exists():  # another process imported it while we waited for the lock
        return []
    try:
        rows = _legacy_rows(results_dir)
    except ValueError as err:
        warn(f"{path}: {err}; its rows are not listed (the file is left as it is)")
        return []
    try:
        for row in rows:
            if not row_path(results_dir, row["entry_id"]).exists():
                write_row(results_dir, row)
        os.rename(path, _backup_name(path))
    except OSError as err:
        return _rows_in_place(results_dir, warn, err, rows)
    return []


def _rows_in_place(results_dir: Path, warn: Warn, err: OSError, rows: list[dict] | None = None) -> list[dict]:
    path = table_path(results_dir)
    warn(f"{path}: cannot import it into row files ({err.strerror or err}); reading it in place")
    if rows is not None:
        return rows
    try:
        return _legacy_rows(results_dir)
    except ValueError as problem:
        warn(f"{path}: {problem}; its rows are not listed (the file is left as it is)")
        return []


def _order(row: dict) -> tuple:
    created = row["created_at"]
    return (created is None, created.timestamp() if isinstance(created, datetime) else 0.0)


def read_table(results_dir: Path, warn: Warn = warn_on_stderr) -> list[dict]:
    """Every row of the leaderboard, oldest first ([] if there is none yet).

    Imports an old single-file table first (:func:`import_legacy_table`). A row file that
    cannot be read is reported through ``warn`` (one line naming it) and skipped.
    """
    rows = import_legacy_table(results_dir, warn)
    folder = rows_dir(results_dir)
    files = sorted(folder.glob(f"*{ROW_SUFFIX}")) if folder.is_dir() else []
    timed: list[tuple[int, dict]] = []
    for path in files:
        try:
            found = _read_row_file(path)
            stamp = path.stat().st_mtime_ns
        except (ValueError, OSError) as err:
            warn(f"{path}: {err}; skipped (the file is left as it is)")
            continue
        timed += [(stamp, row) for row in found]
    timed.sort(key=lambda pair: (*_order(pair[1]), pair[0]))
    return rows + [row for _, row in timed]


def find_entry(results_dir: Path, entry_id: str, warn: Warn = warn_on_stderr) -> dict:
    """The leaderboard row of ``entry_id``; a clear error if it is not there."""
    path = row_path(results_dir, entry_id)
    if path.is_file() and not table_path(results_dir).exists():
        try:
            found = [r for r in _read_row_file(path) if r["entry_id"] == entry_id]
        except (ValueError, OSError) as err:
            raise UserError(f"{path}: {err}") from None
        if found:
            return found[0]
    rows = read_table(results_dir, warn)
    for row in rows:
        if row["entry_id"] == entry_id:
            return row
    known = ", ".join(r["entry_id"] for r in rows[-5:]) or "the leaderboard is empty"
    raise UserError(f"no leaderboard entry {entry_id!r} in {rows_dir(results_dir)} ({known})")


def ranked(rows: list[dict], dataset: str | None = None, space: str | None = None, top: int | None = None) -> list[dict]:
    """``rows`` of ``dataset`` and ``space`` (None: any), best ``test_acc`` first (rows
    without one last), at most ``top`` of them."""
    kept = [r for r in rows if (dataset is None or r["dataset"] == dataset) and (space is None or r["space"] == space)]
    kept.sort(key=lambda r: (r["test_acc"] is None, -(r["test_acc"] or 0.0)))
    return kept if top is None else kept[:top]


def read_robustness(entry_folder: Path) -> dict | None:
    """The entry's ``robustness.json`` (its figures per corruption, severity and class; see
    :mod:`raycifar.entries.robustness`), None when it has none; a :class:`UserError` naming
    the file when it cannot be read."""
    path = entry_folder / ROBUSTNESS_FILE
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the entry's robustness figures ({' '.join(str(err).split())})") from None
    return found if isinstance(found, dict) else None
