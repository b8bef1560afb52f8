"""Model files: the evaluated weights (``model.safetensors``) and the resolved trial config
(``config.json``) that every checkpoint and leaderboard entry holds.

Squeeze-and-excitation layers are timm's ``SEModule``, whose convs are ``se.fc1``/``se.fc2``.
Entries and checkpoints written before that (raycifar's own SE layer) name them
``se.reduce``/``se.expand``: :func:`load_weights` (so :func:`load_model_files` and a
resumed trial too) renames those keys on load with :func:`rename_legacy_keys`; the
weights are the same, so such an entry gives the same logits as before.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from raycifar.config import TrialConfig
from raycifar.models import build_model

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
LEGACY_SE_KEYS = {"reduce": "fc1", "expand": "fc2"}  # raycifar's own SE layer -> timm's SEModule
_LEGACY_SE_KEY = re.compile(r"(^|\.)se\.(reduce|expand)\.")


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


def rename_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with pre-timm SE keys renamed (``stages.0.1.se.reduce.weight`` ->
    ``stages.0.1.se.fc1.weight``, ``se.expand`` -> ``se.fc2``); other keys unchanged."""

    def renamed(key: str) -> str:
        return _LEGACY_SE_KEY.sub(lambda m: f"{m[1]}se.{LEGACY_SE_KEYS[m[2]]}.", key)

    return {renamed(key): value for key, value in state.items()}


def load_weights(folder: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in ``folder/model.safetensors`` on ``device``, in today's key names
    (see :func:`rename_legacy_keys`)."""
    return rename_legacy_keys(load_file(str(folder / MODEL_FILE), device=str(device)))


def load_model_files(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, TrialConfig]:
    """Rebuild a model (eval mode) and its config from files written by :func:`save_model_files`."""
    config = read_config(folder)
    model = build_model(config.model, device)
    model.load_state_dict(load_weights(folder, device))
    return model.eval(), config
