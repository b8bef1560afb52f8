"""CIFAR ResNets from one builder: blocks, the block plan, the model, and the named registry.

A :class:`~raycifar.config.ModelConfig` fully describes a network. :func:`block_plan` turns
it into one :class:`BlockSpec` per residual block, and :class:`CifarResNet` is nothing but
``stem -> blocks -> tail -> head``, each built by a ``make_*`` function of this module.
:mod:`raycifar.models.budget` counts parameters and MACs by building the same parts, so the
counts are exact by construction. Squeeze-and-excitation and stochastic depth are timm's
layers (:class:`timm.layers.SEModule`, :class:`timm.layers.DropPath`), configured to the
plain SE (1x1 conv with bias, ReLU, 1x1 conv with bias, sigmoid) and per-sample drop scaled
by ``1 / (1 - rate)``. timm (and the torchvision it loads) takes ~1.5 s to import, so it is
imported only when a model has SE or stochastic depth: plain models build without it.

``block: convgroup`` swaps the residual blocks for the plain block of the fast CIFAR trainers
(airbench, hlb-cifar10): conv, 2x2 max-pool, BN, GELU, conv, BN, GELU, with a max-pooling
head; the ``airbench`` variant is a 3-stage network of them.

Named variants (``resnet18``, ``seresnet56``, ``preact_resnet34``, ``airbench`` ...) live in
:data:`raycifar.models.registry.VARIANTS`; :func:`create_model` builds one with overrides.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from raycifar.config import ModelConfig
from raycifar.models.registry import variant_config

if TYPE_CHECKING:
    from timm.layers import SEModule

BOTTLENECK_EXPANSION = 4


@dataclass(frozen=True)
class BlockSpec:
    """Everything that defines one residual block."""

    in_channels: int
    width: int
    stride: int
    bottleneck: bool = False
    convgroup: bool = False
    preact: bool = False
    se_ratio: int = 0
    se_width: int = 0
    dropout: float = 0.0
    drop_path: float = 0.0

    @property
    def out_channels(self) -> int:
        """Channels the block outputs (``4 * width`` for a bottleneck)."""
        return self.width * BOTTLENECK_EXPANSION if self.bottleneck else self.width

    @property
    def se_hidden(self) -> int:
        """Hidden width of the block's squeeze-and-excitation; 0 when SE is off."""
        if self.se_width:
            return self.se_width
        return max(1, self.out_channels // self.se_ratio) if self.se_ratio else 0


def make_se(channels: int, hidden: int) -> SEModule:
    """Squeeze-and-excitation on ``channels``: global average pool, 1x1 conv (with bias) to
    ``hidden`` units, ReLU, 1x1 conv (with bias) back to ``channels``, sigmoid gate.

    timm's :class:`~timm.layers.SEModule` with every option pinned: ``hidden`` is used as
    given (no ``rd_divisor`` rounding), no norm layer, no max-pool; weights ``fc1``/``fc2``.
    """
    from timm.layers import SEModule

    return SEModule(
        channels, rd_channels=hidden, bias=True, act_layer=nn.ReLU, norm_layer=None,
        gate_layer="sigmoid", add_maxpool=False,
    )  # fmt: skip


def make_drop_path(rate: float) -> nn.Module:
    """timm's per-sample stochastic depth with drop probability ``rate``, scaled by ``1 / (1 - rate)``."""
    from timm.layers import DropPath

    return DropPath(rate, scale_by_keep=True)


def _conv(in_channels: int, out_channels: int, kernel: int, stride: int = 1) -> nn.Conv2d:
    return nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, bias=False)


