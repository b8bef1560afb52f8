"""Test evaluation of an exported model: the one place where the test set is scored.

It runs on the CPU in float32 so that promotion and ``raycifar evaluate`` agree exactly.
"""

from __future__ import annotations

from pathlib import Path

import torch

from raycifar.config import TrialConfig
from raycifar.data import CATALOG, DeviceLoader, read_part
from raycifar.errors import UserError
from raycifar.export import CONFIG_FILE, MODEL_FILE, load_model_files
from raycifar.loop import EVAL_BATCH_SIZE, score


def rebuild(model_folder: Path) -> tuple[torch.nn.Module, TrialConfig]:
    """The model (eval mode, CPU) and config exported in ``model_folder``.

    Raises a one-line :class:`UserError` if a file is missing, damaged, or the weights do
    not fit the config (see :func:`raycifar.export.load_model_files`).
    """
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (model_folder / name).is_file()]
    if missing:
        raise UserError(f"{model_folder}: missing {' and '.join(missing)}; the entry's exported files are gone")
    return load_model_files(model_folder)


def test_scores(model: torch.nn.Module, config: TrialConfig, data_dir: Path) -> dict:
    """``test_acc`` (fraction correct), ``test_loss`` (mean cross-entropy, nats) and ``n``
    (images) of ``model`` on the test part of ``data_dir``, read as ``config`` reads data."""
    test_set = read_part(data_dir, "test", config.dataset, config.label_mode)
    if not test_set.labeled:
        raise UserError(f"{data_dir}: the test images are unlabeled; evaluation needs labels")
    stats = CATALOG[config.dataset]
    loader = DeviceLoader(test_set, EVAL_BATCH_SIZE, torch.device("cpu"), train=False, mean=stats.mean, std=stats.std)
    scores = score(model, loader)
    return {"test_acc": scores.acc, "test_loss": scores.loss, "n": scores.count}


def evaluate_on_test(model_folder: Path, data_dir: Path) -> dict:
    """:func:`test_scores` of the model exported in ``model_folder``."""
    model, config = rebuild(model_folder)
    return test_scores(model, config, data_dir)
