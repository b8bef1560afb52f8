"""Image arrays in files, as competitions ship them: a pickle, a ``.npy`` or a ``.npz``.

What is read (:func:`open_array_file`):

- a **pickle** (any suffix but ``.npy``/``.npz``) of a dict with ``bytes`` or ``str`` keys: the
  images under one of :data:`IMAGE_KEYS`, optionally ids under one of :data:`ID_KEYS` and labels
  under the first of :data:`LABEL_KEYS` present; or of a bare image array. A pickle is loaded whole: its
  memory is the file's, not the batch's;
- a **.npy** array of images: read in batches from the file (header parsed, then plain reads,
  no memory map, so resident memory stays one batch whatever the file's size). Labels are read
  from a ``labels.npy`` beside it (the corruption benchmarks' layout): one label per image, or
  the labels of one block repeated (severities in blocks of N);
- a **.npz**: its members are zip entries; the image member is streamed (decompressed) batch by
  batch, the id and label members are read whole (small next to the images).

Images are ``N x 32 x 32 x 3`` (NHWC), ``N x 3 x 32 x 32`` (NCHW) or ``N x 3072`` rows in the
CIFAR planes order (1024 red, 1024 green, 1024 blue, each row-major); each batch becomes
NHWC uint8. Nothing is converted silently: pixels must be integers in 0..255 (any other dtype,
or a value outside that range, is a one-line :class:`UserError` naming the file and image index).

Ids are text: integers as decimals, ``str`` as they are, ``bytes`` decoded as UTF-8 where valid
and otherwise with ``\\xNN`` escapes for the bytes that are not (:func:`printable`), as are
file stems with undecodable bytes. NumPy only (no torch).
"""

from __future__ import annotations

import os
import pickle
import zipfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np

from raycifar.data.corrupted_reader import LABELS, block_labels, load_npy
from raycifar.data.official import PIXELS, as_uint8
from raycifar.errors import UserError

IMAGE_KEYS = ("data", "images", "x", "X", "imgs", "arr_0")
ID_KEYS = ("ids", "id", "image_ids", "filenames", "names")
LABEL_KEYS = ("labels", "fine_labels", "y", "targets")  # the first one present is read
COARSE_KEYS = ("coarse_labels",)  # for a CIFAR-100 model of the 20 coarse classes
NUMPY_SUFFIXES = (".npy", ".npz")
PICKLE_SUFFIXES = (".pkl", ".pickle", ".p")
Layout = Literal["nhwc", "nchw", "flat"]
SHAPES: dict[tuple[int, ...], Layout] = {(32, 32, 3): "nhwc", (3, 32, 32): "nchw", (PIXELS,): "flat"}


def printable(value: str | bytes) -> str:
    """``value`` as text that keeps every byte: valid UTF-8 as it is, other bytes (or the
    surrogates ``os.fsdecode`` gives them) as ``\\xNN``."""
    raw = os.fsencode(value) if isinstance(value, str) else value
    return raw.decode("utf-8", "backslashreplace")


def is_array_file(path: Path) -> bool:
    """Whether ``path`` is a file this module reads (by suffix: .npy, .npz, .pkl, .pickle, .p)."""
    return path.is_file() and path.suffix.lower() in NUMPY_SUFFIXES + PICKLE_SUFFIXES


class _Rows:
    """Sequential reads of the rows of an array: from memory, or from a ``.npy`` stream."""

    def __init__(self, name: str, shape: tuple[int, ...], dtype: np.dtype, array: np.ndarray | None = None,
                 stream: BinaryIO | None = None) -> None:  # fmt: skip
        self.name, self.shape, self.dtype, self.array, self.stream = name, shape, dtype, array, stream
        self.row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize

    def read(self, first: int, count: int) -> np.ndarray:
        """Rows ``first .. first+count-1`` (calls must come in order for a stream)."""
        if self.array is not None:
            return self.array[first : first + count]
        rows = np.empty((count, *self.shape[1:]), self.dtype)
        view, done = memoryview(rows.reshape(-1).view(np.uint8)), 0
        while done < len(view):
            try:
                got = self.stream.readinto(view[done:])
            except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
                raise UserError(
                    f"{self.name}: image {first + done // max(self.row_bytes, 1)}: cannot read ({' '.join(str(err).split())})"
                ) from None
            if not got:
                raise UserError(
                    f"{self.name}: image {first + done // max(self.row_bytes, 1)}: the file ends early (truncated)"
                )
            done += got
        return rows


