"""Numbers computed from per-image predictions: a confidence interval for an accuracy, the
confusion matrix, the class pairs a model confuses most, and an entry's saved predictions.
NumPy only (no torch)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raycifar.errors import UserError

Z_95 = 1.959963984540054  # the two-sided 95% quantile of the standard normal distribution


def wilson_interval(correct: int, total: int, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``correct / total`` (95% by default).

    Unlike the normal approximation it stays within [0, 1] and is sensible near 0 and 1.
    ``(nan, nan)`` when ``total`` is 0.
    """
    if total <= 0:
        return (math.nan, math.nan)
    p = correct / total
    z2 = z * z
    centre = (p + z2 / (2 * total)) / (1 + z2 / total)
    half = z / (1 + z2 / total) * math.sqrt(p * (1 - p) / total + z2 / (4 * total * total))
    return (max(0.0, centre - half), min(1.0, centre + half))


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray, classes: int) -> np.ndarray:
    """``classes x classes`` int64 counts: row = true class, column = predicted class."""
    matrix = np.zeros((classes, classes), dtype=np.int64)
    np.add.at(matrix, (labels.astype(np.int64), predicted.astype(np.int64)), 1)
    return matrix


@dataclass(frozen=True)
class Confusion:
    """Images of class ``true`` predicted as ``predicted``: ``count`` of the class's ``total``."""

    true: str
    predicted: str
    count: int
    total: int

    @property
    def rate(self) -> float:
        """The fraction of the true class's images that went to ``predicted``."""
        return self.count / self.total if self.total else 0.0


def most_confused(matrix: np.ndarray, class_names: tuple[str, ...], top: int = 3) -> list[Confusion]:
    """The ``top`` off-diagonal cells with the highest rate (count / images of the true
    class), highest first; ties go to the larger count, then to the lower class indices.
    Cells with no image are left out."""
    totals = matrix.sum(axis=1)
    cells = [
        (-matrix[t, p] / totals[t], -matrix[t, p], t, p)
        for t in range(len(matrix))
        for p in range(len(matrix))
        if t != p and matrix[t, p] > 0
    ]
    cells.sort()
    return [
        Confusion(class_names[t], class_names[p], int(matrix[t, p]), int(totals[t])) for _, _, t, p in cells[:top]
    ]


def load_predictions(path: Path) -> dict[str, np.ndarray]:
    """The arrays of an entry's ``predictions.npz`` (written by
    :meth:`raycifar.entries.evaluate.Predictions.save`); a :class:`UserError` naming the file
    when it cannot be read."""
    try:
        with np.load(path, allow_pickle=False) as saved:
            return {name: saved[name] for name in saved.files}
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: cannot read the entry's predictions ({err})") from None
