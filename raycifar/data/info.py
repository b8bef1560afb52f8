"""``raycifar data info``: what a data folder holds, as the loaders will see it."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raycifar.data.official import ignored_files
from raycifar.data.readers import ImageSet, detect_source
from raycifar.data.splits import split_image_set

CHUNK = 4096  # images per step when summing squares in float64


def channel_stats(images: np.ndarray) -> tuple[list[float], list[float]]:
    """Per-channel mean and standard deviation of uint8 HWC images, on the 0..1 scale."""
    pixels = max(1, images.shape[0] * images.shape[1] * images.shape[2])
    total, squares = np.zeros(3), np.zeros(3)
    for start in range(0, len(images), CHUNK):
        chunk = images[start : start + CHUNK].reshape(-1, 3).astype(np.float64) / 255.0
        total += chunk.sum(axis=0)
        squares += np.square(chunk).sum(axis=0)
    mean = total / pixels
    std = np.sqrt(np.maximum(squares / pixels - mean**2, 0.0))
    return [round(float(v), 4) for v in mean], [round(float(v), 4) for v in std]


def _split_summary(images: ImageSet) -> dict:
    summary: dict = {"count": len(images), "labeled": images.labeled}
    if images.labeled:
        counts = np.bincount(images.labels, minlength=len(images.class_names))
        summary["per_class"] = {
            name: int(n) for name, n in zip(images.class_names, counts, strict=True)
        }
    return summary


def describe(
    data_dir: Path, dataset: str, label_mode: str, val_fraction: float, seed: int
) -> dict:
    """Format, counts per split (train/val as a sweep with this fraction and seed would split
    them) and per class, and the channel statistics of the training part (else the test part).

    ``ignored`` lists files of an official layout that look like batches but are not read
    (e.g. ``data_batch_1 copy``). Raises UserError for unreadable data, or a split that would
    leave validation empty."""
    source = detect_source(data_dir, dataset, label_mode)
    parts = {part: source.read(part) for part in source.parts()}
    splits: dict[str, ImageSet] = {}
    if "train" in parts:
        splits["train"], splits["val"] = split_image_set(
            parts["train"], val_fraction, seed, str(source.path)
        )
    if "test" in parts:
        splits["test"] = parts["test"]
    mean, std = channel_stats(parts.get("train", parts.get("test")).images)
    return {
        "data_dir": str(data_dir),
        "dataset": dataset,
        "label_mode": label_mode,
        "format": source.format,
        "source": str(source.path),
        "ignored": ignored_files(source),
        "val_fraction": val_fraction,
        "seed": seed,
        "splits": {name: _split_summary(images) for name, images in splits.items()},
        "channel_mean": mean,
        "channel_std": std,
        "stats_from": "train" if "train" in parts else "test",
    }
