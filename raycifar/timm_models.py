"""Register raycifar's model family with timm, under the ``raycifar_`` prefix.

After ``import raycifar.timm_models``, ``timm.create_model("raycifar_resnet18", num_classes=10)``
builds the same network as ``raycifar.models.create_model("resnet18")``; keyword arguments are
the :class:`~raycifar.config.ModelConfig` overrides (``drop_path=0.1``, ``se_width=16`` ...).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from timm.models import register_model

from raycifar.models import CifarResNet, create_model
from raycifar.variants import VARIANTS

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
