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
``imagefolder``    ``train/<class>/*.png|jpg`` and ``test/<class>/...``; class folders
                   directly under ``data_dir`` are a test set (e.g. an out-of-distribution set)
``images``         image files directly under ``data_dir``: an unlabeled test set
=================  ==============================================================

Pixels in the official files are planes (1024 red, 1024 green, 1024 blue, each row-major);
every reader returns height x width x channel uint8 images.
"""

from __future__ import annotations

import os
import pickle
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Literal

import numpy as np

from raycifar.data.catalog import (
    CATALOG,
    CIFAR10_CLASSES,
    DATASETS,
    DatasetInfo,
    class_names,
)
from raycifar.errors import UserError

Part = Literal["train", "test"]
PARTS: tuple[Part, ...] = ("train", "test")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PIXELS = 32 * 32 * 3
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
        """``labels`` as int64 if all are classes of this dataset; else an error naming ``name``."""
        top = len(self.class_names) - 1
        if len(labels) and (labels.min() < 0 or labels.max() > top):
            mode = f" {self.label_mode}" if self.dataset == "cifar100" else ""
            raise UserError(
                f"{name}: {self.dataset}{mode} labels must be in 0..{top}, found {labels.min()}..{labels.max()}"
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
    raise UserError(_not_found_message(data_dir, info))


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
        f"train.npz/test.npz, or train/ and test/ folders of class folders; or pass --download{hint}"
    )


# --- the official python and binary layouts, in a folder or a .tar.gz --------------------------


def _official_names(source: Source, part: Part) -> Callable[[str], bool]:
    """Which file names hold ``part`` in the official layouts of ``source``."""
    binary = source.format.startswith("binary")
    suffix = ".bin" if binary else ""
    if source.dataset == "cifar100":
        return lambda name: name == f"{part}{suffix}"
    if part == "train":
        return lambda name: (
            name.startswith("data_batch_")
            and name.endswith(suffix)
            and (binary or "." not in name)
        )
    return lambda name: name == f"test_batch{suffix}"


def _member_names(source: Source) -> list[str]:
    """File names (base names) in the folder or archive; [] if it is neither."""
    if source.format.endswith("archive"):
        return (
            list(_archive_names(source.path, source.path.stat().st_mtime))
            if source.path.is_file()
            else []
        )
    return (
        [p.name for p in source.path.iterdir() if p.is_file()]
        if source.path.is_dir()
        else []
    )


def _has_official_part(source: Source, part: Part) -> bool:
    wanted = _official_names(source, part)
    return any(wanted(name) for name in _member_names(source))


@lru_cache(maxsize=8)
def _archive_names(archive_path: Path, mtime: float) -> tuple[str, ...]:
    """Base names of the archive's files (cached: listing a .tar.gz decompresses all of it)."""
    return tuple(
        Path(name).name
        for name, _ in _archive_members(archive_path, lambda name: True, read=False)
    )


def _archive_members(
    archive_path: Path, wanted: Callable[[str], bool], read: bool = True
) -> list[tuple[str, bytes]]:
    """(name, bytes) of the archive's files whose base name is ``wanted``, in name order."""
    try:
        with tarfile.open(archive_path, "r:gz") as archive:
            members = sorted(
                (m for m in archive.getmembers() if m.isfile()), key=lambda m: m.name
            )
            return [
                (m.name, archive.extractfile(m).read() if read else b"")
                for m in members
                if wanted(Path(m.name).name)
            ]
    except (tarfile.TarError, OSError, EOFError, zlib.error) as err:
        raise UserError(
            f"{archive_path}: not a readable .tar.gz archive ({err})"
        ) from None


def _official_files(source: Source, part: Part) -> list[tuple[str, bytes]]:
    """(display name, bytes) of the files holding ``part``, in file-name order."""
    wanted = _official_names(source, part)
    if source.format.endswith("archive"):
        return [
            (f"{source.path}:{name}", blob)
            for name, blob in _archive_members(source.path, wanted)
        ]
    try:
        return [
            (str(p), p.read_bytes())
            for p in sorted(source.path.iterdir())
            if p.is_file() and wanted(p.name)
        ]
    except OSError as err:
        raise UserError(f"{err.filename}: cannot read ({err.strerror})") from None


def _planes_to_hwc(name: str, data: np.ndarray) -> np.ndarray:
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise UserError(
            f"{name}: expected pixel rows of {PIXELS} values, got an array of shape {data.shape}"
        )
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _decode_pickle(
    name: str, blob: bytes, source: Source
) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch to (N x 32 x 32 x 3 uint8, N labels)."""
    key = (
        b"labels"
        if source.dataset == "cifar10"
        else f"{source.label_mode}_labels".encode()
    )
    try:
        batch = pickle.loads(blob, encoding="bytes")
        data = np.asarray(batch[b"data"], dtype=np.uint8)
        labels = np.asarray(batch[key], dtype=np.int64)
    except Exception as err:  # noqa: BLE001 - truncated or foreign pickles fail in many ways
        raise UserError(
            f"{name}: not a readable {CATALOG[source.dataset].title} batch ({type(err).__name__}: {err})"
        ) from None
    if len(data) != len(labels) or labels.ndim != 1:
        raise UserError(f"{name}: {len(data)} images but {len(labels)} labels")
    return _planes_to_hwc(name, data), source.check_labels(name, labels)


def _decode_records(
    name: str, blob: bytes, source: Source
) -> tuple[np.ndarray, np.ndarray]:
    """One binary file of fixed-size records (label byte(s) then 3072 pixel bytes)."""
    label_bytes = 2 if source.dataset == "cifar100" else 1
    record = label_bytes + PIXELS
    if not blob or len(blob) % record:
        raise UserError(
            f"{name}: {len(blob)} bytes is not a whole number of {record}-byte records (truncated?)"
        )
    rows = np.frombuffer(blob, dtype=np.uint8).reshape(-1, record)
    label_column = (
        1 if source.dataset == "cifar100" and source.label_mode == "fine" else 0
    )
    return _planes_to_hwc(name, rows[:, label_bytes:]), source.check_labels(
        name, rows[:, label_column].astype(np.int64)
    )


def _read_official(source: Source, part: Part) -> tuple[np.ndarray, np.ndarray]:
    decode = _decode_records if source.format.startswith("binary") else _decode_pickle
    decoded = [
        decode(name, blob, source) for name, blob in _official_files(source, part)
    ]
    return np.concatenate([d for d, _ in decoded]), np.concatenate(
        [labels for _, labels in decoded]
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
            f"{path}: not a readable .npz file ({type(err).__name__}: {err})"
        ) from None
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise UserError(
            f"{path}: x must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}"
        )
    if (
        labels.ndim != 1
        or len(labels) != len(images)
        or not np.issubdtype(labels.dtype, np.integer)
    ):
        raise UserError(
            f"{path}: y must hold one integer label per image, got {labels.dtype} {labels.shape}"
        )
    return images, source.check_labels(str(path), labels.astype(np.int64))


# --- image folders -----------------------------------------------------------------------------------


def _image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def _class_folders(folder: Path) -> list[Path]:
    return (
        sorted(p for p in folder.iterdir() if p.is_dir() and _image_files(p))
        if folder.is_dir()
        else []
    )


def _imagefolder_root(source: Source, part: Part) -> Path | None:
    """The folder whose class folders hold ``part``: ``part/``, or the root itself for a test set."""
    if _class_folders(source.path / part):
        return source.path / part
    if (
        part == "test"
        and not (source.path / "train").is_dir()
        and _class_folders(source.path)
    ):
        return source.path
    return None


def _label_of(folder: Path, names: tuple[str, ...]) -> int:
    if folder.name in names:
        return names.index(folder.name)
    if folder.name.isdigit() and int(folder.name) < len(names):
        return int(folder.name)
    shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    raise UserError(
        f"{folder}: folder name is not a class name ({shown}) or a class index"
    )


def _load_image(path: Path) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            pixels = np.asarray(image.convert("RGB"))
    except (UnidentifiedImageError, OSError) as err:
        raise UserError(f"{path}: not a readable image ({err})") from None
    if pixels.shape != (32, 32, 3):
        raise UserError(
            f"{path}: images must be 32x32, got {pixels.shape[1]}x{pixels.shape[0]}"
        )
    return pixels


def _stack(paths: list[Path]) -> np.ndarray:
    return (
        np.stack([_load_image(p) for p in paths])
        if paths
        else np.zeros((0, 32, 32, 3), np.uint8)
    )


def _read_imagefolder(source: Source, part: Part) -> tuple[np.ndarray, np.ndarray]:
    folders = _class_folders(_imagefolder_root(source, part))
    files = [
        (path, _label_of(folder, source.class_names))
        for folder in folders
        for path in _image_files(folder)
    ]
    return _stack([p for p, _ in files]), np.array(
        [label for _, label in files], dtype=np.int64
    )


def _read_unlabeled(source: Source, part: Part) -> tuple[np.ndarray, np.ndarray]:
    files = _image_files(source.path)
    return _stack(files), np.full(len(files), UNLABELED, dtype=np.int64)


_PART_FINDERS: dict[str, Callable[[Source, Part], bool]] = {
    "python": _has_official_part,
    "python-archive": _has_official_part,
    "binary": _has_official_part,
    "binary-archive": _has_official_part,
    "npz": _has_npz_part,
    "imagefolder": lambda source, part: _imagefolder_root(source, part) is not None,
    "images": lambda source, part: (
        part == "test" and source.path.is_dir() and bool(_image_files(source.path))
    ),
}
_READERS: dict[str, Callable[[Source, Part], tuple[np.ndarray, np.ndarray]]] = {
    "python": _read_official,
    "python-archive": _read_official,
    "binary": _read_official,
    "binary-archive": _read_official,
    "npz": _read_npz,
    "imagefolder": _read_imagefolder,
    "images": _read_unlabeled,
}
FORMATS = tuple(_READERS)


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
    except Exception as err:  # noqa: BLE001 - network errors come in many types
        raise UserError(
            f"downloading {CATALOG[dataset].title} into {data_dir} failed: {err}"
        ) from None
