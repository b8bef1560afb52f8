"""Model files: the evaluated weights (``model.safetensors``) and the resolved trial config
(``config.json``) that every checkpoint and leaderboard entry holds.

Squeeze-and-excitation layers are timm's ``SEModule``, whose convs are ``se.fc1``/``se.fc2``.
Entries and checkpoints written before that (raycifar's own SE layer) name them
``se.reduce``/``se.expand``: :func:`load_weights` (so :func:`load_model_files` and a
resumed trial too) renames those keys on load with :func:`rename_legacy_keys`; the
weights are the same, so such an entry gives the same logits as before.

Reading never changes what it reads: a weights file that does not fit its config (a
``module.`` prefix from a DDP wrapper, an edited ``num_classes``) is refused, not repaired.
Every problem with these files is one :class:`~raycifar.errors.UserError` line naming the
file, the first mismatching key and its likely cause; no torch, safetensors or pydantic
message reaches the user as it is.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from pydantic import ValidationError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from raycifar.config import TrialConfig, format_validation_error
from raycifar.errors import UserError
from raycifar.models.resnet import build_model

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


WRAPPER_PREFIXES = {
    "module.": "saved from a DistributedDataParallel wrapper (save the unwrapped model's state dict)",
    "_orig_mod.": "saved from a torch.compile wrapper (save the unwrapped model's state dict)",
}


def read_config(folder: Path) -> TrialConfig:
    """The resolved trial config in ``folder/config.json``.

    Raises :class:`UserError` (one line: the file, and the line/column or the key) if it
    cannot be read, is not JSON, or is not a raycifar trial config.
    """
    path = folder / CONFIG_FILE
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror})") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected the JSON of a trial config)") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON (line {err.lineno}, column {err.colno})") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a JSON object (a trial config), got {type(raw).__name__}")
    try:
        return TrialConfig.model_validate(raw)
    except ValidationError as err:
        raise UserError(format_validation_error(str(path), err)) from None


def rename_legacy_keys(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``state`` with pre-timm SE keys renamed (``stages.0.1.se.reduce.weight`` ->
    ``stages.0.1.se.fc1.weight``, ``se.expand`` -> ``se.fc2``); other keys unchanged."""

    def renamed(key: str) -> str:
        return _LEGACY_SE_KEY.sub(lambda m: f"{m[1]}se.{LEGACY_SE_KEYS[m[2]]}.", key)

    return {renamed(key): value for key, value in state.items()}


def load_weights(folder: Path, device: torch.device | str = "cpu") -> dict[str, torch.Tensor]:
    """The state dict in ``folder/model.safetensors`` on ``device``, in today's key names
    (see :func:`rename_legacy_keys`).

    Raises :class:`UserError` naming the file if it cannot be read or is not safetensors.
    """
    path = folder / MODEL_FILE
    try:
        return rename_legacy_keys(load_file(str(path), device=str(device)))
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror or 'I/O error'})") from None
    except SafetensorError:
        raise UserError(
            f"{path}: not a readable safetensors file (its header is damaged or the file is truncated)"
        ) from None


def _shape(shape: torch.Size | tuple[int, ...]) -> str:
    return "x".join(str(side) for side in shape) or "scalar"


def _likely_cause(expected: dict[str, torch.Size], found: dict[str, torch.Tensor], config: TrialConfig) -> str:
    """Why ``found`` (the weights) does not fit ``expected`` (the model of ``config``), as far as can be told."""
    for prefix, cause in WRAPPER_PREFIXES.items():
        if found and all(key.startswith(prefix) for key in found):
            return f"keys start with {prefix!r}: {cause}"
    classes = config.model.num_classes
    for key, shape in expected.items():
        got = found.get(key)
        if got is not None and tuple(got.shape) != tuple(shape) and shape[0] == classes and got.shape[1:] == shape[1:]:
            return f"{CONFIG_FILE} says num_classes {classes} but the weights have {got.shape[0]} outputs ({key})"
    return f"the model in {CONFIG_FILE} is not the one these weights were saved from (was either file edited or swapped?)"


def check_weights(model: nn.Module, weights: dict[str, torch.Tensor], folder: Path, config: TrialConfig) -> None:
    """Refuse ``weights`` unless they hold exactly ``model``'s keys with the same shapes.

    Raises :class:`UserError`: the weights file, the first missing, unexpected or
    wrong-shaped key, how many keys differ, and the likely cause.
    """
    expected = {key: value.shape for key, value in model.state_dict().items()}
    missing = [key for key in expected if key not in weights]
    unexpected = [key for key in weights if key not in expected]
    reshaped = [key for key in expected if key in weights and tuple(weights[key].shape) != tuple(expected[key])]
    if not (missing or unexpected or reshaped):
        return
    if reshaped:
        key = reshaped[0]
        first = f"{key} is {_shape(weights[key].shape)}, the model needs {_shape(expected[key])}"
    elif unexpected:
        first = f"unexpected key {unexpected[0]!r}"
    else:
        first = f"missing key {missing[0]!r}"
    counts = ", ".join(
        f"{len(keys)} {kind}" for kind, keys in (("missing", missing), ("unexpected", unexpected), ("reshaped", reshaped)) if keys
    )
    raise UserError(
        f"{folder / MODEL_FILE}: does not fit the model in {CONFIG_FILE}: {first} ({counts} keys); "
        f"{_likely_cause(expected, weights, config)}"
    )


def load_model_files(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, TrialConfig]:
    """Rebuild a model (eval mode) and its config from files written by :func:`save_model_files`.

    Raises :class:`UserError` (see :func:`read_config`, :func:`load_weights`, :func:`check_weights`).
    """
    config = read_config(folder)
    model = build_model(config.model, device)
    weights = load_weights(folder, device)
    check_weights(model, weights, folder, config)
    model.load_state_dict(weights)
    return model.eval(), config


def rebuild(model_folder: Path) -> tuple[torch.nn.Module, TrialConfig]:
    """The model (eval mode, CPU) and config exported in ``model_folder``.

    Raises a one-line :class:`UserError` if a file is missing, damaged, or the weights do
    not fit the config (see :func:`raycifar.models.files.load_model_files`).
    """
    missing = [name for name in (MODEL_FILE, CONFIG_FILE) if not (model_folder / name).is_file()]
    if missing:
        raise UserError(f"{model_folder}: missing {' and '.join(missing)}; the entry's exported files are gone")
    return load_model_files(model_folder)
