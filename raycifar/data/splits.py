"""Splits: the official training part divided into train and validation, stratified and seeded.

Every loader gets its split from here, so a seed means the same validation images whichever
loader a trial uses (the FFCV files are written from these same splits), and ``raycifar data
info`` shows the counts a sweep with the same fraction and seed trains and selects on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from raycifar.data.readers import ImageSet, detect_source
from raycifar.errors import UserError


def _check_seed(seed: object) -> int:
    """``seed`` if it is an int >= 0 (what numpy's generators take); else a one-line error."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer):
        raise UserError(f"split seed {seed!r}: must be a whole number, 0 or more")
    if seed < 0:
        raise UserError(f"split seed {seed}: must be 0 or more")
    return int(seed)


def _smallest_fraction(largest_class: int) -> float | None:
    """The smallest val_fraction (in hundredths, below 0.5) that gives a class of
    ``largest_class`` images one validation image, as :func:`stratified_split` rounds; None if none does."""
    return next((k / 100 for k in range(1, 50) if round(k / 100 * largest_class) >= 1), None)


def _empty_split_message(name: str, labels: np.ndarray, fraction: float) -> str:
    """Why the split of ``labels`` left validation (or training) empty, and the fix."""
    if not len(labels):
        return f"{name}: no images to split into train and validation"
    largest = int(np.unique(labels, return_counts=True)[1].max())
    if round(fraction * largest) >= largest:
        return f"{name}: val_fraction {fraction:g} leaves no training images; use a smaller val_fraction"
    smallest = _smallest_fraction(largest)
    fix = (
        f"use more images or a val_fraction of {smallest:g} or more"
        if smallest is not None
        else "use at least 2 images of a class"
    )
    return (
        f"{name}: val_fraction {fraction:g} leaves 0 of its {len(labels)} images for validation "
        f"(largest class: {largest} images); {fix} (--val-fraction, or val_fraction: in the space file)"
    )


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int, name: str = "the training images"
) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (train, val) keeping each class's share in both.

    Each class gives ``round(fraction * its count)`` images to validation. ``seed`` must be an
    int >= 0 and ``fraction`` in (0, 1). Raises UserError (naming ``name``, the counts and the fix)
    if validation or training would get no image at all: a sweep must not select on nothing.
    """
    if not 0 < fraction < 1:
        raise UserError(f"{name}: val_fraction {fraction:g} must be above 0 and below 1")
    rng = np.random.default_rng(_check_seed(seed))
    train, val = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = round(fraction * len(members))
        val.append(members[:n_val])
        train.append(members[n_val:])
    train_idx, val_idx = np.sort(np.concatenate(train)), np.sort(np.concatenate(val))
    if not len(val_idx) or not len(train_idx):
        raise UserError(_empty_split_message(name, labels, fraction))
    return train_idx, val_idx


def split_image_set(
    full: ImageSet, val_fraction: float, split_seed: int, name: str = "the training images"
) -> tuple[ImageSet, ImageSet]:
    """``full`` divided into (train, val) by :func:`stratified_split` (errors name ``name``)."""
    train_idx, val_idx = stratified_split(full.labels, val_fraction, split_seed, name)
    return full.subset(train_idx), full.subset(val_idx)


def train_val_split(
    data_dir: Path,
    val_fraction: float,
    split_seed: int,
    dataset: str = "cifar10",
    label_mode: str = "fine",
) -> tuple[ImageSet, ImageSet]:
    """The official training part split into (train, val); the test part stays untouched."""
    source = detect_source(data_dir, dataset, label_mode)
    return split_image_set(source.read("train"), val_fraction, split_seed, str(source.path))
