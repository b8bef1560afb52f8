"""The ``ffcv`` loader: the splits written once as FFCV ``.beton`` files, read by FFCV's
``Loader`` with its JIT-compiled pipeline (flip, translate, cutout, normalize).

FFCV is an optional extra (``pip install 'raycifar[ffcv]'``); nothing here imports it
until a loader or a writer is made. The files of one split live in
``<data-dir>/ffcv/<dataset>-<label mode>-val<fraction>-seed<seed>/{train,val,test}.beton``
with a ``manifest.json`` that records which data they were written from.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raycifar.data.catalog import CATALOG
from raycifar.data.readers import ImageSet, detect_source
from raycifar.data.splits import split_image_set
from raycifar.errors import UserError

INSTALL_HINT = (
    "the ffcv loader needs FFCV, which is not installed: pip install 'raycifar[ffcv]' "
    "(it compiles; install OpenCV, libjpeg-turbo and pkg-config first, see docs/data.md 'FFCV')"
)
SPLITS = ("train", "val", "test")
MANIFEST = "manifest.json"
PAGE_SIZE = (
    2 * 1024**2
)  # FFCV's default 8 MiB pages waste a quarter of a 32x32 dataset file


def require_ffcv() -> None:
    """Raise a one-line :class:`UserError` with the install hint when FFCV cannot be imported."""
    try:
        import ffcv  # noqa: F401
    except ImportError:
        raise UserError(INSTALL_HINT) from None


def beton_dir(
    data_dir: Path, dataset: str, label_mode: str, val_fraction: float, split_seed: int
) -> Path:
    """Where the ``.beton`` files of one split of ``data_dir`` live."""
    root = data_dir.parent if data_dir.is_file() else data_dir
    return (
        root / "ffcv" / f"{dataset}-{label_mode}-val{val_fraction:g}-seed{split_seed}"
    )


class _Samples:
    """An indexable view FFCV's writer reads: (HWC uint8 image, int label) per index."""

    def __init__(self, images: ImageSet) -> None:
        self.images = images

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        return self.images.images[index], int(self.images.labels[index])


def write_beton(images: ImageSet, path: Path, workers: int = 1) -> None:
    """Write ``images`` raw (bit-exact) to the FFCV file ``path``, atomically."""
    require_ffcv()
    from ffcv.fields import IntField, RGBImageField
    from ffcv.writer import DatasetWriter

    partial = path.with_name(f".{path.name}.partial")
    fields = {"image": RGBImageField(write_mode="raw"), "label": IntField()}
    DatasetWriter(
        str(partial), fields, page_size=PAGE_SIZE, num_workers=workers
    ).from_indexed_dataset(_Samples(images))
    os.replace(partial, path)


