"""Readers: every supported on-disk layout becomes one :class:`ImageSet` per part.

Layouts found under ``data_dir`` (or ``data_dir`` itself), tried in this order:

=================  ==============================================================
``python``         ``cifar-10-batches-py/`` (``data_batch_*``, ``test_batch``) or
                   ``cifar-100-python/`` (``train``, ``test``): pickled batches
``python-archive`` ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz``, unextracted
``binary``         ``cifar-10-batches-bin/`` (``data_batch_*.bin``, ``test_batch.bin``,
                   records of 1 label byte + 3072 pixel bytes) or ``cifar-100-binary/``
                   (``train.bin``, ``test.bin``, records of coarse + fine + 3072 bytes)
``binary-archive`` ``cifar-10-binary.tar.gz`` / ``cifar-100-binary.tar.gz``
``npz``            ``train.npz`` / ``test.npz`` holding ``x`` (N x 32 x 32 x 3 uint8) and ``y``
``imagefolder``    ``train/<class>/**/*.png|jpg`` and ``test/<class>/...`` (a class folder's
                   subfolders too, links followed: ``image_files.walk_images``); class folders
                   directly under ``data_dir`` are a test set (e.g. an out-of-distribution set)
``images``         image files directly under ``data_dir``: an unlabeled test set
=================  ==============================================================

Pixels in the official files are planes (1024 red, 1024 green, 1024 blue, each row-major);
every reader returns height x width x channel uint8 images.

Only official names are batches: ``data_batch_<n>`` (n = 1, 2, ..., read in that order) and
``test_batch`` (``.bin`` in the binary layout), ``train``/``test`` for CIFAR-100. Anything else
(``data_batch_1 copy``) is not read; :func:`raycifar.data.official.ignored_files` lists look-alikes.
Pickled batches may have byte-string keys (the official files) or str keys (re-saved by Python 3).

The rule every reader keeps: nothing read is silently changed. Pixels are 8-bit (0..255) or
converted exactly (integer arrays within 0..255; greyscale, 1-bit and palette images; alpha only
when fully opaque); float pixels, values outside 0..255, 16-bit or CMYK images, transparency,
animation, labels that are not integer classes of the dataset and images that are not
32 x 32 x 3 are a one-line UserError naming the file (and the first bad image of a batch).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raycifar.data.catalog import (
    CATALOG,
    CIFAR10_CLASSES,
    DATASETS,
    DatasetInfo,
    class_names,
)
from raycifar.data.image_files import (
    class_folders,
    image_files,
    label_of,
    reason,
    stack_images,
)
from raycifar.data.official import PARTS, Part, as_array, as_uint8, has_official_part, read_official
from raycifar.errors import UserError

UNLABELED = -1


@dataclass(frozen=True)
class ImageSet:
    """Images as uint8 N x 32 x 32 x 3 (HWC), integer labels (-1: unlabeled), and class names."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...] = CIFAR10_CLASSES

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def labeled(self) -> bool:
        """Whether every image has a class."""
        return bool((self.labels != UNLABELED).all())

    def subset(self, indices: np.ndarray) -> ImageSet:
        """The images at ``indices``, in that order."""
        return ImageSet(self.images[indices], self.labels[indices], self.class_names)


def default_data_dir() -> Path:
    """``$RAYCIFAR_DATA`` if set, else ``~/.cache/raycifar``."""
    return Path(os.environ.get("RAYCIFAR_DATA", "~/.cache/raycifar")).expanduser()


