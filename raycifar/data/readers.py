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

Only official names are batches: ``data_batch_<n>`` (n = 1, 2, ..., read in that order) and
``test_batch`` (``.bin`` in the binary layout), ``train``/``test`` for CIFAR-100. Anything else
(``data_batch_1 copy``) is not read; :func:`ignored_files` lists look-alikes for ``data info``.
Pickled batches may have byte-string keys (the official files) or str keys (re-saved by Python 3).

The rule every reader keeps: nothing read is silently changed. Pixels are 8-bit (0..255) or
converted exactly (integer arrays within 0..255; greyscale, 1-bit and palette images; alpha only
when fully opaque); float pixels, values outside 0..255, 16-bit or CMYK images, transparency,
animation, labels that are not integer classes of the dataset and images that are not
32 x 32 x 3 are a one-line UserError naming the file (and the first bad image of a batch).
"""

from __future__ import annotations

import os
import pickle
import re
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from raycifar.data.catalog import (
    CATALOG,
    CIFAR10_CLASSES,
    DATASETS,
    DatasetInfo,
    class_names,
)
from raycifar.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

Part = Literal["train", "test"]
PARTS: tuple[Part, ...] = ("train", "test")
# the suffixes torchvision's ImageFolder reads
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
# Pillow modes that become 8-bit RGB exactly (alpha only when every pixel is opaque)
EXACT_MODES = ("RGB", "L", "1", "P", "RGBA", "LA", "PA")
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


def _official_order(source: Source, part: Part, name: str) -> int | None:
    """Where file ``name`` goes among the files of ``part`` (its batch number), or None if
    ``name`` is not an official name: ``data_batch_<n>`` (n = 1, 2, ...) and ``test_batch``
    for CIFAR-10, ``train`` and ``test`` for CIFAR-100, with ``.bin`` in the binary layouts.
    Copies such as ``data_batch_1 copy`` or ``data_batch_01`` are not official."""
    suffix = r"\.bin" if source.format.startswith("binary") else ""
    if source.dataset == "cifar100":
        pattern = rf"{part}{suffix}()"
    else:
        pattern = rf"data_batch_([1-9][0-9]*){suffix}" if part == "train" else rf"test_batch{suffix}()"
    match = re.fullmatch(pattern, name)
    return None if match is None else int(match.group(1) or 0)


def _official_stems(source: Source) -> tuple[str, ...]:
    return ("train", "test") if source.dataset == "cifar100" else ("data_batch", "test_batch")


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
    return any(_official_order(source, part, name) is not None for name in _member_names(source))


def ignored_files(source: Source) -> list[str]:
    """Files of an official layout that look like batches but are not read: names starting like
    an official one (``data_batch_1 copy``, ``test_batch.bak``, ``train (2)``), sorted."""
    if source.format not in ("python", "python-archive", "binary", "binary-archive"):
        return []
    return sorted(
        name
        for name in set(_member_names(source))
        if name.startswith(_official_stems(source))
        and all(_official_order(source, part, name) is None for part in PARTS)
    )


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
            f"{archive_path}: not a readable .tar.gz archive "
            f"({_reason(err, 'truncated, damaged, or not a gzip-compressed tar file')})"
        ) from None


def _refuse_duplicates(archive_path: Path, names: list[str]) -> None:
    """One file per official name: an archive holding ``a/data_batch_1`` and ``b/data_batch_1``
    would read the same images twice."""
    seen: dict[str, str] = {}
    for name in names:
        base = Path(name).name
        if base in seen:
            raise UserError(
                f"{archive_path}: holds {base} twice ({seen[base]} and {name}); keep one"
            )
        seen[base] = name


def _official_files(source: Source, part: Part) -> list[tuple[str, bytes]]:
    """(display name, bytes) of the files holding ``part``, in batch-number order
    (``data_batch_2`` before ``data_batch_10``)."""

    def order(name: str) -> int | None:
        return _official_order(source, part, Path(name).name)

    if source.format.endswith("archive"):
        members = _archive_members(source.path, lambda name: order(name) is not None)
        _refuse_duplicates(source.path, [name for name, _ in members])
        return [
            (f"{source.path}:{name}", blob)
            for name, blob in sorted(members, key=lambda member: order(member[0]))
        ]
    try:
        paths = [p for p in source.path.iterdir() if p.is_file() and order(p.name) is not None]
        return [(str(p), p.read_bytes()) for p in sorted(paths, key=lambda p: order(p.name))]
    except OSError as err:
        raise UserError(f"{err.filename}: cannot read ({err.strerror})") from None


def _reason(err: BaseException, default: str) -> str:
    """The operating system's reason for an :class:`OSError` that has one (permission
    denied, ...), else ``default``: a library's own message is never passed on."""
    return err.strerror if isinstance(err, OSError) and err.strerror else default


