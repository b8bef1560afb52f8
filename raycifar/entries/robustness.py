"""Robustness scores: a model's accuracy on a corrupted test set (``raycifar data corrupt``'s
folder or the official CIFAR-10-C), per corruption, per severity and per class, and the gap to
its clean accuracy on the same images.

Promotion decides whether to score (:func:`decide`): on request (``--robustness``), never
(``--no-robustness``), or by default when the predicted time (the clean test evaluation's
measured throughput x the set's image count) is under :data:`MAX_PREDICTED_S` seconds or
under :data:`MAX_SWEEP_SHARE` of the sweep's wall time. The figures go to the entry's
``robustness.json`` (:data:`ROBUSTNESS_FILE`) and three leaderboard columns. The evaluation
is the clean test set's (:func:`raycifar.entries.evaluate.predict_labelled`: CPU, float32),
without test-time augmentation.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from raycifar.config import TrialConfig
from raycifar.data.catalog import class_names
from raycifar.data.corrupted_reader import CorruptedSet, default_out, read_corrupted_set
from raycifar.data.corruption_table import BENCHMARK
from raycifar.data.readers import ImageSet, read_part
from raycifar.entries.evaluate import CPU, LabelledPredictions, predict_labelled
from raycifar.errors import UserError
from raycifar.results.leaderboard_schema import CORRUPTED_ACC, CORRUPTED_SET, ROBUSTNESS_FILE, ROBUSTNESS_GAP

__all__ = ["ROBUSTNESS_FILE"]  # spelled in the leaderboard schema, so that torch-free readers find the file
MAX_PREDICTED_S = 60.0  # score by default when the predicted time is under this ...
MAX_SWEEP_SHARE = 0.10  # ... or under this share of the sweep's wall time
DEFAULT_SEED = 0  # the default folder is the one `raycifar data corrupt` writes with --seed 0, no --limit
CHUNK = 1000  # images read from the memory map at a time

Tell = Callable[[str], None]


def default_folder(config: TrialConfig) -> Path:
    """Where ``raycifar data corrupt`` writes the whole corrupted test split of the config's
    data folder and dataset with seed 0: the corrupted set used when none is given."""
    return default_out(Path(config.data_dir), config.dataset, DEFAULT_SEED, None)


def find_corrupted(config: TrialConfig, given: Path | None, tell: Tell) -> CorruptedSet | None:
    """The corrupted set to score: ``given`` (checked; a bad one is a :class:`UserError`), else
    :func:`default_folder` when it exists (a bad one is told and skipped: it must not fail a
    promotion nobody asked to score), else None. Never generates one."""
    if given is not None:
        found = read_corrupted_set(given)
        check_matches(found, config)
        return found
    folder = default_folder(config)
    if not folder.is_dir():
        return None
    try:
        found = read_corrupted_set(folder)
        check_matches(found, config)
    except UserError as err:
        tell(f"robustness: not scoring the default corrupted set ({err})")
        return None
    return found


def check_matches(found: CorruptedSet, config: TrialConfig) -> None:
    """A :class:`UserError` when the set is of another dataset or label mode, or has a label
    the model has no class for."""
    if (found.dataset, found.label_mode) != (config.dataset, config.label_mode) and not found.official:
        raise UserError(
            f"{found.folder}: a corrupted {found.dataset} ({found.label_mode}) set, but the model is "
            f"{config.dataset} ({config.label_mode})"
        )
    classes = len(class_names(config.dataset, config.label_mode))
    if int(found.labels.max(initial=0)) >= classes:
        raise UserError(f"{found.folder / 'labels.npy'}: label {int(found.labels.max())} but the model has {classes} classes")


@dataclass(frozen=True)
class Decision:
    """Whether to score the corrupted set, and why (one line for the user)."""

    score: bool
    reason: str


def decide(
    choice: bool | None, found: CorruptedSet, clean_images: int, clean_seconds: float, sweep_wall_s: float | None
) -> Decision:
    """``choice`` True/False: as asked. None: score when the predicted time (``found.size``
    images at the clean evaluation's ``clean_images / clean_seconds``) is under
    :data:`MAX_PREDICTED_S` or under :data:`MAX_SWEEP_SHARE` of ``sweep_wall_s``."""
    predicted = found.size * clean_seconds / max(clean_images, 1)
    estimate = f"{found.size:,} images, predicted {predicted:.0f} s at the clean test set's {clean_images / max(clean_seconds, 1e-9):,.0f} images/s"
    if choice is True:
        return Decision(True, f"scoring {found.folder} as asked ({estimate})")
    if choice is False:
        return Decision(False, f"not scoring {found.folder} (--no-robustness)")
    share = None if not sweep_wall_s else MAX_SWEEP_SHARE * sweep_wall_s
    if predicted < MAX_PREDICTED_S or (share is not None and predicted < share):
        return Decision(True, f"scoring {found.folder} ({estimate})")
    limit = f"{MAX_PREDICTED_S:.0f} s" + (f" and {MAX_SWEEP_SHARE:.0%} of the sweep's {sweep_wall_s:.0f} s" if share else "")
    return Decision(
        False, f"not scoring {found.folder}: {estimate}, over {limit}; ask with --robustness, or later "
        "with raycifar evaluate ENTRY --corrupted DIR",
    )  # fmt: skip


def _digest(images: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()


def clean_reference(
    found: CorruptedSet, config: TrialConfig, data_dir: Path, clean: LabelledPredictions
) -> tuple[np.ndarray, str, bool]:
    """Which clean predictions the gap compares with: those of the images the set was made
    from (the first N test images, when ``metadata.json``'s SHA-256 says so, or all N of an
    official set of the test split's size and labels), else the whole test split; how that
    was known; and whether the set's images are the corrupted copies of the first N test images."""
    digest = (found.metadata.get("source") or {}).get("images_sha256")
    if digest and found.images <= clean.n:
        test = read_part(data_dir, "test", config.dataset, config.label_mode)
        if _digest(test.images[: found.images]) == digest:
            return np.arange(found.images), f"the {found.images} clean test images it was made from (SHA-256 matches)", True
    if found.official and found.images == clean.n and np.array_equal(found.labels, clean.labels):
        return np.arange(found.images), "the whole clean test split (same size and labels)", True
    return np.arange(clean.n), "the whole clean test split (the set's clean images are not known to be these)", False


def score_corrupted(
    model: nn.Module, config: TrialConfig, found: CorruptedSet, limit: int | None = None, device: torch.device | None = None
) -> dict:
    """Accuracy of ``model`` on every corruption and severity of ``found`` (on the first
    ``limit`` images of each, or all): ``by_corruption_severity``, ``by_corruption`` (every
    corruption), ``mean_over`` (the benchmark's 15 corruptions among them, as CIFAR-10-C's
    published means are, or every corruption when none is one of those), ``by_severity`` and
    ``corrupted_acc`` (the mean over the cells of ``mean_over``, equal weights),
    ``corrupted_acc_all`` (over every corruption), the corrupted per-class accuracy (over
    ``mean_over``), the images scored and the seconds it took."""
    names = class_names(config.dataset, config.label_mode)
    n = found.images if limit is None else min(limit, found.images)
    labels = found.labels[:n]
    per_class_correct = np.zeros(len(names), np.int64)
    per_class_total = np.zeros(len(names), np.int64)
    cells: dict[str, dict[str, float]] = {}
    mean_over = [c for c in found.corruptions if c in BENCHMARK] or list(found.corruptions)
    start = time.perf_counter()
    for corruption in found.corruptions:
        cells[corruption] = {}
        for severity in found.severities:
            correct, first = 0, 0
            for chunk in found.chunks(corruption, severity, CHUNK, n):
                chunk_labels = labels[first : first + len(chunk)]
                got = predict_labelled(model, ImageSet(chunk, chunk_labels, names), config.dataset, device=device or CPU).predicted
                hits = got == chunk_labels
                correct += int(hits.sum())
                if corruption in mean_over:
                    np.add.at(per_class_correct, chunk_labels[hits], 1)
                    np.add.at(per_class_total, chunk_labels, 1)
                first += len(chunk)
            cells[corruption][str(severity)] = correct / max(n, 1)
    seconds = time.perf_counter() - start
    by_corruption = {c: float(np.mean(list(s.values()))) for c, s in cells.items()}
    by_severity = {str(s): float(np.mean([cells[c][str(s)] for c in mean_over])) for s in found.severities}
    scored = len(found.corruptions) * len(found.severities) * n
    return {
        "corrupted_acc": float(np.mean([by_corruption[c] for c in mean_over])), "mean_over": mean_over,
        "corrupted_acc_all": float(np.mean(list(by_corruption.values()))), "by_corruption": by_corruption, "by_severity": by_severity, "by_corruption_severity": cells,
        "per_class_corrupted": [float(c / t) if t else None for c, t in zip(per_class_correct, per_class_total, strict=True)],
        "images_per_cell": n, "images_scored": scored, "seconds": round(seconds, 3),
        "images_per_s": round(scored / seconds, 1) if seconds > 0 else None,
    }  # fmt: skip


def robustness_figures(
    model: nn.Module, config: TrialConfig, found: CorruptedSet, data_dir: Path, clean: LabelledPredictions,
    device: torch.device | None = None,
) -> dict:
    """The content of ``robustness.json``: :func:`score_corrupted`'s figures, the set
    described, and the clean accuracy (overall and per class) on the reference images of
    :func:`clean_reference` with the gap ``clean_acc - corrupted_acc``."""
    scores = score_corrupted(model, config, found, device=device)
    indices, reference, matched = clean_reference(found, config, data_dir, clean)
    labels, hits = clean.labels[indices], clean.predicted[indices] == clean.labels[indices]
    names = class_names(config.dataset, config.label_mode)
    per_class_clean = [float(hits[labels == c].mean()) if (labels == c).any() else None for c in range(len(names))]
    clean_acc = float(hits.mean()) if len(hits) else None
    gap = None if clean_acc is None else clean_acc - scores["corrupted_acc"]
    return {
        "format_version": 1, "corrupted_set": found.describe(), "clean_acc": clean_acc, "clean_images": int(len(hits)),
        "clean_reference": reference, "clean_matched": matched, "gap": gap, **scores, "class_names": list(names),
        "per_class_clean": per_class_clean, "test_time_augmentation": "none",
    }  # fmt: skip


def row_fields(figures: dict | None) -> dict:
    """The leaderboard columns of ``robustness.json``'s figures (all None without them)."""
    if figures is None:
        return {CORRUPTED_ACC: None, ROBUSTNESS_GAP: None, CORRUPTED_SET: None}
    return {
        CORRUPTED_ACC: figures["corrupted_acc"], ROBUSTNESS_GAP: figures["gap"],
        CORRUPTED_SET: figures["corrupted_set"]["folder"],
    }  # fmt: skip


def save_figures(path: Path, figures: dict) -> None:
    """Write ``robustness.json`` (finite numbers only: valid JSON)."""
    path.write_text(json.dumps(figures, indent=2, allow_nan=False) + "\n", encoding="utf-8")


def most_hurt(figures: dict, top: int = 5) -> list[dict]:
    """The ``top`` classes whose accuracy falls most from clean to corrupted, most first:
    ``{"class", "clean", "corrupted", "drop"}``."""
    rows = [
        {"class": name, "clean": clean, "corrupted": corrupted, "drop": clean - corrupted}
        for name, clean, corrupted in zip(figures["class_names"], figures["per_class_clean"], figures["per_class_corrupted"], strict=True)
        if clean is not None and corrupted is not None
    ]  # fmt: skip
    return sorted(rows, key=lambda r: -r["drop"])[:top]