@dataclass(frozen=True)
class Source:
    """Where a dataset's files are, in which layout, and how labels are read."""

    format: str
    path: Path
    dataset: str = "cifar10"
    label_mode: str = "fine"

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.dataset, self.label_mode)

    def parts(self) -> tuple[Part, ...]:
        """The parts (``train``, ``test``) present in the files."""
        return tuple(part for part in PARTS if _PART_FINDERS[self.format](self, part))

    def read(self, part: Part) -> ImageSet:
        """All images of ``part``, checked: shapes, label range, readable files."""
        if part not in self.parts():
            raise UserError(
                f"{self.path}: no {part} images in this {self.format} layout"
            )
        images, labels = _READERS[self.format](self, part)
        return ImageSet(images, labels, self.class_names)

    def check_labels(self, name: str, labels: np.ndarray) -> np.ndarray:
        """``labels`` (N, or N x 1 as Keras saves them) as N int64 if all are integer classes of
        this dataset; else an error naming ``name`` and the first image with a bad label."""
        if labels.ndim == 2 and labels.shape[1] == 1:
            labels = labels[:, 0]
        if labels.ndim != 1:
            raise UserError(f"{name}: labels must be one integer per image, got an array of shape {labels.shape}")
        if not len(labels):
            return np.zeros(0, np.int64)
        if not np.issubdtype(labels.dtype, np.integer):
            raise UserError(f"{name}: labels must be integers, got {labels.dtype} values")
        top = len(self.class_names) - 1
        bad = np.flatnonzero((labels < 0) | (labels > top))
        if len(bad):
            mode = f" {self.label_mode}" if self.dataset == "cifar100" else ""
            raise UserError(
                f"{name}: {self.dataset}{mode} labels must be in 0..{top}, found {labels.min()}..{labels.max()} "
                f"(first at image {bad[0]}: {labels[bad[0]]})"
            )
        return labels.astype(np.int64)


def detect_source(
    data_dir: Path, dataset: str = "cifar10", label_mode: str = "fine"
) -> Source:
    """The layout of ``dataset`` under ``data_dir``; a one-line error saying what was expected."""
    if dataset not in CATALOG:
        raise UserError(
            f"unknown dataset {dataset!r}: use one of {', '.join(DATASETS)}"
        )
    if label_mode == "coarse" and dataset != "cifar100":
        raise UserError(f"label mode 'coarse' exists only for cifar100, not {dataset}")
    info = CATALOG[dataset]
    for layout, path in _candidates(data_dir, info):
        source = Source(layout, path, dataset, label_mode)
        if source.parts():
            return source
    raise DataNotFound(_not_found_message(data_dir, info), data_dir)


class DataNotFound(UserError):
    """No layout of the dataset under ``data_dir``. The message names what was expected and
    no option: each command adds the hint its own options allow (``sweep``: ``--download``;
    a recorded folder: ``--data-dir``), with :meth:`with_hint`."""

    def __init__(self, message: str, data_dir: Path) -> None:
        super().__init__(message)
        self.data_dir = data_dir

    def with_hint(self, hint: str) -> DataNotFound:
        """The same error with ``; hint`` after its message."""
        return DataNotFound(f"{self}; {hint}", self.data_dir)


def _candidates(data_dir: Path, info: DatasetInfo) -> list[tuple[str, Path]]:
    if data_dir.is_file():
        names = {
            info.python_archive: "python-archive",
            info.binary_archive: "binary-archive",
        }
        return [(names[data_dir.name], data_dir)] if data_dir.name in names else []
    return [
        ("python", data_dir / info.python_folder),
        ("python", data_dir),
        ("python-archive", data_dir / info.python_archive),
        ("binary", data_dir / info.binary_folder),
        ("binary", data_dir),
        ("binary-archive", data_dir / info.binary_archive),
        ("npz", data_dir),
        ("imagefolder", data_dir),
        ("images", data_dir),
    ]


def _not_found_message(data_dir: Path, info: DatasetInfo) -> str:
    other = next(
        (
            o
            for o in CATALOG.values()
            if o.name != info.name and (data_dir / o.python_folder).exists()
        ),
        None,
    )
    hint = f"; found {other.python_folder}: use --dataset {other.name}" if other else ""
    return (
        f"{info.title} not found in {data_dir}: expected {info.python_folder}/ or {info.python_archive} "
        f"(official python version), {info.binary_folder}/ or {info.binary_archive} (binary version), "
        f"train.npz/test.npz, or train/ and test/ folders of class folders{hint}"
    )


# --- .npz -----------------------------------------------------------------------------------------


def _has_npz_part(source: Source, part: Part) -> bool:
    return (source.path / f"{part}.npz").is_file()


