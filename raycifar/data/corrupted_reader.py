"""Reading a corrupted test set: a folder written by ``raycifar data corrupt``
(:mod:`raycifar.data.corrupted_set`) or the official CIFAR-10-C download.

Both have one ``<corruption>.npy`` per corruption, uint8 of shape (S x N, 32, 32, 3) for S
severities of N images, severity-major, and ``labels.npy``, the N labels repeated S times.
Ours adds ``metadata.json`` (the severities, the dataset, the clean images' SHA-256); a folder
without it is read as the official CIFAR-10-C: 5 severities (1..5) of CIFAR-10 images, its
corruption files being every ``*.npy`` but ``labels.npy``.

:func:`read_corrupted_set` checks the folder without reading the images (the arrays are
opened with ``mmap_mode="r"``): a wrong shape, dtype or label count is one
:class:`~raycifar.errors.UserError` line naming the file. :meth:`CorruptedSet.chunks` then
streams one severity of one corruption in batches. NumPy only (no torch).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raycifar.data.corruption_table import CORRUPTIONS, SEVERITIES, SIZE
from raycifar.errors import UserError

LABELS = "labels.npy"
METADATA = "metadata.json"
OFFICIAL_NAME = "CIFAR-10-C (no metadata.json: read as the official download, 5 severities of CIFAR-10)"


def default_out(data_dir: Path, dataset: str, seed: int, limit: int | None) -> Path:
    """``<data-dir>/corrupted/<dataset>-test-corrupted-seed<seed>[-first<N>]`` (beside an
    archive): where ``raycifar data corrupt`` writes by default."""
    root = data_dir.parent if data_dir.is_file() else data_dir
    return root / "corrupted" / f"{dataset}-test-corrupted-seed{seed}{f'-first{limit}' if limit else ''}"


@dataclass(frozen=True)
class CorruptedSet:
    """A checked corrupted test set: ``corruptions`` (file stems, in the published order where
    known), ``severities``, ``images`` (N per severity), ``labels`` (the N labels, int64).
    ``metadata``: our ``metadata.json`` ({} for the official CIFAR-10-C)."""

    folder: Path
    name: str
    corruptions: tuple[str, ...]
    severities: tuple[int, ...]
    images: int
    labels: np.ndarray
    metadata: dict

    @property
    def official(self) -> bool:
        """Whether the folder has no ``metadata.json`` (read as the official CIFAR-10-C)."""
        return not self.metadata

    @property
    def dataset(self) -> str:
        return str(self.metadata.get("dataset", "cifar10"))

    @property
    def label_mode(self) -> str:
        return str(self.metadata.get("label_mode", "fine"))

    @property
    def size(self) -> int:
        """Images in the whole set: corruptions x severities x images."""
        return len(self.corruptions) * len(self.severities) * self.images

    def array(self, corruption: str) -> np.ndarray:
        """The memory-mapped (S x N, 32, 32, 3) uint8 array of ``corruption``."""
        return np.load(self.folder / f"{corruption}.npy", mmap_mode="r")

    def chunks(self, corruption: str, severity: int, batch: int, limit: int | None = None) -> Iterator[np.ndarray]:
        """The images of one severity of ``corruption`` (its first ``limit``), ``batch`` at a
        time, each batch read into memory from the memory map."""
        array = self.array(corruption)
        k = self.severities.index(severity)
        stop = self.images if limit is None else min(limit, self.images)
        for first in range(0, stop, batch):
            yield np.array(array[k * self.images + first : k * self.images + min(first + batch, stop)])  # a writable copy

    def describe(self) -> dict:
        """What the figures were computed on, for ``robustness.json``."""
        source = self.metadata.get("source") or {}
        return {
            "folder": str(self.folder), "name": self.name, "official": self.official, "dataset": self.dataset,
            "label_mode": self.label_mode, "images": self.images, "severities": list(self.severities),
            "corruptions": list(self.corruptions), "seed": self.metadata.get("seed"),
            "clean_images_sha256": source.get("images_sha256"),
        }  # fmt: skip


def load_npy(path: Path) -> np.ndarray:
    """The array of a ``.npy`` file, memory-mapped (not read); a UserError naming the file if
    it is not a readable array of plain numbers."""
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not a readable .npy array ({' '.join(str(err).split()) or type(err).__name__})") from None


def block_labels(labels_path: Path, labels: np.ndarray, blocks: int) -> np.ndarray:
    """The labels of the first of ``blocks`` equal blocks (severities) of ``labels`` as int64;
    a UserError naming ``labels_path`` if they are not 1-D non-negative integers in ``blocks``
    blocks that repeat the first."""
    if labels.ndim != 1 or not np.issubdtype(labels.dtype, np.integer):
        raise UserError(f"{labels_path}: shape {labels.shape} dtype {labels.dtype}; expected a 1-D integer array")
    if len(labels) == 0 or len(labels) % blocks:
        raise UserError(f"{labels_path}: {len(labels)} labels is not a multiple of the {blocks} severities")
    n = len(labels) // blocks
    first = np.asarray(labels[:n], dtype=np.int64)
    for k in range(1, blocks):
        if not np.array_equal(np.asarray(labels[k * n : (k + 1) * n], dtype=np.int64), first):
            raise UserError(f"{labels_path}: the labels of severity block {k + 1} differ from the first block's")
    if (first < 0).any():
        raise UserError(f"{labels_path}: label {int(first.min())} at index {int(np.argmax(first < 0))} is negative")
    return first


def _metadata(folder: Path) -> dict:
    path = folder / METADATA
    if not path.is_file():
        return {}
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise UserError(f"{path}: not readable JSON ({' '.join(str(err).split())})") from None
    if not isinstance(found, dict) or not isinstance(found.get("severities"), list) or not isinstance(found.get("corruptions"), dict):
        raise UserError(f"{path}: not the metadata of raycifar data corrupt (no severities or corruptions)")
    return found


def _ordered(names: list[str]) -> tuple[str, ...]:
    known = [name for name in CORRUPTIONS if name in names]
    return tuple(known + sorted(name for name in names if name not in CORRUPTIONS))


def read_corrupted_set(folder: Path) -> CorruptedSet:
    """Check the corrupted test set in ``folder`` (see the module docstring) and describe it."""
    folder = Path(folder).expanduser().resolve()
    if not folder.is_dir():
        raise UserError(f"--corrupted {folder}: no such folder (write one with: raycifar data corrupt)")
    labels_path = folder / LABELS
    if not labels_path.is_file():
        raise UserError(f"{labels_path}: missing; not a corrupted test set (raycifar data corrupt or CIFAR-10-C)")
    metadata = _metadata(folder)
    if metadata:
        severities = tuple(int(s) for s in metadata["severities"])
        names = [str(entry.get("file", f"{name}.npy")).removesuffix(".npy") for name, entry in metadata["corruptions"].items()]
        name = str(metadata.get("name") or folder.name)
    else:
        severities = SEVERITIES
        names = [p.stem for p in folder.glob("*.npy") if p.name != LABELS]
        name = OFFICIAL_NAME
    if not severities or any(s not in SEVERITIES for s in severities):
        raise UserError(f"{folder / METADATA}: severities {list(severities)} are not a list of 1..5")
    if not names:
        raise UserError(f"{folder}: no <corruption>.npy file beside {LABELS}")
    first = block_labels(labels_path, load_npy(labels_path), len(severities))
    n = len(first)
    expected = (n * len(severities), SIZE, SIZE, 3)
    for stem in names:
        path = folder / f"{stem}.npy"
        if not path.is_file():
            raise UserError(f"{path}: missing (listed in {METADATA})")
        array = load_npy(path)
        if array.shape != expected or array.dtype != np.uint8:
            raise UserError(
                f"{path}: shape {array.shape} dtype {array.dtype}; expected {expected} uint8 "
                f"({len(severities)} severities x {n} images, as {LABELS} says)"
            )
    return CorruptedSet(folder, name, _ordered(names), severities, n, first, metadata)