def _fingerprint(parts: dict[str, ImageSet]) -> str:
    digest = hashlib.sha256()
    for name, part in parts.items():
        digest.update(name.encode())
        digest.update(np.ascontiguousarray(part.images).data)
        digest.update(part.labels.astype(np.int64).tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class PreparedFiles:
    """The ``.beton`` folder of one split, its image counts, and whether they were just written."""

    folder: Path
    counts: dict[str, int]
    written: bool


def prepare_ffcv(
    data_dir: Path,
    dataset: str,
    label_mode: str,
    val_fraction: float,
    split_seed: int,
    workers: int = 1,
) -> PreparedFiles:
    """Write train/val/test ``.beton`` files with the same split as the other loaders.

    Files already written from the same data and split are kept (their manifest matches).
    """
    require_ffcv()
    source = detect_source(data_dir, dataset, label_mode)
    train, val = split_image_set(source.read("train"), val_fraction, split_seed, str(source.path))
    parts = {"train": train, "val": val, "test": source.read("test")}
    folder = beton_dir(data_dir, dataset, label_mode, val_fraction, split_seed)
    manifest = {
        "fingerprint": _fingerprint(parts),
        "source": str(source.path),
        "format": source.format,
        "counts": {name: len(part) for name, part in parts.items()},
    }
    if _manifest(folder) == manifest and all(
        (folder / f"{name}.beton").is_file() for name in SPLITS
    ):
        return PreparedFiles(folder, manifest["counts"], written=False)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / MANIFEST).unlink(missing_ok=True)
        for name, part in parts.items():
            write_beton(part, folder / f"{name}.beton", workers)
        (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    except OSError as err:
        raise UserError(
            f"{folder}: cannot write FFCV files ({err.strerror or err})"
        ) from None
    return PreparedFiles(folder, manifest["counts"], written=True)


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return None


def check_prepared(folder: Path) -> None:
    """A one-line error when the split's files have not been prepared (or not completely)."""
    missing = [
        name
        for name in (MANIFEST, *(f"{s}.beton" for s in SPLITS))
        if not (folder / name).is_file()
    ]
    if missing:
        raise UserError(
            f"{folder}: missing {', '.join(missing)}; run `raycifar data prepare --format ffcv` first"
        )


def _image_pipeline(
    train: bool,
    device: torch.device,
    padding: int,
    flip: bool,
    cutout: int,
    mean: tuple,
    std: tuple,
) -> list:
    """Decode, augment (flip, translate, cutout) and normalize; on a GPU, normalize after the transfer."""
    import torchvision.transforms
    from ffcv.fields.decoders import SimpleRGBImageDecoder
    from ffcv.transforms import (
        Convert,
        Cutout,
        NormalizeImage,
        RandomHorizontalFlip,
        RandomTranslate,
        ToDevice,
        ToTensor,
        ToTorchImage,
    )  # fmt: skip

    mean255, std255 = np.array(mean) * 255, np.array(std) * 255
    steps: list = [SimpleRGBImageDecoder()]
    if train and flip:
        steps.append(RandomHorizontalFlip())
    if train and padding:
        steps.append(RandomTranslate(padding=padding, fill=(0, 0, 0)))
    if train and cutout:
        steps.append(Cutout(cutout, fill=(0, 0, 0)))
    if device.type == "cpu":
        return [
            *steps,
            NormalizeImage(mean255, std255, np.float32),
            ToTensor(),
            ToTorchImage(),
        ]
    return [
        *steps, ToTensor(), ToDevice(device, non_blocking=True), ToTorchImage(), Convert(torch.float32),
        torchvision.transforms.Normalize(mean255.tolist(), std255.tolist()),
    ]  # fmt: skip


class FfcvLoader:
    """FFCV's ``Loader`` over one ``.beton`` file, yielding normalized float32 images and int64 labels.

    With ``train``: random order reseeded per epoch (sharded by rank under DDP through
    FFCV's distributed mode) and augmentation. FFCV draws augmentation randomness inside
    its compiled code, so a resumed epoch has the same order but not the same crops.
    """

    def __init__(
        self,
        path: Path,
        batch_size: int,
        device: torch.device,
        train: bool,
        seed: int = 0,
        world_size: int = 1,
        *,
        padding: int = 4,
        flip: bool = True,
        cutout: int = 0,
        mean: tuple[float, ...] = CATALOG["cifar10"].mean,
        std: tuple[float, ...] = CATALOG["cifar10"].std,
        workers: int = 1,
    ) -> None:
        require_ffcv()
        from ffcv.fields.decoders import IntDecoder
        from ffcv.loader import Loader, OrderOption
        from ffcv.transforms import Squeeze, ToDevice, ToTensor

        labels = [IntDecoder(), ToTensor(), Squeeze()]
        if device.type != "cpu":
            labels.append(ToDevice(device, non_blocking=True))
        self.device, self.train = device, train
        self.loader = Loader(
            str(path),
            batch_size=batch_size,
            num_workers=workers,
            order=OrderOption.RANDOM if train else OrderOption.SEQUENTIAL,
            distributed=train and world_size > 1,
            seed=seed,
            drop_last=False,
            pipelines={
                "image": _image_pipeline(
                    train, device, padding, flip, cutout, mean, std
                ),
                "label": labels,
            },
        )

    def set_epoch(self, epoch: int) -> None:
        """The next pass is epoch ``epoch`` (its order follows the seed and the epoch)."""
        self.loader.next_epoch = epoch

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for images, labels in self.loader:
            yield images, labels.long()