def _read_npz(source: Source, part: Part) -> tuple[np.ndarray, np.ndarray]:
    path = source.path / f"{part}.npz"
    try:
        with np.load(path, allow_pickle=False) as arrays:
            missing = [key for key in ("x", "y") if key not in arrays]
            if missing:
                raise UserError(
                    f"{path}: missing array {' and '.join(missing)} (expected x and y)"
                )
            images, labels = arrays["x"], arrays["y"]
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - zip, pickle and value errors
        raise UserError(
            f"{path}: not a readable .npz file "
            f"({reason(err, 'truncated, damaged, not a zip of .npy arrays, or holding pickled objects')})"
        ) from None
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise UserError(
            f"{path}: x must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}"
        )
    images = as_uint8(str(path), as_array(str(path), "x", images))
    if labels.ndim not in (1, 2) or len(labels) != len(images):
        raise UserError(
            f"{path}: y must hold one integer label per image, got {labels.dtype} {labels.shape}"
        )
    return images, source.check_labels(str(path), as_array(str(path), "y", labels))


# --- image folders -----------------------------------------------------------------------------------


def _imagefolder_root(source: Source, part: Part) -> Path | None:
    """The folder whose class folders hold ``part``: ``part/``, or the root itself for a test set."""
    if class_folders(source.path / part):
        return source.path / part
    if (
        part == "test"
        and not (source.path / "train").is_dir()
        and class_folders(source.path)
    ):
        return source.path
    return None


def _read_imagefolder(source: Source, part: Part) -> tuple[np.ndarray, np.ndarray]:
    folders = class_folders(_imagefolder_root(source, part))
    files = [
        (path, label_of(folder, source.class_names))
        for folder in folders
        for path in image_files(folder)
    ]
    return stack_images([p for p, _ in files]), np.array(
        [label for _, label in files], dtype=np.int64
    )


def _read_unlabeled(source: Source, part: Part) -> tuple[np.ndarray, np.ndarray]:
    files = image_files(source.path, recursive=False)
    return stack_images(files), np.full(len(files), UNLABELED, dtype=np.int64)


_PART_FINDERS: dict[str, Callable[[Source, Part], bool]] = {
    "python": has_official_part,
    "python-archive": has_official_part,
    "binary": has_official_part,
    "binary-archive": has_official_part,
    "npz": _has_npz_part,
    "imagefolder": lambda source, part: _imagefolder_root(source, part) is not None,
    "images": lambda source, part: (
        part == "test" and source.path.is_dir() and bool(image_files(source.path, recursive=False))
    ),
}
_READERS: dict[str, Callable[[Source, Part], tuple[np.ndarray, np.ndarray]]] = {
    "python": read_official,
    "python-archive": read_official,
    "binary": read_official,
    "binary-archive": read_official,
    "npz": _read_npz,
    "imagefolder": _read_imagefolder,
    "images": _read_unlabeled,
}


def read_part(
    data_dir: Path, part: Part, dataset: str = "cifar10", label_mode: str = "fine"
) -> ImageSet:
    """All images of the training or test part of ``dataset`` found under ``data_dir``."""
    return detect_source(data_dir, dataset, label_mode).read(part)


def download(data_dir: Path, dataset: str = "cifar10") -> None:
    """Fetch and extract the official python archive into ``data_dir`` with torchvision (needs internet)."""
    import torchvision.datasets

    fetch = getattr(
        torchvision.datasets, {"cifar10": "CIFAR10", "cifar100": "CIFAR100"}[dataset]
    )
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
        fetch(root=str(data_dir), train=True, download=True)
    except OSError as err:  # the network or the disk: name the reason the OS gives
        reason = getattr(err, "reason", None) or err.strerror or "no connection"
        raise UserError(
            f"downloading {CATALOG[dataset].title} into {data_dir} failed ({reason}); without internet, "
            "put the official archive or folder there yourself and leave out --download"
        ) from None
    except Exception:  # noqa: BLE001 - a broken or partial download (checksum, archive) comes in many types
        raise UserError(
            f"downloading {CATALOG[dataset].title} into {data_dir} failed (the download was incomplete or "
            "did not match its checksum); delete the partial files there and try again"
        ) from None
