"""The leaderboard: promote a checkpoint (test evaluation + export + one Parquet row), read
the table back, and re-evaluate an entry from its exported files.

Layout under the results directory::

    leaderboard.parquet                  one row per promoted model
    leaderboard/<entry_id>/model.safetensors
    leaderboard/<entry_id>/config.json   the resolved trial config
"""

from __future__ import annotations

import fcntl
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

from raycifar import __version__
from raycifar.config import TrialConfig
from raycifar.data import CATALOG, DeviceLoader, read_part
from raycifar.errors import UserError
from raycifar.models import CONFIG_FILE, MODEL_FILE, load_model_files, model_name
from raycifar.train import EVAL_BATCH_SIZE, evaluate

TABLE_FILE = "leaderboard.parquet"
LOCK_FILE = ".leaderboard.lock"
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


def table_path(results_dir: Path) -> Path:
    return results_dir / TABLE_FILE


def entry_dir(results_dir: Path, entry_id: str) -> Path:
    return results_dir / ENTRIES_DIR / entry_id


def new_entry_id(sweep: str) -> str:
    """A unique, readable id: the sweep name plus four random hex digits."""
    return f"{sweep}-{secrets.token_hex(2)}"


def _rebuild(model_folder: Path) -> tuple[torch.nn.Module, TrialConfig]:
    """The model and config exported in ``model_folder``; a one-line error if they are damaged."""
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (model_folder / name).is_file()]
    if missing:
        raise UserError(f"{model_folder}: missing {' and '.join(missing)}; the entry's exported files are gone")
    try:
        return load_model_files(model_folder)
    except Exception as err:  # a damaged config.json or weights file: many error types
        raise UserError(f"{model_folder}: cannot rebuild the model ({type(err).__name__}: {err})") from None


def evaluate_on_test(model_folder: Path, data_dir: Path) -> dict:
    """Test-set ``test_acc``, ``test_loss`` and ``n`` of the model saved in ``model_folder``.

    Runs on the CPU in float32 so that promotion and ``raycifar evaluate`` agree exactly.
    """
    model, config = _rebuild(model_folder)
    return _test_scores(model, config, data_dir)


def _test_scores(model: torch.nn.Module, config: TrialConfig, data_dir: Path) -> dict:
    test_set = read_part(data_dir, "test", config.dataset, config.label_mode)
    if not test_set.labeled:
        raise UserError(f"{data_dir}: the test images are unlabeled; evaluation needs labels")
    stats = CATALOG[config.dataset]
    loader = DeviceLoader(test_set, EVAL_BATCH_SIZE, torch.device("cpu"), train=False, mean=stats.mean, std=stats.std)
    loss, accuracy, count = evaluate(model, loader)
    return {"test_acc": accuracy, "test_loss": loss, "n": count}


@contextmanager
def _locked(results_dir: Path) -> Iterator[None]:
    """Hold an exclusive lock on the results folder's leaderboard while the block runs."""
    with open(results_dir / LOCK_FILE, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_table(results_dir: Path) -> list[dict]:
    """All rows of the leaderboard (empty if there is none yet); checks its columns."""
    path = table_path(results_dir)
    if not path.exists():
        return []
    try:
        table = pq.read_table(path)
    except (pa.ArrowException, OSError) as err:
        raise UserError(f"{path}: not a readable leaderboard table ({err})") from None
    missing = [name for name in COLUMNS if name not in table.column_names]
    if missing:
        raise UserError(f"{path}: not a raycifar leaderboard (missing columns: {', '.join(missing)})")
    return table.select(list(COLUMNS)).to_pylist()


def append_row(results_dir: Path, row: dict) -> None:
    """Append one row under a lock: write old rows + new row to a temp file, fsync, rename."""
    with _locked(results_dir):
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


def promote(
    checkpoint_folder: Path,
    results_dir: Path,
    *,
    sweep: str,
    trial_id: str,
    val_acc: float,
    epochs: int,
    source_checkpoint: str,
) -> dict:
    """Export a checkpoint's model to the leaderboard, evaluate it on the test set, append a row.

    The entry folder appears only with its row: a failure on the way leaves neither.
    """
    entry_id = new_entry_id(sweep)
    target = entry_dir(results_dir, entry_id)
    staging = target.with_name(f".{entry_id}.partial")
    staging.mkdir(parents=True)
    try:
        for name in (MODEL_FILE, CONFIG_FILE):
            shutil.copy2(checkpoint_folder / name, staging / name)
        model, config = _rebuild(staging)
        scores = _test_scores(model, config, Path(config.data_dir))
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    row = {
        "entry_id": entry_id,
        "created_at": datetime.now(timezone.utc).replace(microsecond=0),
        "sweep": sweep,
        "space": config.space,
        "dataset": config.dataset,
        "model": model_name(config.model),
        "params": config.params,
        "budget": config.budget,
        "val_acc": val_acc,
        "test_acc": scores["test_acc"],
        "test_loss": scores["test_loss"],
        "epochs": epochs,
        "trial_id": trial_id,
        "config_json": json.dumps(config.model_dump(mode="json"), sort_keys=True),
        "checkpoint_path": str(target),
        "source_checkpoint": source_checkpoint,
        "seed": config.seed,
        "raycifar_version": __version__,
    }
    try:
        append_row(results_dir, row)
    except BaseException:
        shutil.rmtree(target, ignore_errors=True)
        raise
    return row


def find_entry(results_dir: Path, entry_id: str) -> dict:
    """The leaderboard row of ``entry_id``; a clear error if it is not there."""
    rows = read_table(results_dir)
    for row in rows:
        if row["entry_id"] == entry_id:
            return row
    known = ", ".join(r["entry_id"] for r in rows[-5:]) or "the leaderboard is empty"
    raise UserError(f"no leaderboard entry {entry_id!r} in {table_path(results_dir)} ({known})")
