"""Register raycifar's model family with timm, under the ``raycifar_`` prefix.

After ``import raycifar.timm_models``, ``timm.create_model("raycifar_resnet18", num_classes=10)``
builds the same network as ``raycifar.models.create_model("resnet18")``; keyword arguments are
the :class:`~raycifar.config.ModelConfig` overrides (``drop_path=0.1``, ``se_width=16`` ...).

A promoted leaderboard entry (any searched architecture, with its trained weights) loads
through timm as ``raycifar_entry``: ``timm.create_model("raycifar_entry", pretrained=True,
entry="<entry id or folder>", results_dir="raycifar_results")``, the same model as
:func:`raycifar.load_model`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import register_model

from raycifar.models.registry import VARIANTS
from raycifar.models.resnet import CifarResNet, create_model

PREFIX = "raycifar_"
TIMM_ONLY_ARGUMENTS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir", "in_chans")


def _entrypoint(variant: str) -> Callable[..., CifarResNet]:
    def build(pretrained: bool = False, num_classes: int = 10, **kwargs: Any) -> CifarResNet:
        if pretrained:
            raise ValueError(f"{PREFIX}{variant} has no pretrained weights: train it with raycifar")
        overrides = {k: v for k, v in kwargs.items() if k not in TIMM_ONLY_ARGUMENTS}
        return create_model(variant, num_classes=num_classes, **overrides)

    build.__name__ = build.__qualname__ = f"{PREFIX}{variant}"
    build.__doc__ = VARIANTS[variant].description
    return build


for _variant in VARIANTS:
    register_model(_entrypoint(_variant))


@register_model
def raycifar_entry(
    pretrained: bool = True, entry: str | None = None, results_dir: str = "raycifar_results", **kwargs: Any
) -> CifarResNet:
    """A promoted raycifar leaderboard entry with its trained weights (eval mode, CPU)."""
    from raycifar.entries.load import load_model

    if entry is None:
        raise ValueError("raycifar_entry needs entry=<entry id or folder> (see raycifar leaderboard)")
    unknown = sorted(k for k in kwargs if k not in TIMM_ONLY_ARGUMENTS)
    if unknown:
        raise ValueError(f"raycifar_entry takes entry= and results_dir=, not {', '.join(unknown)}")
    return load_model(entry, results_dir)
