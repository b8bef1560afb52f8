"""The loaders a trial asks for (``loader:`` in the space file, or ``--loader``).

Every loader yields ``(images, labels)`` on the training device: normalized float32
N x 3 x 32 x 32 images and int64 labels; each has ``set_epoch``, ``len`` and ``device``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol

import numpy as np
import torch

from raycifar.config import DEFAULT_SELECT
from raycifar.data.augmix import AugMixSettings
from raycifar.data.catalog import CATALOG
from raycifar.data.device_loader import DeviceLoader
from raycifar.data.readers import ImageSet
from raycifar.data.shifted_val import kept_twin
from raycifar.data.splits import train_val_split
from raycifar.errors import UserError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from raycifar.config import TrialConfig

class Loader(Protocol):
    """What the training loop needs from a loader."""

    device: torch.device

    def set_epoch(self, epoch: int) -> None: ...

    def __len__(self) -> int: ...

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


class TrialLoaders(NamedTuple):
    """A trial's loaders: ``train`` (sharded by rank), ``val`` (whole) and ``shift``, the
    validation split's corrupted twin when ``select`` scores it (else None)."""

    train: Loader
    val: Loader
    shift: Loader | None


def union(first: ImageSet, second: ImageSet) -> ImageSet:
    """The images of ``first`` followed by those of ``second`` (same class names)."""
    return ImageSet(
        np.concatenate([first.images, second.images]), np.concatenate([first.labels, second.labels]), first.class_names
    )


# Decoded (train, val) splits kept in this process, by everything that determines them
# (see _split_key); the in-trial path runs many trials in one process on the same data.
_SPLITS: dict[tuple, tuple[ImageSet, ImageSet]] = {}
SPLITS_KEPT = 2


def _split_key(config: TrialConfig, fingerprint: str) -> tuple:
    return (fingerprint, config.data_dir, config.dataset, config.label_mode, config.val_fraction, config.split_seed, config.train_on)


def _split(config: TrialConfig, fingerprint: str | None) -> tuple[ImageSet, ImageSet]:
    """The trial's (train, val) images: read and split, or the split kept in this process for
    the same ``fingerprint`` (:mod:`raycifar.data.fingerprint`; None: never kept)."""
    key = _split_key(config, fingerprint) if fingerprint else None
    if key is not None and key in _SPLITS:
        return _SPLITS[key]
    train_set, val_set = train_val_split(
        Path(config.data_dir), config.val_fraction, config.split_seed, config.dataset, config.label_mode
    )
    if config.train_on == "train+val":
        train_set = union(train_set, val_set)
    if key is not None:
        while len(_SPLITS) >= SPLITS_KEPT:
            _SPLITS.pop(next(iter(_SPLITS)))
        _SPLITS[key] = (train_set, val_set)
    return train_set, val_set


def _shift_loader(
    config: TrialConfig, val_set: ImageSet, device: torch.device, eval_batch_size: int, fingerprint: str | None
) -> Loader | None:
    """The validation split's corrupted twin (:mod:`raycifar.data.shifted_val`) as an evaluation
    loader, when ``config.select`` scores it (``val_acc_shift``, ``mean``); else None. The twin
    is kept in this process beside the split for the same ``fingerprint``."""
    if config.select == DEFAULT_SELECT:
        return None
    stats = CATALOG[config.dataset]
    twin = kept_twin(val_set, config.split_seed, _split_key(config, fingerprint) if fingerprint else None)
    return DeviceLoader(twin, eval_batch_size, device, False, mean=stats.mean, std=stats.std)


def make_loaders(
    config: TrialConfig,
    device: torch.device,
    rank: int,
    world_size: int,
    workers: int,
    eval_batch_size: int,
    fingerprint: str | None = None,
) -> TrialLoaders:
    """The loaders of ``config.loader`` for this worker: train sharded by rank, val whole, and
    the shifted twin of val when ``config.select`` scores it. The data is read once for all three.

    With ``config.train_on == "train+val"`` the train loader reads the split's train and val
    parts together (the whole official training part; never a test image) and the val loader
    still reads the val part, which the model has then seen. The ffcv loader refuses
    train+val (:class:`UserError`): its files hold the two parts apart.

    ``workers`` is the number of CPUs for loading: FFCV's threads, or the torchvision
    loader's worker processes (the device loader needs none). ``fingerprint``: the data's
    (:func:`raycifar.data.fingerprint.data_fingerprint`); given, the decoded split is kept in
    this process for the next trial on the same files (at most :data:`SPLITS_KEPT` splits).
    """
    stats = CATALOG[config.dataset]
    augment, batch_size, seed = config.augment, config.train.batch_size, config.seed
    common = {"mean": stats.mean, "std": stats.std}
    crops = {"padding": augment.crop_padding, "flip": augment.flip, "cutout": augment.cutout}
    if config.loader == "ffcv":
        if config.train_on != "train":
            raise UserError(f"train_on {config.train_on!r} needs the device or torchvision loader, not ffcv")
        from raycifar.data.ffcv_loader import FfcvLoader, beton_dir, check_prepared

        folder = beton_dir(
            Path(config.data_dir),
            config.dataset,
            config.label_mode,
            config.val_fraction,
            config.split_seed,
        )
        check_prepared(folder)
        shift = None if config.select == DEFAULT_SELECT else _shift_loader(
            config, _split(config, fingerprint)[1], device, eval_batch_size, fingerprint
        )  # the twin is made from the decoded split, which the FFCV files do not hold as images
        return TrialLoaders(
            FfcvLoader(folder / "train.beton", batch_size, device, True, seed, world_size, **crops, **common, workers=workers),
            FfcvLoader(folder / "val.beton", eval_batch_size, device, False, **common, workers=workers),
            shift,
        )  # fmt: skip
    train_set, val_set = _split(config, fingerprint)
    shift = _shift_loader(config, val_set, device, eval_batch_size, fingerprint)
    if config.loader == "torchvision":
        from raycifar.data.torchvision_loader import TorchvisionLoader

        return TrialLoaders(
            TorchvisionLoader(train_set, batch_size, device, True, seed, rank, world_size, augment=augment, **common, workers=workers),
            TorchvisionLoader(val_set, eval_batch_size, device, False, **common, workers=workers),
            shift,
        )  # fmt: skip
    augmix = AugMixSettings(severity=augment.augmix_severity) if augment.augmix else None
    views = 3 if augment.augmix_jsd > 0 else 1
    return TrialLoaders(
        DeviceLoader(train_set, batch_size, device, True, seed, rank, world_size, **crops, **common, augmix=augmix, views=views),
        DeviceLoader(val_set, eval_batch_size, device, False, **common),
        shift,
    )  # fmt: skip
