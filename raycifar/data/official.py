"""The official CIFAR layouts (the python version and the binary version, each as a folder
or a ``.tar.gz``): which files are batches, and decoding them into images and labels.

Only the official names are read (``data_batch_<n>``, ``test_batch``, ``train``, ``test``,
with ``.bin`` in the binary version); look-alikes such as ``data_batch_1 copy`` are
listed by :func:`ignored_files` and never read. Batches re-saved with ``str`` keys read
like the official ones. Every problem is one :class:`UserError` naming the file.
"""

from __future__ import annotations

import pickle
import re
import tarfile
import zlib
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Literal, Protocol

import numpy as np

from raycifar.data.catalog import CATALOG
from raycifar.data.image_files import reason
from raycifar.errors import UserError


class OfficialSource(Protocol):
    """What this module needs of a located dataset (:class:`raycifar.data.readers.Source`
    is one): where its files are, in which layout, and how its labels are checked."""

    format: str
    path: Path
    dataset: str
    label_mode: str

    def check_labels(self, name: str, labels: np.ndarray) -> np.ndarray: ...


Part = Literal["train", "test"]
PARTS: tuple[Part, ...] = ("train", "test")
PIXELS = 32 * 32 * 3  # one image of a batch: 1024 red, 1024 green, 1024 blue values


# --- the official python and binary layouts, in a folder or a .tar.gz --------------------------


def _official_order(source: OfficialSource, part: Part, name: str) -> int | None:
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


def _official_stems(source: OfficialSource) -> tuple[str, ...]:
    return ("train", "test") if source.dataset == "cifar100" else ("data_batch", "test_batch")


def _member_names(source: OfficialSource) -> list[str]:
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


def has_official_part(source: OfficialSource, part: Part) -> bool:
    return any(_official_order(source, part, name) is not None for name in _member_names(source))


def ignored_files(source: OfficialSource) -> list[str]:
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
            f"({reason(err, 'truncated, damaged, or not a gzip-compressed tar file')})"
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


def _official_files(source: OfficialSource, part: Part) -> list[tuple[str, bytes]]:
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


def as_array(name: str, what: str, values: object) -> np.ndarray:
    """``values`` (an array or nested lists) as a numeric array; an error naming ``name`` if not."""
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise UserError(f"{name}: {what} are not an array of numbers (rows of unequal length or mixed values)") from None
    if array.dtype == object or not (array.size == 0 or np.issubdtype(array.dtype, np.number)):
        raise UserError(f"{name}: {what} must be numbers, got {array.dtype} values")
    return array


def as_uint8(name: str, images: np.ndarray, first: int = 0) -> np.ndarray:
    """N x ... images as uint8, converted only if that is exact (integers in 0..255).

    Raises UserError naming ``name`` for floats (e.g. 0..1 images) or the first image
    holding a value outside 0..255 (its index counted from ``first``: a batch's offset)."""
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
            f"{name}: image {first + bad[0]}: pixel value {row[0]} is outside 0..255 (pixels must be 8-bit); "
            f"{len(bad)} image(s) have such values"
        )
    return images.astype(np.uint8)


def _planes_to_hwc(name: str, data: np.ndarray) -> np.ndarray:
    """N x 3072 planar rows (1024 red, 1024 green, 1024 blue) to N x 32 x 32 x 3 uint8."""
    if data.ndim != 2 or data.shape[1] != PIXELS:
        raise UserError(
            f"{name}: expected pixel rows of {PIXELS} values, got an array of shape {data.shape}"
        )
    return as_uint8(name, data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)).copy()


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
    name: str, blob: bytes, source: OfficialSource
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
    data = as_array(name, "the pixels", batch["data"])
    labels = as_array(name, f"the {label_key}", batch[label_key])
    if len(data) != len(labels):
        raise UserError(f"{name}: {len(data)} images but {len(labels)} labels")
    return _planes_to_hwc(name, data), source.check_labels(name, labels)


def _decode_records(
    name: str, blob: bytes, source: OfficialSource
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


def read_official(source: OfficialSource, part: Part) -> tuple[np.ndarray, np.ndarray]:
    decode = _decode_records if source.format.startswith("binary") else _decode_pickle
    decoded = [
        decode(name, blob, source) for name, blob in _official_files(source, part)
    ]
    return np.concatenate([d for d, _ in decoded]), np.concatenate(
        [labels for _, labels in decoded]
    )
