"""The leaderboard table: one Parquet row per promoted model, read and appended safely.

Layout under the results directory::

    leaderboard.parquet                  one row per promoted model
    leaderboard/<entry_id>/model.safetensors
    leaderboard/<entry_id>/config.json   the resolved trial config

Appends hold a file lock (``filelock``: portable, with a timeout) and replace the table
atomically (temp file, fsync, rename). This module imports neither torch nor Ray.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from filelock import FileLock, Timeout

from raycifar.errors import UserError

TABLE_FILE = "leaderboard.parquet"
LOCK_FILE = ".leaderboard.lock"
LOCK_TIMEOUT_S = 120.0
ENTRIES_DIR = "leaderboard"

SCHEMA = pa.schema(
    [
        ("entry_id", pa.string()),
        ("created_at", pa.timestamp("s", tz="UTC")),
        ("sweep", pa.string()),
        ("space", pa.string()),
        ("dataset", pa.string()),
        ("model", pa.string()),
        ("params", pa.int64()),
        ("budget", pa.int64()),
        ("val_acc", pa.float64()),
        ("test_acc", pa.float64()),
        ("test_loss", pa.float64()),
        ("epochs", pa.int64()),
        ("trial_id", pa.string()),
        ("config_json", pa.string()),
        ("checkpoint_path", pa.string()),
        ("source_checkpoint", pa.string()),
        ("seed", pa.int64()),
        ("raycifar_version", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
DAMAGED = (
    "damaged, truncated or not Parquet; raycifar leaves it as it is: restore it from a copy, "
    "or move it away to start a new leaderboard"
)


def table_path(results_dir: Path) -> Path:
    return results_dir / TABLE_FILE


def entry_dir(results_dir: Path, entry_id: str) -> Path:
    return results_dir / ENTRIES_DIR / entry_id


def new_entry_id(sweep: str) -> str:
    """A unique, readable id: the sweep name plus four random hex digits."""
    return f"{sweep}-{secrets.token_hex(2)}"


@contextmanager
def locked(results_dir: Path, timeout_s: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold the results folder's leaderboard lock while the block runs.

    Raises :class:`UserError` when another process holds it for longer than ``timeout_s``.
    """
    path = results_dir / LOCK_FILE
    try:
        with FileLock(path, timeout=timeout_s):
            yield
    except Timeout:
        raise UserError(
            f"{path}: the leaderboard stayed locked for {timeout_s:.0f} s by another raycifar process; "
            "try again when it has finished (delete the lock file only if no raycifar is running)"
        ) from None


def read_table(results_dir: Path) -> list[dict]:
    """All rows of the leaderboard (empty if there is none yet); checks its columns."""
    path = table_path(results_dir)
    if not path.exists():
        return []
    try:
        table = pq.read_table(path)
    except OSError as err:
        if err.strerror:  # the OS's reason (permission denied, a folder of that name, ...)
            raise UserError(f"{path}: cannot read the leaderboard table ({err.strerror})") from None
        raise UserError(f"{path}: not a readable leaderboard table ({DAMAGED})") from None
    except pa.ArrowException:
        raise UserError(f"{path}: not a readable leaderboard table ({DAMAGED})") from None
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise UserError(f"{path}: not a raycifar leaderboard (missing columns: {', '.join(missing)})")
    return table.select(list(COLUMNS)).to_pylist()


def append_row(results_dir: Path, row: dict) -> None:
    """Append one row under a lock: write old rows + new row to a temp file, fsync, rename."""
    with locked(results_dir):
        rows = read_table(results_dir) + [row]
        handle, temp_name = tempfile.mkstemp(prefix=".leaderboard-", suffix=".parquet", dir=results_dir)
        try:
            with os.fdopen(handle, "wb") as stream:
                pq.write_table(pa.Table.from_pylist(rows, schema=SCHEMA), stream)
                stream.flush()
                os.fsync(stream.fileno())
            os.replace(temp_name, table_path(results_dir))
        except BaseException:
            Path(temp_name).unlink(missing_ok=True)
            raise


def find_entry(results_dir: Path, entry_id: str) -> dict:
    """The leaderboard row of ``entry_id``; a clear error if it is not there."""
    rows = read_table(results_dir)
    for row in rows:
        if row["entry_id"] == entry_id:
            return row
    known = ", ".join(r["entry_id"] for r in rows[-5:]) or "the leaderboard is empty"
    raise UserError(f"no leaderboard entry {entry_id!r} in {table_path(results_dir)} ({known})")
