"""Evaluation: loss and accuracy over an un-augmented loader, and test-time augmentation
(the views whose logits are averaged)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from raycifar.config import TestTimeAugmentation
from raycifar.data.loaders import Loader
from raycifar.train.runtime import FLOAT32_CPU, Runtime

EVAL_BATCH_SIZE = 500


def tta_views(images: torch.Tensor, tta: TestTimeAugmentation) -> list[torch.Tensor]:
    """The views test-time augmentation averages: the batch itself; with ``flip`` its mirror
    image; with ``flip_translate`` also both shifted one pixel up-left and down-right
    (reflect padding), each with its mirror image."""
    views = [images]
    if tta == "none":
        return views
    views.append(images.flip(-1))
    if tta == "flip_translate":
        padded = nn.functional.pad(images, (1, 1, 1, 1), mode="reflect")
        for shifted in (padded[..., :-2, :-2], padded[..., 2:, 2:]):
            views += [shifted, shifted.flip(-1)]
    return views


@dataclass(frozen=True)
class Scores:
    """Evaluation results: mean cross-entropy, accuracy, number of images, and the
    accuracy of the view-averaged logits (None without test-time augmentation)."""

    loss: float
    acc: float
    count: int
    acc_tta: float | None = None


@torch.no_grad()
def score(
    model: nn.Module, loader: Loader, tta: TestTimeAugmentation = "none", runtime: Runtime = FLOAT32_CPU
) -> Scores:
    """Loss and accuracy over an un-augmented loader, plus the TTA accuracy when ``tta`` is on."""
    model.eval()
    loss_sum = torch.zeros((), dtype=torch.float64, device=loader.device)
    correct = torch.zeros((), dtype=torch.int64, device=loader.device)
    correct_tta = torch.zeros((), dtype=torch.int64, device=loader.device)
    count = 0
    for images, labels in loader:
        views = tta_views(runtime.prepare(images), tta)
        with runtime.autocast():
            logits = model(views[0]).float()
            averaged = sum((model(view).float() for view in views[1:]), logits) / len(views)
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum")
        correct += (logits.argmax(1) == labels).sum()
        correct_tta += (averaged.argmax(1) == labels).sum()
        count += len(labels)
    seen = max(count, 1)
    acc_tta = None if tta == "none" else correct_tta.item() / seen
    return Scores(loss_sum.item() / seen, correct.item() / seen, count, acc_tta)


def loss_and_accuracy(model: nn.Module, loader: Loader) -> tuple[float, float, int]:
    """Mean cross-entropy, accuracy and number of images over an un-augmented loader, in float32."""
    scores = score(model, loader)
    return scores.loss, scores.acc, scores.count
