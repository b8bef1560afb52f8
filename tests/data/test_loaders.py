"""The device and torchvision loaders: what each augmentation option does, normalization,
seeding, sharding, and that the loaders agree with each other where they should. The ffcv
loader's tests are in tests/data/test_ffcv.py."""

from __future__ import annotations

import numpy as np
import torch
from loader_refs import image_set, normalized, raw

from raycifar.config import AugmentConfig
from raycifar.data import DeviceLoader, ImageSet
from raycifar.data.augment import cutout_keep_mask, gather_crops, padded_store
from raycifar.data.torchvision_loader import TorchvisionLoader

CPU = torch.device("cpu")


def test_gather_crops_matches_pad_crop_and_flip_per_image() -> None:
    images = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    store = padded_store(images, padding=4, mirrored=True)
    indices = torch.tensor([5, 0, 3, 3])
    top, left, mirror = (
        torch.tensor([0, 8, 4, 2]),
        torch.tensor([8, 0, 4, 7]),
        torch.tensor([0, 1, 0, 1]),
    )
    crops = gather_crops(store, indices, top, left, mirror, 32)
    padded = torch.nn.functional.pad(images, (4, 4, 4, 4))
    for k in range(4):
        expected = padded[indices[k]].flip(-1) if mirror[k] else padded[indices[k]]
        assert torch.equal(
            crops[k], expected[:, top[k] : top[k] + 32, left[k] : left[k] + 32]
        )


def test_cutout_mask_is_one_square_inside_the_image() -> None:
    keep = cutout_keep_mask(50, 8, 32, torch.Generator().manual_seed(0))
    for mask in keep[:, 0]:
        rows, cols = torch.nonzero(mask == 0, as_tuple=True)
        assert (
            len(rows) == 64
            and rows.max() - rows.min() == 7
            and cols.max() - cols.min() == 7
        )


def test_val_batches_are_the_images_in_order_normalized() -> None:
    data = image_set(20)
    loader = DeviceLoader(data, 8, CPU, train=False)
    images = torch.cat([batch for batch, _ in loader])
    assert len(loader) == 3
    assert torch.allclose(images, normalized(data.images), atol=1e-5)


def test_device_loader_options_change_exactly_what_they_name() -> None:
    data = image_set(64)

    def first_batch(**options) -> tuple[np.ndarray, np.ndarray]:
        loader = DeviceLoader(data, 64, CPU, train=True, seed=3, **options)
        loader.set_epoch(0)
        images, labels = next(iter(loader))
        return raw(images), labels.numpy()

    plain, labels = first_batch(padding=0, flip=False, cutout=0)
    order = [
        int(np.flatnonzero((data.images == image).all(axis=(1, 2, 3)))[0])
        for image in plain
    ]
    assert sorted(order) == list(range(64)) and order != list(range(64)), (
        "shuffled, not augmented"
    )
    assert labels.tolist() == data.labels[order].tolist()

    flipped, _ = first_batch(padding=0, flip=True, cutout=0)
    mirrored = [
        np.array_equal(f, p[:, ::-1]) for f, p in zip(flipped, plain, strict=True)
    ]
    assert all(
        m or np.array_equal(f, p)
        for m, f, p in zip(mirrored, flipped, plain, strict=True)
    )
    assert 10 < sum(mirrored) < 54

    cut, _ = first_batch(padding=0, flip=False, cutout=8)
    changed = (cut != plain).any(axis=3)
    assert (cut[changed] == 0).all() and all(changed[k].sum() <= 64 for k in range(64))
    assert changed.any(axis=(1, 2)).sum() > 60

    shifted, _ = first_batch(padding=4, flip=False, cutout=0)
    assert (
        not np.array_equal(shifted, plain)
        and (shifted == 0).all(axis=3).any(axis=(1, 2)).sum() > 40
    )


def test_loader_shards_the_same_permutation_across_ranks() -> None:
    data = ImageSet(np.zeros((103, 32, 32, 3), np.uint8), np.arange(103) % 10)
    data = ImageSet(data.images, np.arange(103))
    seen = []
    for rank in range(2):
        loader = DeviceLoader(
            data, 16, CPU, train=True, seed=5, rank=rank, world_size=2
        )
        loader.set_epoch(0)
        seen.append(torch.cat([labels for _, labels in loader]))
        assert len(loader) == 4
    assert len(seen[0]) == len(seen[1]) == 51 and not set(seen[0].tolist()) & set(
        seen[1].tolist()
    )


def test_torchvision_loader_normalizes_like_the_device_loader() -> None:
    data = image_set(20)
    ours = torch.cat(
        [b for b, _ in TorchvisionLoader(data, 8, CPU, train=False, workers=0)]
    )
    assert torch.allclose(ours, normalized(data.images), atol=1e-5)


def test_torchvision_policies_change_the_images_and_epochs_are_seeded() -> None:
    data = image_set(32)

    def epoch_images(
        augment: AugmentConfig, epoch: int, workers: int = 0
    ) -> torch.Tensor:
        loader = TorchvisionLoader(
            data, 32, CPU, train=True, seed=1, augment=augment, workers=workers
        )
        loader.set_epoch(epoch)
        return next(iter(loader))[0]

    plain = AugmentConfig(crop_padding=0, flip=False)
    unchanged = raw(epoch_images(plain, 0))
    order = [
        int(np.flatnonzero((data.images == image).all(axis=(1, 2, 3)))[0])
        for image in unchanged
    ]
    assert sorted(order) == list(range(32)) and order != list(range(32)), (
        "shuffled, not augmented"
    )
    for policy in ("autoaugment", "randaugment", "trivialaugment"):
        augmented = epoch_images(
            AugmentConfig(crop_padding=0, flip=False, policy=policy), 0
        )
        assert not torch.allclose(augmented, epoch_images(plain, 0)), policy
    jitter = AugmentConfig(
        crop_padding=0,
        flip=False,
        color_jitter=0.4,
        rotation=15,
        random_erasing=1.0,
        cutout=8,
    )
    assert torch.equal(
        epoch_images(jitter, 2, workers=2), epoch_images(jitter, 2, workers=2)
    ), "seeded per epoch"
    assert not torch.equal(epoch_images(jitter, 2), epoch_images(jitter, 3))
