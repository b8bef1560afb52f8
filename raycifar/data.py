"""CIFAR-10 data: the official python-version files, a stratified validation split, and a
device-resident batch loader with batched augmentation.

Layouts read (under ``data_dir``): ``cifar-10-batches-py/`` holding any number of
``data_batch_*`` files plus ``test_batch`` (and optionally ``batches.meta``), or the
``cifar-10-python.tar.gz`` archive, read without extracting it.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from raycifar.errors import UserError

BATCH_FOLDER = "cifar-10-batches-py"
ARCHIVE_NAME = "cifar-10-python.tar.gz"
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
MEAN = (0.4914, 0.4822, 0.4465)
STD = (0.2470, 0.2435, 0.2616)


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 N x 32 x 32 x 3 (HWC), integer labels, and the class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = CLASS_NAMES

    def __len__(self) -> int:
        return len(self.labels)

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at ``indices``, in that order."""
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


def default_data_dir() -> Path:
    """``$RAYCIFAR_DATA`` if set, else ``~/.cache/raycifar``."""
    return Path(os.environ.get("RAYCIFAR_DATA", "~/.cache/raycifar")).expanduser()


def locate_cifar10(data_dir: Path) -> Path:
    """The batch folder or archive holding CIFAR-10 under ``data_dir``; a clear error if absent."""
    for candidate in (data_dir / BATCH_FOLDER, data_dir / ARCHIVE_NAME, data_dir):
        if candidate.is_file() and candidate.name == ARCHIVE_NAME:
            return candidate
        if candidate.is_dir() and (candidate / "test_batch").is_file():
            return candidate
    raise UserError(
        f"CIFAR-10 not found in {data_dir}: put the official python version there "
        f"({BATCH_FOLDER}/ with data_batch_* and test_batch, or {ARCHIVE_NAME}), "
        "or pass --download to fetch it"
    )


def download_cifar10(data_dir: Path) -> None:
    """Fetch and extract the official archive into ``data_dir`` with torchvision (needs internet)."""
    from torchvision.datasets import CIFAR10

    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        CIFAR10(root=str(data_dir), train=True, download=True)
    except Exception as err:  # network errors come in many types
        raise UserError(f"downloading CIFAR-10 into {data_dir} failed: {err}") from None


def _decode_batch(name: str, blob: bytes) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch to (N x 32 x 32 x 3 uint8, N int64 labels), checking its shape."""
    try:
        batch = pickle.loads(blob, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[b"labels"], dtype=np.int64)
    except Exception as err:
        raise UserError(f"{name}: not a readable CIFAR-10 batch ({type(err).__name__}: {err})") from None
    if data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise UserError(f"{name}: expected data of shape (N, 3072) and N labels, got {data.shape} and {len(labels)}")
    if len(labels) and (labels.min() < 0 or labels.max() >= len(CLASS_NAMES)):
        raise UserError(f"{name}: labels must be in 0..9, found {labels.min()}..{labels.max()}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def _read_batches(source: Path, part: Literal["train", "test"]) -> list[tuple[str, bytes]]:
    """The raw bytes of the batch files of ``part``, in file-name order."""
    wanted = (lambda n: n.startswith("data_batch_")) if part == "train" else (lambda n: n == "test_batch")
    if source.is_dir():
        try:
            return [(str(p), p.read_bytes()) for p in sorted(source.iterdir()) if wanted(p.name)]
        except OSError as err:
            raise UserError(f"{err.filename}: cannot read ({err.strerror})") from None
    try:
        with tarfile.open(source, "r:gz") as archive:
            members = sorted((m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name)
            return [
                (f"{source}:{m.name}", archive.extractfile(m).read())
                for m in members
                if wanted(Path(m.name).name)
            ]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise UserError(f"{source}: not a readable CIFAR-10 archive ({err})") from None


def read_cifar10(data_dir: Path, part: Literal["train", "test"]) -> ImageSet:
    """All images of the official training or test set found under ``data_dir``."""
    source = locate_cifar10(data_dir)
    batches = _read_batches(source, part)
    if not batches:
        expected = "data_batch_*" if part == "train" else "test_batch"
        raise UserError(f"{source}: no {expected} file found")
    decoded = [_decode_batch(name, blob) for name, blob in batches]
    return ImageSet(np.concatenate([d for d, _ in decoded]), np.concatenate([l for _, l in decoded]))


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded split of indices into (train, val) keeping each class's share in both."""
    rng = np.random.default_rng(seed)
    train, val = [], []
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_val = int(round(fraction * len(members)))
        val.append(members[:n_val])
        train.append(members[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def train_val_split(data_dir: Path, val_fraction: float, split_seed: int) -> tuple[ImageSet, ImageSet]:
    """The official training set split into (train, val); the test set stays untouched."""
    full = read_cifar10(data_dir, "train")
    train_idx, val_idx = stratified_split(full.labels, val_fraction, split_seed)
    return full.subset(train_idx), full.subset(val_idx)


def random_crop_flip(images: torch.Tensor, padding: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to ``padding`` pixels (zero fill) and horizontal flip, batched."""
    n, _, h, w = images.shape
    device = images.device
    padded = torch.nn.functional.pad(images, (padding,) * 4)
    dy = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    dx = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=device)
    rows = (dy + torch.arange(h, device=device))[:, None, :, None]
    cols = (dx + torch.arange(w, device=device))[:, None, None, :]
    flip = torch.rand(n, generator=generator, device=device) < 0.5
    cols = torch.where(flip[:, None, None, None], cols.flip(-1), cols)
    batch = torch.arange(n, device=device)[:, None, None, None]
    channel = torch.arange(images.shape[1], device=device)[None, :, None, None]
    return padded[batch, channel, rows, cols]


class DeviceLoader:
    """Batches from one uint8 tensor on the training device: shuffled, sharded, augmented.

    Under data-parallel training each rank takes every ``world_size``-th sample of the
    same permutation, trimmed so all ranks see the same number of batches.
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
    ) -> None:
        self.images = torch.from_numpy(images.images).to(device).permute(0, 3, 1, 2).contiguous()
        self.labels = torch.from_numpy(images.labels).to(device)
        self.batch_size, self.device, self.train = batch_size, device, train
        self.rank, self.world_size, self.seed = rank, world_size, seed
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1) * 255
        self.std = torch.tensor(STD, device=device).view(1, 3, 1, 1) * 255

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
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        indices = self._indices()
        for start in range(0, len(indices), self.batch_size):
            batch = indices[start : start + self.batch_size]
            images = self.images[batch].float()
            if self.train:
                images = random_crop_flip(images, 4, self.generator)
            yield (images - self.mean) / self.std, self.labels[batch]
