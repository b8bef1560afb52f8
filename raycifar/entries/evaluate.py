"""Test evaluation of an exported model: the one place where the test set is scored.

It runs on the CPU in float32 so that promotion and ``raycifar evaluate`` agree exactly. It
keeps every image's prediction (:class:`LabelledPredictions`), which promotion saves as
``predictions.npz`` so that later reports rebuild confusion matrices without the data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raycifar.config import TestTimeAugmentation, TrialConfig
from raycifar.data import CATALOG, DeviceLoader, read_part
from raycifar.data.readers import ImageSet
from raycifar.errors import UserError
from raycifar.models.files import rebuild
from raycifar.train.scoring import EVAL_BATCH_SIZE, tta_views

PREDICTIONS_FILE = "predictions.npz"
CPU = torch.device("cpu")




@dataclass(frozen=True)
class LabelledPredictions:
    """A model's output on N labelled images, in file order.

    ``labels`` and ``predicted`` (argmax of the logits) are N int64 class indices,
    ``probs`` the N x C softmax probabilities (float32), ``tta_predicted`` the argmax of the
    test-time-augmented average logits (None without TTA), ``loss`` the mean cross-entropy
    (nats) and ``class_names`` the C class names.
    """

    labels: np.ndarray
    predicted: np.ndarray
    probs: np.ndarray
    tta_predicted: np.ndarray | None
    loss: float
    class_names: tuple[str, ...]

    @property
    def n(self) -> int:
        return len(self.labels)

    @property
    def correct(self) -> int:
        return int((self.predicted == self.labels).sum())

    @property
    def acc(self) -> float:
        return self.correct / max(self.n, 1)

    @property
    def acc_tta(self) -> float | None:
        if self.tta_predicted is None:
            return None
        return int((self.tta_predicted == self.labels).sum()) / max(self.n, 1)

    def save(self, path: Path) -> None:
        """Write ``labels``, ``predicted`` (int16), ``probs`` (float16), ``tta_predicted``
        (int16, only with TTA) and ``class_names`` to a compressed ``.npz`` file."""
        arrays = {
            "labels": self.labels.astype(np.int16),
            "predicted": self.predicted.astype(np.int16),
            "probs": self.probs.astype(np.float16),
            "class_names": np.array(self.class_names),
        }
        if self.tta_predicted is not None:
            arrays["tta_predicted"] = self.tta_predicted.astype(np.int16)
        with open(path, "wb") as stream:
            np.savez_compressed(stream, **arrays)




@torch.no_grad()
def predict_labelled(
    model: nn.Module, images: ImageSet, dataset: str, tta: TestTimeAugmentation = "none", device: torch.device = CPU
) -> LabelledPredictions:
    """Every image's prediction by ``model`` (float32, on ``device``: default the CPU), normalised
    as ``dataset``'s training was; with ``tta`` also the prediction of the view-averaged logits."""
    if not images.labeled:
        raise UserError("the test images are unlabeled; evaluation needs labels")
    stats = CATALOG[dataset]
    loader = DeviceLoader(images, EVAL_BATCH_SIZE, device, train=False, mean=stats.mean, std=stats.std)
    model.to(device).eval()
    loss_sum = torch.zeros((), dtype=torch.float64)
    probs, tta_predicted, labels_seen = [], [], []
    for batch, labels in loader:
        views = tta_views(batch, tta)
        logits = model(views[0]).float()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").cpu()
        probs.append(logits.softmax(1).cpu())
        labels_seen.append(labels.cpu())
        if tta != "none":
            averaged = sum((model(view).float() for view in views[1:]), logits) / len(views)
            tta_predicted.append(averaged.argmax(1).cpu())
    prob_array = torch.cat(probs).numpy() if probs else np.zeros((0, len(images.class_names)), np.float32)
    return LabelledPredictions(
        labels=torch.cat(labels_seen).numpy() if labels_seen else np.zeros(0, np.int64),
        predicted=prob_array.argmax(1).astype(np.int64),
        probs=prob_array,
        tta_predicted=torch.cat(tta_predicted).numpy() if tta != "none" and tta_predicted else None,
        loss=loss_sum.item() / max(len(images), 1),
        class_names=tuple(images.class_names),
    )


def test_predictions(model: nn.Module, config: TrialConfig, data_dir: Path, device: torch.device = CPU) -> LabelledPredictions:
    """:func:`predict_labelled` on the test part of ``data_dir``, read as ``config`` reads data, with
    the config's test-time augmentation."""
    test_set = read_part(data_dir, "test", config.dataset, config.label_mode)
    if not test_set.labeled:
        raise UserError(f"{data_dir}: the test images are unlabeled; evaluation needs labels")
    return predict_labelled(model, test_set, config.dataset, config.train.tta, device)


def scores_of(predictions: LabelledPredictions) -> dict:
    """``test_acc`` (fraction correct), ``test_loss`` (mean cross-entropy, nats), ``n``
    (images) and ``test_acc_tta`` (None when the config sets no ``train.tta``)."""
    return {
        "test_acc": predictions.acc,
        "test_loss": predictions.loss,
        "n": predictions.n,
        "test_acc_tta": predictions.acc_tta,
    }


def test_scores(model: nn.Module, config: TrialConfig, data_dir: Path, device: torch.device = CPU) -> dict:
    """:func:`scores_of` the test part of ``data_dir``."""
    return scores_of(test_predictions(model, config, data_dir, device))


def evaluate_on_test(model_folder: Path, data_dir: Path, device: torch.device = CPU) -> dict:
    """:func:`test_scores` of the model exported in ``model_folder`` (on ``device``)."""
    model, config = rebuild(model_folder)
    return test_scores(model, config, data_dir, device)