class _Residual(nn.Module):
    """What every block shares: SE, dropout, stochastic depth and the shortcut."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        out = spec.out_channels
        self.se = make_se(out, spec.se_hidden) if spec.se_hidden else nn.Identity()
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout else nn.Identity()
        self.drop_path = make_drop_path(spec.drop_path) if spec.drop_path else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if spec.stride != 1 or spec.in_channels != out:
            projection = _conv(spec.in_channels, out, 1, spec.stride)
            self.shortcut = projection if spec.preact else nn.Sequential(projection, nn.BatchNorm2d(out))


class BasicBlock(_Residual):
    """Two 3x3 convs (dropout between them); SE at the end of the residual branch, before the sum."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec)
        self.conv1 = _conv(spec.in_channels, spec.width, 3, spec.stride)
        self.bn1 = nn.BatchNorm2d(spec.width)
        self.conv2 = _conv(spec.width, spec.width, 3)
        self.bn2 = nn.BatchNorm2d(spec.width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(torch.relu(self.bn1(self.conv1(x))))
        out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(self.drop_path(out) + self.shortcut(x))


class Bottleneck(_Residual):
    """1x1 reduce, 3x3 (strided), 1x1 expand to ``4 * width``; SE before the sum."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec)
        self.conv1 = _conv(spec.in_channels, spec.width, 1)
        self.bn1 = nn.BatchNorm2d(spec.width)
        self.conv2 = _conv(spec.width, spec.width, 3, spec.stride)
        self.bn2 = nn.BatchNorm2d(spec.width)
        self.conv3 = _conv(spec.width, spec.out_channels, 1)
        self.bn3 = nn.BatchNorm2d(spec.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.dropout(torch.relu(self.bn2(self.conv2(out))))
        out = self.se(self.bn3(self.conv3(out)))
        return torch.relu(self.drop_path(out) + self.shortcut(x))


class PreActBasicBlock(_Residual):
    """Pre-activation BasicBlock (BN-ReLU-conv twice); the projection sees the activated input."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec)
        self.bn1 = nn.BatchNorm2d(spec.in_channels)
        self.conv1 = _conv(spec.in_channels, spec.width, 3, spec.stride)
        self.bn2 = nn.BatchNorm2d(spec.width)
        self.conv2 = _conv(spec.width, spec.width, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(activated)
        out = self.dropout(torch.relu(self.bn2(self.conv1(activated))))
        return self.drop_path(self.se(self.conv2(out))) + shortcut


class PreActBottleneck(_Residual):
    """Pre-activation Bottleneck (BN-ReLU-conv three times)."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__(spec)
        self.bn1 = nn.BatchNorm2d(spec.in_channels)
        self.conv1 = _conv(spec.in_channels, spec.width, 1)
        self.bn2 = nn.BatchNorm2d(spec.width)
        self.conv2 = _conv(spec.width, spec.width, 3, spec.stride)
        self.bn3 = nn.BatchNorm2d(spec.width)
        self.conv3 = _conv(spec.width, spec.out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        activated = torch.relu(self.bn1(x))
        shortcut = x if isinstance(self.shortcut, nn.Identity) else self.shortcut(activated)
        out = self.conv1(activated)
        out = self.dropout(torch.relu(self.bn3(self.conv2(torch.relu(self.bn2(out))))))
        return self.drop_path(self.se(self.conv3(out))) + shortcut


class ConvGroup(nn.Module):
    """The fast CIFAR trainers' block, without a shortcut: 3x3 conv to ``width``, a 2x2
    max-pool when ``stride`` is 2 (halving H and W, rounding down), BN, GELU, dropout, 3x3
    conv, BN, GELU, then SE when set. Input N x C x H x W, output N x width x H' x W'."""

    def __init__(self, spec: BlockSpec) -> None:
        super().__init__()
        self.conv1 = _conv(spec.in_channels, spec.width, 3)
        self.pool = nn.MaxPool2d(2) if spec.stride == 2 else nn.Identity()
        self.bn1 = nn.BatchNorm2d(spec.width)
        self.dropout = nn.Dropout(spec.dropout) if spec.dropout else nn.Identity()
        self.conv2 = _conv(spec.width, spec.width, 3)
        self.bn2 = nn.BatchNorm2d(spec.width)
        self.se = make_se(spec.width, spec.se_hidden) if spec.se_hidden else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.dropout(nn.functional.gelu(self.bn1(self.pool(self.conv1(x)))))
        return self.se(nn.functional.gelu(self.bn2(self.conv2(out))))


BLOCKS: dict[tuple[bool, bool], type[_Residual]] = {
    (False, False): BasicBlock,
    (True, False): Bottleneck,
    (False, True): PreActBasicBlock,
    (True, True): PreActBottleneck,
}


def block_plan(config: ModelConfig) -> list[list[BlockSpec]]:
    """One :class:`BlockSpec` per block, grouped by stage.

    Every stage after the first halves the resolution in its first block (every convgroup
    stage, the first included); the stochastic-depth rate grows linearly from 0 to
    ``drop_path`` over all blocks.
    """
    total = sum(config.depths)
    convgroup = config.block == "convgroup"
    stages, in_channels, index = [], config.widths[0], 0
    for stage, (width, depth) in enumerate(zip(config.widths, config.depths, strict=True)):
        specs = []
        for block in range(depth):
            spec = BlockSpec(
                in_channels=in_channels,
                width=width,
                stride=2 if block == 0 and (stage > 0 or convgroup) else 1,
                bottleneck=config.block == "bottleneck",
                convgroup=convgroup,
                preact=config.preact,
                se_ratio=config.se_ratio,
                se_width=config.se_width,
                dropout=config.block_dropout,
                drop_path=config.drop_path * index / max(total - 1, 1),
            )
            specs.append(spec)
            in_channels, index = spec.out_channels, index + 1
        stages.append(specs)
    return stages


def make_block(spec: BlockSpec) -> nn.Module:
    """The block described by ``spec``: a convgroup or a residual block."""
    if spec.convgroup:
        return ConvGroup(spec)
    return BLOCKS[spec.bottleneck, spec.preact](spec)


def make_stem(config: ModelConfig) -> nn.Sequential:
    """3x3 stride-1 conv (CIFAR) or 7x7 stride-2 conv + 3x3 max-pool (ImageNet).

    A pre-activation network leaves BN-ReLU to its first block (CIFAR stem only); a
    convgroup network's CIFAR stem activates with GELU, as its blocks do.
    """
    width = config.widths[0]
    if config.stem == "imagenet":
        return nn.Sequential(
            nn.Conv2d(3, width, 7, 2, 3, bias=False), nn.BatchNorm2d(width),
            nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, 1),
        )  # fmt: skip
    if config.preact:
        return nn.Sequential(_conv(3, width, 3))
    activation = nn.GELU() if config.block == "convgroup" else nn.ReLU(inplace=True)
    return nn.Sequential(_conv(3, width, 3), nn.BatchNorm2d(width), activation)


def feature_channels(config: ModelConfig) -> int:
    """Channels out of the last stage."""
    last = config.widths[-1]
    return last * BOTTLENECK_EXPANSION if config.block == "bottleneck" else last


def make_tail(config: ModelConfig) -> nn.Module:
    """After the last stage: BN-ReLU for a pre-activation network, else nothing."""
    if config.preact:
        return nn.Sequential(nn.BatchNorm2d(feature_channels(config)), nn.ReLU(inplace=True))
    return nn.Identity()


class Head(nn.Module):
    """Global average pool (global max pool after convgroup stages, as in the fast CIFAR
    trainers), dropout, then one linear layer or a two-layer MLP."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        features = feature_channels(config)
        self.pool = nn.AdaptiveMaxPool2d(1) if config.block == "convgroup" else nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.hidden = nn.Linear(features, config.head_hidden) if config.head_hidden else None
        self.fc = nn.Linear(config.head_hidden or features, config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.dropout(self.pool(x).flatten(1))
        if self.hidden is not None:
            features = self.dropout(torch.relu(self.hidden(features)))
        return self.fc(features)


def make_stage(specs: list[BlockSpec], pool_after: bool) -> nn.Sequential:
    """One stage's blocks, optionally followed by a 2x2 stride-1 max-pool."""
    layers = [make_block(spec) for spec in specs]
    if pool_after:
        layers.append(nn.MaxPool2d(2, 1))
    return nn.Sequential(*layers)


class CifarResNet(nn.Module):
    """``stem -> stages -> tail -> head``, all built from one :class:`ModelConfig`."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.stem = make_stem(config)
        self.stages = nn.Sequential(*(make_stage(s, config.pool_after_stage) for s in block_plan(config)))
        self.tail = make_tail(config)
        self.head = Head(config)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.tail(self.stages(self.stem(x))))


def build_model(config: ModelConfig, device: torch.device | str = "cpu") -> CifarResNet:
    """Build the model described by ``config`` on ``device`` (``"meta"`` allocates nothing)."""
    with torch.device(device):
        return CifarResNet(config)


def create_model(name: str, num_classes: int = 10, device: torch.device | str = "cpu", **overrides: Any) -> CifarResNet:
    """Build a registered variant, e.g. ``create_model("seresnet18", num_classes=100, drop_path=0.1)``."""
    return build_model(variant_config(name, num_classes, **overrides), device)
