"""Weights & Biases logging of ``raycifar train`` runs and of promoted models.

Like a sweep's trials (:mod:`raycifar.sweep`), everything goes to the W&B project
:data:`PROJECT`, offline by default: offline runs are written under ``<results>/wandb/wandb/``
(``offline-run-*``; upload them later with ``wandb sync``) and need neither a network nor an
API key. ``online`` needs ``WANDB_API_KEY`` (checked by :func:`check_mode` before anything
runs); ``off`` logs nothing and never imports wandb.

Artifact files are staged by wandb (for ``wandb sync``) under ``$WANDB_DATA_DIR``, which
defaults here to ``<results>/wandb/data`` so that all of it stays in the results folder.

``wandb`` is imported lazily: the CLI and the leaderboard stay fast without it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from raycifar.config import WANDB_PROJECT, WandbMode
from raycifar.errors import UserError
from raycifar.results import layout
from raycifar.results.schema import EPOCH, TRAIN_LOSS, VAL_ACC, VAL_LOSS, EpochMetrics

PROJECT = WANDB_PROJECT
DATA_FOLDER = "data"  # wandb's staging area, under <results>/wandb
EPOCH_KEYS = (TRAIN_LOSS, VAL_LOSS, VAL_ACC, "lr")  # what a train run logs per epoch, as a sweep trial does
ARTIFACT_FILES = ("model.safetensors", "config.json", "README.md")  # of the entry folder
ARTIFACT_ALIAS = "best"
ARTIFACT_METADATA = (
    "entry_id", "sweep", "trial_id", "space", "dataset", "label_mode", "model", "params", "macs", "budget",
    "epochs", "seed", VAL_ACC, "test_acc", "test_loss", "test_images", "test_acc_tta", "test_acc_ci_low",
    "test_acc_ci_high", "test_acc_mean", "test_acc_std", "seeds",
)  # fmt: skip

EpochLog = Callable[[dict], None]


def check_mode(mode: str, option: str = "--wandb") -> None:
    """Refuse ``online`` without ``WANDB_API_KEY`` (wandb would otherwise ask for a login and
    block), and any mode but offline, online and off. Raises :class:`UserError`."""
    if mode not in ("offline", "online", "off"):
        raise UserError(f"{option} {mode!r}: use offline, online or off")
    if mode == "online" and not os.environ.get("WANDB_API_KEY"):
        raise UserError(f"{option} online needs WANDB_API_KEY in the environment (or use {option} offline)")


def make_wandb_dir(results_dir: Path) -> Path:
    """``<results>/wandb``, created: where wandb writes its run folders (``wandb/offline-run-*``)."""
    folder = layout.wandb_dir(results_dir)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@contextmanager
def _wandb_run(mode: WandbMode, results_dir: Path, **init: Any) -> Iterator[Any]:
    """A wandb run in ``mode`` under ``<results>/wandb`` (staging in its ``data`` folder unless
    ``WANDB_DATA_DIR`` is set), finished when the block ends."""
    import wandb

    folder = make_wandb_dir(results_dir)
    previous = os.environ.get("WANDB_DATA_DIR")
    os.environ["WANDB_DATA_DIR"] = previous or str(folder / DATA_FOLDER)
    settings = wandb.Settings(silent=True, console="off", x_disable_stats=True)
    try:
        run = wandb.init(project=PROJECT, mode=mode, dir=str(folder), settings=settings, **init)
        try:
            yield run
        finally:
            run.finish()
    finally:
        if previous is None:
            os.environ.pop("WANDB_DATA_DIR", None)


@contextmanager
def train_run_logger(mode: WandbMode, results_dir: Path, group: str, name: str, config: dict) -> Iterator[EpochLog]:
    """A function that logs one epoch's metrics (a run's metrics dict: ``epoch`` and
    :data:`EPOCH_KEYS`) to the W&B run ``name`` of ``group``, with ``config`` (the trial
    config as JSON values) as its config; with ``mode`` off, one that does nothing."""
    if mode == "off":
        yield lambda metrics: None
        return
    with _wandb_run(mode, results_dir, group=group, name=name, job_type="train", config=config) as run:

        def log(metrics: EpochMetrics) -> None:
            values = {key: float(metrics[key]) for key in EPOCH_KEYS if metrics.get(key) is not None}
            run.log({**values, EPOCH: int(metrics[EPOCH])}, step=int(metrics[EPOCH]))

        yield log


def artifact_metadata(row: Mapping[str, Any]) -> dict:
    """The row's scores and identity (:data:`ARTIFACT_METADATA`) that are set, as plain values."""
    return {key: row[key] for key in ARTIFACT_METADATA if row.get(key) is not None}


def artifact_name(row: Mapping[str, Any]) -> str:
    """``model-<sweep or run name>``: each sweep or run promotes one model, its ``best``."""
    return f"model-{row['sweep']}"


def log_model_artifact(row: Mapping[str, Any], entry_folder: Path, results_dir: Path, mode: WandbMode) -> str | None:
    """Log the promoted model of ``row`` (the files :data:`ARTIFACT_FILES` of ``entry_folder``)
    as a W&B ``model`` artifact with the alias ``best`` and the row's scores as metadata, in
    its own short run (group: the row's sweep or run name). Returns the artifact's name, or
    None when ``mode`` is off. Raises :class:`UserError` if an entry file is missing."""
    if mode == "off":
        return None
    missing = [name for name in ARTIFACT_FILES if not (entry_folder / name).is_file()]
    if missing:
        raise UserError(f"{entry_folder}: missing {', '.join(missing)}; cannot log the model to W&B")
    import wandb

    name = artifact_name(row)
    metadata = artifact_metadata(row)
    run_name = f"promote-{row['entry_id']}"
    with _wandb_run(mode, results_dir, group=row["sweep"], name=run_name, job_type="promote") as run:
        artifact = wandb.Artifact(name, type="model", description=f"raycifar leaderboard entry {row['entry_id']}",
                                  metadata=metadata)  # fmt: skip
        for file_name in ARTIFACT_FILES:
            artifact.add_file(str(entry_folder / file_name), name=file_name)
        run.log_artifact(artifact, aliases=[ARTIFACT_ALIAS])
    return name
