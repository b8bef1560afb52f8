"""The ``device`` loader: a whole split as one uint8 tensor on the training device.

Each batch is shuffled, translated, flipped, cut out and normalized by a handful of
batched tensor operations (see :mod:`raycifar.data.augment`); there is no per-image
Python and no worker process. It runs the same on a CPU and on a GPU.

On a CPU the batch operations run on one thread by default (about a millisecond per 512
images). With several threads every operation ends at a barrier, and on a busy machine
one descheduled thread stalls each of them (``benchmarks/loaders.py`` shows both).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from raycifar.data.augment import (
    Normalizer,
    cutout_keep_mask,
    gather_crops,
    padded_store,
)
from raycifar.data.augmix import AugMixSettings, augmix
from raycifar.data.catalog import CATALOG
from raycifar.data.readers import ImageSet

CIFAR10 = CATALOG["cifar10"]


@contextmanager
def cpu_threads(device: torch.device, count: int) -> Iterator[None]:
    """Run the enclosed torch operations on ``count`` threads when ``device`` is the CPU."""
    if device.type != "cpu":
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


class DeviceLoader:
    """Batches from one uint8 tensor on ``device``: shuffled, sharded, augmented, normalized.

    With ``train`` the order is reshuffled every epoch and each batch is augmented by a
    random translation of up to ``padding`` pixels, a flip (``flip``) and a ``cutout``
    square (0 = off); otherwise images come in file order, unchanged. Under data-parallel
    training each rank takes every ``world_size``-th sample of the same permutation,
    trimmed so all ranks see the same number of batches. On a CPU, batches are made on
    ``threads`` threads.

    With ``augmix`` each training image is replaced by its AugMix
    (:mod:`raycifar.data.augmix`, after the crop, flip and cutout); with ``views=3`` as well,
    a batch of N labels holds 3N images: the N clean ones, then two AugMix views of each,
    for AugMix's consistency loss.
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
        padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
        mean: tuple[float, ...] = CIFAR10.mean,
        std: tuple[float, ...] = CIFAR10.std,
        threads: int = 1,
        augmix: AugMixSettings | None = None,
        views: int = 1,
    ) -> None:
        if views not in (1, 3) or (views == 3 and augmix is None):
            raise ValueError(f"views={views}: 1, or 3 with augmix")
        nchw = torch.from_numpy(images.images).to(device).permute(0, 3, 1, 2)
        self.padding, self.flip, self.cutout = (
            (padding, flip, cutout) if train else (0, False, 0)
        )
        self.store = padded_store(nchw, self.padding, mirrored=self.flip)
        self.side = images.images.shape[1]
        self.labels = torch.from_numpy(images.labels).to(device)
        self.batch_size, self.device, self.train = batch_size, device, train
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.normalize = Normalizer(mean, std, device)
        self.threads = threads
        self.augmix, self.views = (augmix, views) if train else (None, 1)

    def set_epoch(self, epoch: int) -> None:
        """Reseed shuffling and augmentation so epoch ``epoch`` is the same after a resume."""
        self.generator.manual_seed(self.seed * 100_003 + epoch)

    def _indices(self) -> torch.Tensor:
        n = len(self.labels)
        if not self.train:
            return torch.arange(n, device=self.device)
        order = torch.randperm(n, generator=self.generator, device=self.device)
        per_rank = n // self.world_size
        return order[self.rank : per_rank * self.world_size : self.world_size]

    def __len__(self) -> int:
        n = len(self.labels) // self.world_size if self.train else len(self.labels)
        return (n + self.batch_size - 1) // self.batch_size

    def _draw(self, count: int, high: int) -> torch.Tensor:
        if high <= 1:
            return torch.zeros(count, dtype=torch.int64, device=self.device)
        return torch.randint(
            0, high, (count,), generator=self.generator, device=self.device
        )

    def augmented_batch(self, indices: torch.Tensor) -> torch.Tensor:
        """Normalized float32 N x C x H x W images at ``indices`` (views·N with AugMix views),
        augmented when training."""
        count = len(indices)
        top, left = (
            self._draw(count, 2 * self.padding + 1),
            self._draw(count, 2 * self.padding + 1),
        )
        mirror = self._draw(count, 2 if self.flip else 1)
        images = gather_crops(self.store, indices, top, left, mirror, self.side)
        if self.cutout:
            images.mul_(cutout_keep_mask(count, self.cutout, self.side, self.generator))
        if self.augmix is not None:
            mixed = [augmix(images, self.generator, self.augmix) for _ in range(max(self.views - 1, 1))]
            images = torch.cat([images.float(), *mixed]) if self.views == 3 else mixed[0]
        return self.normalize(images)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        with cpu_threads(self.device, self.threads):
            indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            with cpu_threads(self.device, self.threads):
                batch = indices[start : start + self.batch_size]
                images, labels = self.augmented_batch(batch), self.labels[batch]
            yield images, labels
