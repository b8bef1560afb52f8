"""Augmentation: batched tensor operations for the device loader, and the per-image
torchvision pipeline (policies the batched path cannot do) for the torchvision loader.

Both paths share one meaning for the common settings: a random translation by up to
``crop_padding`` pixels with black fill, a horizontal flip with probability 1/2, and
``cutout``: a black ``cutout`` x ``cutout`` square placed wholly inside the image.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import nn

if TYPE_CHECKING:
    from raycifar.config import AugmentConfig

# --- batched: the device loader ------------------------------------------------------------------


def padded_store(images: torch.Tensor, padding: int, mirrored: bool) -> torch.Tensor:
    """uint8 N x C x H x W images as a (V, N, C, H + 2p, W + 2p) store, zero-padded once.

    With ``mirrored`` the store also holds every image flipped left-right (V = 2), so a flip
    costs nothing per batch: it is the choice of which copy to read.
    """
    padded = nn.functional.pad(images, (padding,) * 4)
    return torch.stack([padded, padded.flip(-1)] if mirrored else [padded]).contiguous()


def gather_crops(
    store: torch.Tensor,
    indices: torch.Tensor,
    top: torch.Tensor,
    left: torch.Tensor,
    mirror: torch.Tensor,
    size: int,
) -> torch.Tensor:
    """Read ``size`` x ``size`` crops of the images at ``indices`` from a :func:`padded_store`.

    Image ``indices[k]`` is read from copy ``mirror[k]`` at offset (``top[k]``, ``left[k]``).
    Shuffling, translation and flip are one ``index_select`` of image rows: each row of a
    crop is ``size`` consecutive bytes of the store, addressed through an overlapping
    ``unfold`` view, so no per-image work and no per-pixel index is needed.
    """
    _, count, channels, height, width = store.shape
    device = store.device
    rows = store.view(-1).unfold(0, size, 1)
    image = (mirror * count + indices).view(-1, 1, 1)
    channel = torch.arange(channels, device=device).view(1, -1, 1)
    row = top.view(-1, 1, 1) + torch.arange(size, device=device).view(1, 1, -1)
    starts = ((image * channels + channel) * height + row) * width + left.view(-1, 1, 1)
    return rows.index_select(0, starts.view(-1)).view(
        len(indices), channels, size, size
    )


def cutout_keep_mask(
    count: int, size: int, side: int, generator: torch.Generator
) -> torch.Tensor:
    """uint8 (count, 1, side, side): 0 inside one random ``size`` square per image, else 1."""
    device = generator.device
    top = torch.randint(
        0, side - size + 1, (count, 1, 1, 1), generator=generator, device=device
    )
    left = torch.randint(
        0, side - size + 1, (count, 1, 1, 1), generator=generator, device=device
    )
    pixels = torch.arange(side, device=device)
    in_rows = (pixels.view(1, 1, -1, 1) >= top) & (
        pixels.view(1, 1, -1, 1) < top + size
    )
    in_cols = (pixels.view(1, 1, 1, -1) >= left) & (
        pixels.view(1, 1, 1, -1) < left + size
    )
    return (~(in_rows & in_cols)).to(torch.uint8)


class Normalizer:
    """uint8 images to float32 ``(x / 255 - mean) / std`` in two passes (cast, then fused multiply-add)."""

    def __init__(
        self, mean: tuple[float, ...], std: tuple[float, ...], device: torch.device
    ) -> None:
        std_tensor = torch.tensor(std, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_tensor)
        self.shift = -torch.tensor(mean, device=device).view(1, -1, 1, 1) / std_tensor

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return images.float().mul_(self.scale).add_(self.shift)


# --- per image: the torchvision loader -------------------------------------------------------------


class Cutout(nn.Module):
    """Per-image cutout for the torchvision pipeline: a black square wholly inside the image."""

    def __init__(self, size: int) -> None:
        super().__init__()
        self.size = size

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        height, width = image.shape[-2:]
        top = int(torch.randint(0, height - self.size + 1, ()))
        left = int(torch.randint(0, width - self.size + 1, ()))
        image = image.clone()
        image[..., top : top + self.size, left : left + self.size] = 0
        return image


def _policy(name: str) -> list[nn.Module]:
    from torchvision.transforms import v2

    policies = {
        "none": [],
        "autoaugment": [v2.AutoAugment(v2.AutoAugmentPolicy.CIFAR10)],
        "randaugment": [v2.RandAugment()],
        "trivialaugment": [v2.TrivialAugmentWide()],
    }
    return policies[name]


def torchvision_transform(
    augment: AugmentConfig | None, mean: tuple[float, ...], std: tuple[float, ...]
) -> nn.Module:
    """The per-image pipeline for uint8 C x H x W tensors; ``augment=None`` only normalizes."""
    from torchvision.transforms import v2

    steps: list[nn.Module] = []
    if augment is not None:
        if augment.crop_padding:
            steps.append(v2.RandomCrop(32, padding=augment.crop_padding, fill=0))
        if augment.flip:
            steps.append(v2.RandomHorizontalFlip())
        steps += _policy(augment.policy)
        if augment.color_jitter:
            jitter = augment.color_jitter
            steps.append(
                v2.ColorJitter(brightness=jitter, contrast=jitter, saturation=jitter)
            )
        if augment.rotation:
            steps.append(v2.RandomRotation(augment.rotation))
        if augment.cutout:
            steps.append(Cutout(augment.cutout))
    steps += [
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ]
    if augment is not None and augment.random_erasing:
        steps.append(v2.RandomErasing(p=augment.random_erasing))
    return v2.Compose(steps)
