"""``raycifar.load_model``: a promoted model, ready to use, from its entry id or folder."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from raycifar.errors import UserError
from raycifar.models.files import MODEL_FILE, rebuild
from raycifar.results.layout import entry_dir


def entry_folder(entry: str | Path, results_dir: str | Path = "raycifar_results") -> Path:
    """The folder holding an entry's ``model.safetensors``: ``entry`` itself when it is such
    a folder, else ``<results_dir>/leaderboard/<entry>``; a :class:`UserError` if neither."""
    given = Path(entry).expanduser()
    if (given / MODEL_FILE).is_file():
        return given
    folder = entry_dir(Path(results_dir).expanduser(), str(entry))
    if not folder.is_dir():
        raise UserError(f"no leaderboard entry {str(entry)!r}: neither a model folder nor {folder}")
    return folder


def load_model(
    entry: str | Path, results_dir: str | Path = "raycifar_results", device: torch.device | str = "cpu"
) -> nn.Module:
    """The model of leaderboard entry ``entry`` (an entry id, or a folder holding
    ``model.safetensors`` and ``config.json``) in eval mode on ``device``.

    It takes float32 N x 3 x 32 x 32 images scaled to 0..1 and normalised with the dataset's
    mean and std (``raycifar.data.CATALOG[dataset]``), and returns N x classes logits.
    """
    model, _ = rebuild(entry_folder(entry, results_dir))
    return model.to(device).eval()
