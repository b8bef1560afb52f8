"""References computed independently of the code under test, shared by several test
modules: synthetic images, the CIFAR-10 normalization done directly with torch, and an
exported model's accuracy counted by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from cifar_files import rows_to_hwc, synthetic_images

from raycifar.data import CATALOG, ImageSet
from raycifar.models.files import load_model_files

STATS = CATALOG["cifar10"]


def image_set(n: int, seed: int = 0) -> ImageSet:
    """``n`` learnable synthetic images (uint8 NHWC) with their labels."""
    data, labels = synthetic_images(n, np.random.default_rng(seed))
    return ImageSet(rows_to_hwc(data).copy(), np.array(labels))


def _stats() -> tuple[torch.Tensor, torch.Tensor]:
    return torch.tensor(STATS.mean).view(1, 3, 1, 1), torch.tensor(STATS.std).view(1, 3, 1, 1)


def normalized(images: np.ndarray) -> torch.Tensor:
    """The reference normalization of uint8 NHWC images: float32 NCHW, CIFAR-10 mean/std."""
    x = torch.from_numpy(images).permute(0, 3, 1, 2).double() / 255
    mean, std = _stats()
    return ((x - mean) / std).float()


def raw(batch: torch.Tensor) -> np.ndarray:
    """Normalized NCHW back to uint8 NHWC (the inverse of :func:`normalized`)."""
    mean, std = _stats()
    return ((batch.double() * std + mean) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()


def hand_counted_accuracy(model_folder: Path, data: ImageSet) -> float:
    """Accuracy of the model exported in ``model_folder`` on ``data`` (CIFAR-10 statistics),
    counted by hand: the fraction of images whose argmax logit is their label."""
    model, _ = load_model_files(model_folder)
    with torch.no_grad():
        predicted = model.eval()(normalized(data.images)).argmax(1).numpy()
    return int((predicted == data.labels).sum()) / len(data)
