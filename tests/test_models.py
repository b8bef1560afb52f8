"""The CIFAR ResNet builder and its exact parameter count."""

from __future__ import annotations

import torch
import torchvision

from raycifar.config import ModelConfig
from raycifar.models import build_model, count_params, model_name

RESNET18 = ModelConfig(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512))


def torchvision_cifar_resnet(factory, num_classes: int) -> torch.nn.Module:
    model = factory(num_classes=num_classes)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    return model


def test_resnet18_golden_count_matches_torchvision() -> None:
    assert count_params(RESNET18) == 11_173_962
    reference = torchvision_cifar_resnet(torchvision.models.resnet18, 10)
    assert sum(p.numel() for p in reference.parameters()) == 11_173_962


def test_count_matches_a_real_model_with_se_and_100_classes() -> None:
    config = ModelConfig(depths=(1, 2), widths=(16, 32), se_ratio=4, dropout=0.2, num_classes=100)
    real = sum(p.numel() for p in build_model(config).parameters())
    assert count_params(config) == real
    assert count_params(config) > count_params(config.model_copy(update={"se_ratio": 0}))


def test_forward_backward_on_a_cifar_batch() -> None:
    config = ModelConfig(depths=(1, 1, 1), widths=(8, 16, 32), se_ratio=4, dropout=0.1)
    model = build_model(config)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    logits.sum().backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())


def test_model_name_counts_weighted_layers() -> None:
    assert model_name(RESNET18) == "resnet18-w64"
    assert model_name(ModelConfig(depths=(1, 1, 1), widths=(16, 32, 64), se_ratio=8)) == "resnet8-w16-se8"