def _as_array(name: str, what: str, values: object) -> np.ndarray:
    """``values`` (an array or nested lists) as a numeric array; an error naming ``name`` if not."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise UserError(f"{name}: {what} are not an array of numbers (rows of unequal length or mixed values)") from None
    if array.dtype == object or not (array.size == 0 or np.issubdtype(array.dtype, np.number)):
        raise UserError(f"{name}: {what} must be numbers, got {array.dtype} values")
    return array


def _as_uint8(name: str, images: np.ndarray) -> np.ndarray:
    """N x ... images as uint8, converted only if that is exact (integers in 0..255).

    Raises UserError naming ``name`` for floats (e.g. 0..1 images) or the first image
    holding a value outside 0..255."""
    if images.dtype == np.uint8:
        return images
    if not np.issubdtype(images.dtype, np.integer):
        raise UserError(
            f"{name}: pixels must be 8-bit integers 0..255, got {images.dtype} values (convert them to uint8 first)"
        )
    outside = ((images < 0) | (images > 255)).reshape(len(images), -1)
    bad = np.flatnonzero(outside.any(axis=1))
    if len(bad):
        row = images[bad[0]].reshape(-1)[outside[bad[0]]]
        raise UserError(
            f"{name}: image {bad[0]}: pixel value {row[0]} is outside 0..255 (pixels must be 8-bit); "
            f"{len(bad)} image(s) have such values"
        )
    return images.astype(np.uint8)


def _planes_to_hwc(name: str, data: np.ndarray) -> np.ndarray:
    """N x 3072 planar rows (1024 red, 1024 green, 1024 blue) to N x 32 x 32 x 3 uint8."""
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise UserError(
            f"{name}: expected pixel rows of {PIXELS} values, got an array of shape {data.shape}"
        )
    return _as_uint8(name, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)).copy()


def _unpickle(name: str, blob: bytes, title: str) -> dict[object, object]:
    """A pickled batch as a dict with str keys: the official files (pickled by Python 2) have
    byte-string keys, batches re-saved by Python 3 have str keys; both are read."""
    try:
        batch = pickle.loads(blob, encoding="bytes")
    except Exception:  # noqa: BLE001 - truncated or foreign pickles fail in many ways
        raise UserError(f"{name}: not a readable {title} batch (truncated, damaged, or not a pickle)") from None
    if not isinstance(batch, dict):
        raise UserError(f"{name}: not a {title} batch (the pickle holds a {type(batch).__name__}, not a dict)")
    return {(key.decode("latin-1") if isinstance(key, bytes) else key): value for key, value in batch.items()}


def _decode_pickle(
    name: str, blob: bytes, source: Source
) -> tuple[np.ndarray, np.ndarray]:
    """One pickled batch (``data``: N x 3072 planar pixels, ``labels`` or ``fine_labels``/
    ``coarse_labels``: N classes) to (N x 32 x 32 x 3 uint8, N int64 labels)."""
    title = CATALOG[source.dataset].title
    label_key = "labels" if source.dataset == "cifar10" else f"{source.label_mode}_labels"
    batch = _unpickle(name, blob, title)
    missing = [key for key in ("data", label_key) if key not in batch]
    if missing:
        keys = ", ".join(sorted(str(key) for key in batch)) or "none"
        raise UserError(f"{name}: this {title} batch has no {' and no '.join(missing)} (its keys: {keys})")
    data = _as_array(name, "the pixels", batch["data"])
    labels = _as_array(name, f"the {label_key}", batch[label_key])
    if len(data) != len(labels):
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
            f"{path}: not a readable .npz file "
            f"({_reason(err, 'truncated, damaged, not a zip of .npy arrays, or holding pickled objects')})"
        ) from None
    if images.ndim != 4 or images.shape[1:] != (32, 32, 3):
        raise UserError(
            f"{path}: x must be uint8 of shape (N, 32, 32, 3), got {images.dtype} {images.shape}"
        )
    images = _as_uint8(str(path), _as_array(str(path), "x", images))
    if labels.ndim not in (1, 2) or len(labels) != len(images):
        raise UserError(
            f"{path}: y must hold one integer label per image, got {labels.dtype} {labels.shape}"
        )
    return images, source.check_labels(str(path), _as_array(str(path), "y", labels))


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


def _deeper_than_8_bits(image: Image.Image) -> bool:
    """Whether the file stores more than 8 bits per channel (e.g. a 16-bit RGB PNG, which
    Pillow opens as mode RGB keeping only the top 8 bits). Read from the decoder's raw mode."""
    for tile in image.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(rawmode, str) and re.match(r"(RGB|RGBA|RGBX|LA|L|I|F)[A-Z]*;(16|32)", rawmode):
            return True
    return False


def _exact_rgb(path: Path, image: Image.Image) -> np.ndarray:
    """The image as H x W x 3 uint8 if that loses nothing: 8-bit RGB as is; greyscale, 1-bit and
    palette images expanded exactly; an alpha channel only if every pixel is opaque.
    Everything else (16-bit, float, CMYK, transparency, animation) is an error naming ``path``."""
    if getattr(image, "n_frames", 1) > 1:
        raise UserError(f"{path}: an animated image ({image.n_frames} frames); save the one frame to use")
    if image.mode not in EXACT_MODES or _deeper_than_8_bits(image):
        depth = " with more than 8 bits per channel" if _deeper_than_8_bits(image) else ""
        raise UserError(
            f"{path}: mode {image.mode}{depth} cannot be converted to 8-bit RGB without loss; "
            "save it as 8-bit RGB (or greyscale)"
        )
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        pixels = np.asarray(image.convert("RGBA"))
        transparent = int((pixels[..., 3] < 255).sum())
        if transparent:
            raise UserError(
                f"{path}: {transparent} transparent pixel(s) (alpha below 255); flatten it onto a background first"
            )
        return pixels[..., :3]
    return np.asarray(image.convert("RGB"))


def read_image_file(path: Path) -> np.ndarray:
    """One image file of any size as H x W x 3 uint8, exactly as stored (see :func:`_exact_rgb`).

    Raises :class:`UserError` naming the file if Pillow cannot read it or it would change."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return _exact_rgb(path, image)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
        raise UserError(
            f"{path}: not a readable image ({_reason(err, 'truncated, damaged, or not an image format Pillow reads')})"
        ) from None


def _load_image(path: Path) -> np.ndarray:
    """One image file as 32 x 32 x 3 uint8, exactly as stored (see :func:`read_image_file`)."""
    pixels = read_image_file(path)
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