def _npy_header(name: str, stream: BinaryIO) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype of the ``.npy`` data that follows in ``stream``; a UserError if it is
    not a C-ordered array of plain numbers."""
    try:
        version = np.lib.format.read_magic(stream)
        reader = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        shape, fortran, dtype = reader(stream)
    except (ValueError, OSError, EOFError) as err:
        raise UserError(
            f"{name}: not a readable .npy array ({' '.join(str(err).split()) or type(err).__name__})"
        ) from None
    if dtype.hasobject:
        raise UserError(f"{name}: holds Python objects (pickled), not numbers; save the images as a uint8 array")
    if fortran and len(shape) > 1:
        raise UserError(f"{name}: stored in Fortran order; save it with np.save(path, np.ascontiguousarray(images))")
    return tuple(shape), dtype


@dataclass
class ArrayFile:
    """One file of images, checked but not read: ``n`` images in ``layout``, the file's own
    ``ids`` (text, or None) and ``labels`` (int64, or None: one per image, or one block's
    labels that repeat every block; see :meth:`labels_of`)."""

    path: Path
    rows: _Rows
    layout: Layout
    ids: list[str] | None = None
    labels: np.ndarray | None = None
    closers: list[BinaryIO | zipfile.ZipFile] = field(default_factory=list)

    @property
    def name(self) -> str:
        return printable(str(self.path))

    @property
    def stem(self) -> str:
        return printable(self.path.stem)

    def __len__(self) -> int:
        return self.rows.shape[0]

    def batches(self, size: int) -> Iterator[tuple[int, np.ndarray]]:
        """(index of the first image, uint8 ``k x 32 x 32 x 3`` images) for batches of ``size``;
        a UserError naming the file and image at the first pixel outside 0..255."""
        for first in range(0, len(self), size):
            raw = self.rows.read(first, min(size, len(self) - first))
            if self.layout == "flat":
                raw = raw.reshape(-1, 3, 32, 32)
            if self.layout != "nhwc":
                raw = raw.transpose(0, 2, 3, 1)
            yield first, np.ascontiguousarray(as_uint8(self.name, raw, first=first))

    def labels_of(self, first: int, count: int) -> np.ndarray:
        """The labels of images ``first .. first+count-1`` (int64); a UserError if none."""
        if self.labels is None:
            raise UserError(
                f"{self.name}: no labels (a labels array in the file, or {LABELS} beside a .npy); scoring needs labels"
            )
        return self.labels[np.arange(first, first + count) % len(self.labels)]

    def close(self) -> None:
        for item in self.closers:
            item.close()


def _layout(name: str, shape: tuple[int, ...], dtype: np.dtype) -> Layout:
    """Which image layout ``shape`` is; dtype and shape problems as one line."""
    if not (np.issubdtype(dtype, np.integer) or np.issubdtype(dtype, np.floating) or dtype == np.bool_):
        raise UserError(f"{name}: image 0: pixels are {dtype} values, not numbers")
    if not np.issubdtype(dtype, np.integer) or dtype == np.bool_:
        raise UserError(
            f"{name}: image 0: pixels are {dtype} values; expected 8-bit integers 0..255 "
            "(nothing is converted silently: convert them to uint8 first)"
        )
    layout = SHAPES.get(tuple(shape[1:])) if len(shape) > 1 else None
    if layout is None:
        raise UserError(
            f"{name}: images of shape {tuple(shape)} are none of N x 32 x 32 x 3, N x 3 x 32 x 32 or N x {PIXELS}"
        )
    if shape[0] == 0:
        raise UserError(f"{name}: holds no images (shape {tuple(shape)})")
    return layout


def _text_ids(name: str, values: object, n: int) -> list[str]:
    """The ids of ``n`` images as text; a UserError for a wrong count, type or a repeat."""
    items = list(values.tolist() if isinstance(values, np.ndarray) else values) if values is not None else []
    if isinstance(values, np.ndarray) and values.ndim != 1:
        raise UserError(f"{name}: ids must be one per image, got an array of shape {values.shape}")
    if len(items) != n:
        raise UserError(f"{name}: {len(items):,} ids for {n:,} images")
    ids, seen = [], {}
    for index, item in enumerate(items):
        if isinstance(item, bool) or not isinstance(item, (int, str, bytes)):
            raise UserError(f"{name}: id {index}: a {type(item).__name__}, not text or an integer")
        text = printable(item) if isinstance(item, bytes) else str(item)
        if text in seen:
            raise UserError(f"{name}: id {index}: {text!r} repeats id {seen[text]}")
        seen[text] = index
        ids.append(text)
    return ids


def _labels(name: str, values: object, n: int) -> np.ndarray:
    labels = np.asarray(values)
    if labels.ndim == 2 and labels.shape[1:] == (1,):
        labels = labels[:, 0]
    if labels.shape != (n,) or not np.issubdtype(labels.dtype, np.integer) or labels.dtype == np.bool_:
        raise UserError(f"{name}: labels must be {n:,} integers, one per image; got {labels.dtype} {labels.shape}")
    bad = np.flatnonzero(labels < 0)
    if len(bad):
        raise UserError(f"{name}: image {bad[0]}: label {labels[bad[0]]} is negative")
    return labels.astype(np.int64)


def _pick(name: str, keys: list[str], wanted: tuple[str, ...], what: str, required: bool) -> str | None:
    found = [key for key in wanted if key in keys]
    if len(found) > 1 and what != "labels":
        raise UserError(f"{name}: more than one {what} array ({', '.join(found)}); keep one")
    if not found and required:
        raise UserError(
            f"{name}: no {what} array: expected one of the keys {', '.join(wanted)} (its keys: {', '.join(keys) or 'none'})"
        )
    return found[0] if found else None


def _from_pickle(path: Path, name: str, label_keys: tuple[str, ...]) -> ArrayFile:
    try:
        with open(path, "rb") as stream:
            found = pickle.load(stream, encoding="bytes")
    except OSError as err:
        raise UserError(f"{name}: cannot read ({err.strerror})") from None
    except Exception:  # noqa: BLE001 - truncated or foreign pickles fail in many ways
        raise UserError(f"{name}: not a readable pickle (truncated, damaged, or not a pickle)") from None
    if isinstance(found, np.ndarray):
        found = {"data": found}
    if not isinstance(found, dict):
        raise UserError(f"{name}: the pickle holds a {type(found).__name__}, not a dict of arrays or an image array")
    table = {(printable(k) if isinstance(k, bytes) else str(k)): v for k, v in found.items()}
    keys = sorted(table)
    image_key = _pick(name, keys, IMAGE_KEYS, "image", True)
    try:
        images = np.asarray(table[image_key])
    except (ValueError, TypeError):
        raise UserError(f"{name}: {image_key} is not an array of numbers (rows of unequal length?)") from None
    layout = _layout(name, images.shape, images.dtype)
    rows = _Rows(name, images.shape, images.dtype, array=images)
    id_key, label_key = _pick(name, keys, ID_KEYS, "id", False), _pick(name, keys, label_keys, "labels", False)
    ids = _text_ids(f"{name} ({id_key})", table[id_key], len(images)) if id_key else None
    labels = _labels(f"{name} ({label_key})", table[label_key], len(images)) if label_key else None
    return ArrayFile(path, rows, layout, ids, labels)


def _beside_labels(path: Path, name: str, n: int, block_size: int | None) -> np.ndarray | None:
    """The labels of a ``.npy`` in the corruption benchmarks' layout: ``labels.npy`` beside it,
    one per image or one block's repeated (checked by the corrupted-set reader's rules)."""
    labels_path = path.parent / LABELS
    if path.name == LABELS or not labels_path.is_file():
        return None
    labels = load_npy(labels_path)
    blocks = len(labels) // block_size if block_size and len(labels) % block_size == 0 else 1
    first = block_labels(labels_path, labels, blocks)
    if n % len(first):
        raise UserError(f"{labels_path}: {len(first):,} labels per block do not divide the {n:,} images of {name}")
    return first


def _from_npy(path: Path, name: str, block_size: int | None) -> ArrayFile:
    try:
        stream = open(path, "rb")  # noqa: SIM115 - closed by ArrayFile.close
    except OSError as err:
        raise UserError(f"{name}: cannot read ({err.strerror})") from None
    try:
        shape, dtype = _npy_header(name, stream)
        layout = _layout(name, shape, dtype)
        rows = _Rows(name, shape, dtype, stream=stream)
        present = (os.fstat(stream.fileno()).st_size - stream.tell()) // rows.row_bytes
        if present < shape[0]:
            raise UserError(
                f"{name}: image {present}: the file ends early (truncated; its header says {shape[0]:,} images)"
            )
        labels = _beside_labels(path, name, shape[0], block_size)
    except BaseException:
        stream.close()
        raise
    return ArrayFile(path, rows, layout, None, labels, [stream])


def _from_npz(path: Path, name: str, label_keys: tuple[str, ...]) -> ArrayFile:
    try:
        archive = zipfile.ZipFile(path)
        keys = sorted(member.removesuffix(".npy") for member in archive.namelist() if member.endswith(".npy"))
    except (OSError, zipfile.BadZipFile) as err:
        raise UserError(f"{name}: not a readable .npz file ({' '.join(str(err).split())})") from None
    closers: list[BinaryIO | zipfile.ZipFile] = [archive]
    try:
        image_key = _pick(name, keys, IMAGE_KEYS, "image", len(keys) != 1) or keys[0]
        closers.append(stream := archive.open(f"{image_key}.npy"))
        shape, dtype = _npy_header(f"{name} ({image_key})", stream)
        layout = _layout(f"{name} ({image_key})", shape, dtype)
        id_key, label_key = _pick(name, keys, ID_KEYS, "id", False), _pick(name, keys, label_keys, "labels", False)
        with np.load(path, allow_pickle=False) as members:
            ids = _text_ids(f"{name} ({id_key})", members[id_key], shape[0]) if id_key else None
            labels = _labels(f"{name} ({label_key})", members[label_key], shape[0]) if label_key else None
    except (ValueError, OSError, EOFError, zipfile.BadZipFile, zlib.error) as err:
        for item in closers:
            item.close()
        raise UserError(f"{name}: a member is not readable as a plain array ({' '.join(str(err).split())})") from None
    except BaseException:
        for item in closers:
            item.close()
        raise
    return ArrayFile(path, _Rows(name, shape, dtype, stream=stream), layout, ids, labels, closers[::-1])


def open_array_file(path: Path, block_size: int | None = None, label_mode: str = "fine") -> ArrayFile:
    """The images of ``path`` (see the module docstring), checked but not yet read; with
    ``block_size``, labels beside a ``.npy`` are checked to repeat every block. A pickle's or
    .npz's labels are the first of :data:`LABEL_KEYS` present (``coarse`` ``label_mode``:
    ``coarse_labels``)."""
    name = printable(str(path))
    suffix = path.suffix.lower()
    label_keys = COARSE_KEYS if label_mode == "coarse" else LABEL_KEYS
    if suffix == ".npy":
        return _from_npy(path, name, block_size)
    if suffix == ".npz":
        return _from_npz(path, name, label_keys)
    return _from_pickle(path, name, label_keys)
