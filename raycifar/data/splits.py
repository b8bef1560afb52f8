"""Splits: the official training part divided into train and validation, stratified and seeded.

Every loader gets its split from here, so a seed means the same validation images whichever
loader a trial uses (the FFCV files are written from these same splits).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raycifar.data.readers import ImageSet, read_part


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (train, val) keeping each class's share in both."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = round(fraction * len(members))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def split_image_set(
    full: ImageSet, val_fraction: float, split_seed: int
) -> tuple[ImageSet, ImageSet]:
    """``full`` divided into (train, val) by :func:`stratified_split`."""
    train_idx, val_idx = stratified_split(full.labels, val_fraction, split_seed)
    return full.subset(train_idx), full.subset(val_idx)


def train_val_split(
    data_dir: Path,
    val_fraction: float,
    split_seed: int,
    dataset: str = "cifar10",
    label_mode: str = "fine",
) -> tuple[ImageSet, ImageSet]:
    """The official training part split into (train, val); the test part stays untouched."""
    return split_image_set(
        read_part(data_dir, "train", dataset, label_mode), val_fraction, split_seed
    )
