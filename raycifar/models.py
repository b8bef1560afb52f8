"""CIFAR ResNets: 3x3 stem without max-pool, BasicBlock stages, optional squeeze-and-excitation."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from raycifar.config import ModelConfig, TrialConfig

MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


class SqueezeExcite(nn.Module):
    """Channel attention: global pool, bottleneck MLP, sigmoid gate."""

    def __init__(self, channels: int, reduction: int) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, hidden, 1)
        self.expand = nn.Conv2d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = self.expand(torch.relu(self.reduce(self.pool(x))))
        return x * torch.sigmoid(gate)


class BasicBlock(nn.Module):
    """Two 3x3 convs; SE (when on) at the end of the residual branch, before the sum."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, se_ratio: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SqueezeExcite(out_channels, se_ratio) if se_ratio else nn.Identity()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        return torch.relu(out + self.shortcut(x))


def make_stages(widths: tuple[int, ...], depths: tuple[int, ...], se_ratio: int) -> nn.Sequential:
    """Stages of BasicBlocks; every stage after the first halves the resolution."""
    stages, in_channels = [], widths[0]
    for index, (width, depth) in enumerate(zip(widths, depths, strict=True)):
        blocks = []
        for block in range(depth):
            stride = 2 if index > 0 and block == 0 else 1
            blocks.append(BasicBlock(in_channels, width, stride, se_ratio))
            in_channels = width
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


class CifarResNet(nn.Module):
    """3x3 stride-1 stem, no max-pool, BasicBlock stages, global pool, dropout, linear head."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, config.widths[0], 3, 1, 1, bias=False),
            nn.BatchNorm2d(config.widths[0]),
            nn.ReLU(inplace=True),
        )
        self.stages = make_stages(config.widths, config.depths, config.se_ratio)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(config.dropout)
        self.fc = nn.Linear(config.widths[-1], config.num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = self.pool(self.stages(self.stem(x))).flatten(1)
        return self.fc(self.dropout(features))


def build_model(config: ModelConfig, device: torch.device | str = "cpu") -> CifarResNet:
    """Build the model described by ``config`` on ``device`` (``"meta"`` allocates nothing)."""
    with torch.device(device):
        return CifarResNet(config)


def count_params(config: ModelConfig) -> int:
    """Exact number of parameters (sum of ``numel``), counted on the meta device."""
    return sum(p.numel() for p in build_model(config, "meta").parameters())


def model_name(config: ModelConfig) -> str:
    """A short readable name, e.g. ``resnet18-w32-se8`` (depth counts weighted layers)."""
    depth = 2 + 2 * sum(config.depths)
    name = f"resnet{depth}-w{config.widths[0]}"
    return f"{name}-se{config.se_ratio}" if config.se_ratio else name


def save_model_files(folder: Path, model: nn.Module, config: TrialConfig) -> None:
    """Write the weights (safetensors) and the resolved config (JSON) into ``folder``."""
    weights = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    save_file(weights, str(folder / MODEL_FILE))
    (folder / CONFIG_FILE).write_text(json.dumps(config.model_dump(mode="json"), indent=2))


def load_model_files(folder: Path, device: torch.device | str = "cpu") -> tuple[nn.Module, TrialConfig]:
    """Rebuild a model and its config from files written by :func:`save_model_files`."""
    config = TrialConfig.model_validate_json((folder / CONFIG_FILE).read_text())
    model = build_model(config.model, device)
    model.load_state_dict(load_file(str(folder / MODEL_FILE), device=str(device)))
    return model, config


def unwrap(model: nn.Module) -> nn.Module:
    """The bare model inside a DistributedDataParallel wrapper (or the model itself)."""
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
