"""Model files: the evaluated weights (``model.safetensors``) and the resolved trial config
(``config.json``) that every checkpoint and leaderboard entry holds.

Entries written before raycifar used timm's squeeze-and-excitation layers name the SE convs
``se.reduce``/``se.expand``; :func:`load_model_files` reads both namings.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from raycifar.config import TrialConfig
from raycifar.models import build_model

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel (or ``torch.compile``) wrapper."""
    model = getattr(model, "_orig_mod", model)
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


def save_model_files(folder: Path, model: nn.Module, config: TrialConfig) -> None:
    """Write the weights (safetensors, on the CPU) and the resolved config (JSON) into ``folder``."""
    weights = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    save_file(weights, str(folder / MODEL_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=2))


def read_config(folder: Path) -> TrialConfig:
    """The resolved trial config in ``folder/config.json``."""
    return TrialConfig.model_validate_json((folder / CONFIG_FILE).read_text())


def load_weights(folder: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in ``folder/model.safetensors`` on ``device``."""
    return load_file(str(folder / MODEL_FILE), device=str(device))


def load_model_files(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, TrialConfig]:
    """Rebuild a model (eval mode) and its config from files written by :func:`save_model_files`."""
    config = read_config(folder)
    model = build_model(config.model, device)
    model.load_state_dict(load_weights(folder, device))
    return model.eval(), config
