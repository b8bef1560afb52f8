"""The data fingerprint: what identifies the data a split is read from, wherever it lies.

A sweep's driver computes it once (:func:`data_fingerprint`), records it with the sweep
(``resume.json``; an entry keeps its own in ``data.json``) and hands it to its trials, which
keep the decoded split in their process under it (:mod:`raycifar.data.loaders`): the next
trial on the same data skips decoding. Any change of the files' content (a new batch, a
rewritten or replaced file) changes the fingerprint, so stale data is never reused; moving
or copying the folder does not, so a moved folder is recognised as the same data
(:mod:`raycifar.data.relocate`).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from raycifar.data.readers import Source, detect_source

_PART_FILES = {"npz": ("train.npz", "test.npz")}  # layouts in a folder that may hold other files
_PART_FOLDERS = {"imagefolder": ("train", "test"), "images": ("train", "test")}


def _data_files(source: Source) -> list[Path]:
    """The files ``source`` is read from, in a fixed order."""
    root = source.path
    if root.is_file():
        return [root]
    if source.format in _PART_FILES:
        return [root / name for name in _PART_FILES[source.format] if (root / name).is_file()]
    tops = [root / name for name in _PART_FOLDERS.get(source.format, ()) if (root / name).is_dir()] or [root]
    return sorted(path for top in tops for path in top.rglob("*") if path.is_file())


def data_fingerprint(data_dir: Path, dataset: str = "cifar10", label_mode: str = "fine") -> str:
    """A 16-hex-digit digest of the dataset's files under ``data_dir`` (as
    :func:`~raycifar.data.readers.detect_source` finds them): the layout, dataset and label
    mode, then each file's path relative to the layout's folder, size and content (BLAKE2b;
    CIFAR-10's 180 MB take about 0.3 s). Raises :class:`~raycifar.errors.UserError` when no
    layout is found."""
    source = detect_source(Path(data_dir), dataset, label_mode)
    root = source.path
    digest = hashlib.sha256(f"{source.format}\n{dataset}\n{label_mode}\n".encode())
    for path in _data_files(source):
        name = path.name if path == root else path.relative_to(root).as_posix()
        with open(path, "rb") as stream:
            content = hashlib.file_digest(stream, "blake2b").hexdigest()
        digest.update(f"{name}\t{path.stat().st_size}\t{content}\n".encode())
    return digest.hexdigest()[:16]
