"""Promotion: a checkpoint becomes a leaderboard entry (export, one test evaluation, one row).

The entry folder appears only with its row: a failure on the way leaves neither.
"""

from __future__ import annotations

import json
import shutil
from datetime import datetime, timezone
from pathlib import Path

from raycifar import __version__
from raycifar.errors import UserError
from raycifar.evaluate import rebuild, test_scores
from raycifar.export import CONFIG_FILE, MODEL_FILE
from raycifar.leaderboard import append_row, entry_dir, new_entry_id
from raycifar.variants import model_name


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
    """Export the model in ``checkpoint_folder`` to a new entry, evaluate it once on the
    test set of its config's ``data_dir``, append its leaderboard row, and return the row."""
    entry_id = new_entry_id(sweep)
    target = entry_dir(results_dir, entry_id)
    staging = target.with_name(f".{entry_id}.partial")
    staging.mkdir(parents=True)
    try:
        for name in (MODEL_FILE, CONFIG_FILE):
            shutil.copy2(checkpoint_folder / name, staging / name)
        try:
            model, config = rebuild(staging)
        except UserError as err:  # name the checkpoint's files, not their staged copies
            raise UserError(str(err).replace(str(staging), str(checkpoint_folder))) from None
        scores = test_scores(model, config, Path(config.data_dir))
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
