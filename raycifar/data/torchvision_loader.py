"""The ``torchvision`` loader: a ``DataLoader`` whose worker processes run a per-image
torchvision pipeline, for the policies the batched device path cannot do (AutoAugment,
RandAugment, TrivialAugment, ColorJitter, rotation, RandomErasing).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from raycifar.data.augment import torchvision_transform
from raycifar.data.catalog import CATALOG
from raycifar.data.readers import ImageSet

if TYPE_CHECKING:
    from raycifar.config import AugmentConfig


class _TransformedImages(Dataset):
    """One (transformed image, label) per index, read from uint8 HWC arrays."""

    def __init__(self, images: ImageSet, transform: torch.nn.Module) -> None:
        self.images = torch.from_numpy(images.images).permute(0, 3, 1, 2)
        self.labels = images.labels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.images[index]), int(self.labels[index])


class TorchvisionLoader:
    """Batches from a ``DataLoader`` with ``workers`` processes, moved to ``device``.

    With ``train`` and an ``augment`` config: shuffled per epoch (sharded by rank with a
    ``DistributedSampler``) and augmented per image; otherwise in order and only
    normalized. Each epoch's order and augmentation follow ``seed`` and the epoch.
    """

    def __init__(
        self,
        images: ImageSet,
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        *,
        augment: AugmentConfig | None = None,
        mean: tuple[float, ...] = CATALOG["cifar10"].mean,
        std: tuple[float, ...] = CATALOG["cifar10"].std,
        workers: int = 2,
    ) -> None:
        dataset = _TransformedImages(
            images, torchvision_transform(augment if train else None, mean, std)
        )
        self.sampler = (
            DistributedSampler(
                dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed
            )
            if train
            else None
        )
        self.generator = torch.Generator().manual_seed(seed)
        self.device, self.train, self.seed = device, train, seed
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=device.type == "cuda",
            generator=self.generator,
        )

    def set_epoch(self, epoch: int) -> None:
        """Reseed the order and the workers' augmentation for epoch ``epoch``."""
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
        self.generator.manual_seed(self.seed * 100_003 + epoch)

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield (
                images.to(self.device, non_blocking=True),
                labels.to(self.device, non_blocking=True),
            )
