"""The named model registry (``resnet18``, ``seresnet56``, ``preact_resnet34`` ...) and model
names, without torch: ``raycifar model list``, ``space show`` and ``status`` read it instantly.

A :class:`Variant` only sets :class:`~raycifar.config.ModelConfig` fields; :mod:`raycifar.models`
builds the network and :func:`raycifar.models.create_model` takes a variant name.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from raycifar.config import ModelConfig
from raycifar.errors import UserError

IMAGENET_DEPTHS = {10: (1, 1, 1, 1), 14: (1, 1, 2, 2), 18: (2, 2, 2, 2), 26: (3, 3, 3, 3), 34: (3, 4, 6, 3)}
CIFAR_DEPTHS = {20: (3, 3, 3), 32: (5, 5, 5), 44: (7, 7, 7), 56: (9, 9, 9), 110: (18, 18, 18)}
SE_RATIO = {"imagenet": 16, "cifar": 8}


@dataclass(frozen=True)
class Variant:
    """A named model: its description and the :class:`ModelConfig` fields it sets."""

    name: str
    description: str
    fields: dict[str, Any]


def _variants() -> dict[str, Variant]:
    """ImageNet-style 4-stage ResNets (base width 64) and CIFAR-style 3-stage 6n+2 ResNets
    (widths 16/32/64), each plain, with SE, and pre-activation; and ``airbench``, the fast
    CIFAR trainers' plain 3-stage network of convgroup blocks (widths 64/128/256)."""
    bases = [
        (f"resnet{d}", f"ResNet-{d}, BasicBlocks {list(s)}, widths 64-512", "imagenet", {"depths": s, "base_width": 64})
        for d, s in IMAGENET_DEPTHS.items()
    ]
    bases.append(
        ("resnet50", "ResNet-50, Bottlenecks [3, 4, 6, 3], widths 64-512 (x4 out)", "imagenet",
         {"depths": (3, 4, 6, 3), "base_width": 64, "block": "bottleneck"})
    )  # fmt: skip
    bases += [
        (f"resnet{d}", f"CIFAR ResNet-{d} (6n+2), BasicBlocks {list(s)}, widths 16-64", "cifar",
         {"depths": s, "base_width": 16})
        for d, s in CIFAR_DEPTHS.items()
    ]  # fmt: skip
    variants = {}
    for name, description, family, fields in bases:
        se_fields = {**fields, "se_ratio": SE_RATIO[family]}
        variants[name] = Variant(name, description, fields)
        variants[f"se{name}"] = Variant(f"se{name}", f"{description}, SE ratio {SE_RATIO[family]}", se_fields)
        variants[f"preact_{name}"] = Variant(f"preact_{name}", f"pre-activation {description}", {**fields, "preact": True})
    variants["airbench"] = Variant(
        "airbench",
        "airbench-style plain net: 3 stages of (conv, max-pool, BN, GELU, conv, BN, GELU), widths 64-256, max-pool head",
        {"depths": (1, 1, 1), "base_width": 64, "block": "convgroup"},
    )
    return variants


VARIANTS = _variants()


def stage_widths(base_width: int, stages: int) -> tuple[int, ...]:
    """Stage widths that double every stage: ``base_width * 2**stage``."""
    return tuple(base_width * 2**stage for stage in range(stages))


def variant_config(name: str, num_classes: int = 10, **overrides: Any) -> ModelConfig:
    """The :class:`ModelConfig` of a registered variant, with ``overrides`` applied.

    ``base_width`` (an override or the variant's) sets ``widths`` unless ``widths`` is given;
    a non-zero ``se_width`` replaces the variant's ``se_ratio``.
    """
    if name not in VARIANTS:
        raise UserError(f"unknown model {name!r}; known models: {', '.join(VARIANTS)}")
    fields = {**VARIANTS[name].fields, **overrides, "num_classes": num_classes}
    if overrides.get("se_width") and "se_ratio" not in overrides:
        fields["se_ratio"] = 0
    base_width = fields.pop("base_width")
    fields.setdefault("widths", stage_widths(base_width, len(fields["depths"])))
    try:
        return ModelConfig(**fields)
    except ValidationError as err:
        raise UserError(f"model {name}: {err.errors()[0]['msg'].removeprefix('Value error, ')}") from None




def model_name(config: ModelConfig) -> str:
    """A short readable name, e.g. ``seresnet18-w32``, ``preact_resnet56-w16-sew12`` or
    ``airbench8-w48`` (convgroup blocks).

    Depth counts weighted layers (2 per BasicBlock or convgroup, 3 per Bottleneck, plus stem
    and head).
    """
    per_block = 3 if config.block == "bottleneck" else 2
    prefix = ("preact_" if config.preact else "") + ("se" if config.se_ratio or config.se_width else "")
    family = "airbench" if config.block == "convgroup" else "resnet"
    name = f"{prefix}{family}{2 + per_block * sum(config.depths)}-w{config.widths[0]}"
    if config.se_width:
        return f"{name}-sew{config.se_width}"
    return f"{name}-se{config.se_ratio}" if config.se_ratio else name
