"""The data fingerprint: what identifies the files a split is read from, without reading them.

A sweep's driver computes it once (:func:`data_fingerprint`) and hands it to its trials, which
keep the decoded split in their process under it (:mod:`raycifar.data.loaders`): the next
trial on the same data skips decoding. Any change of the files (a new batch, a rewritten or
replaced file, another folder) changes the fingerprint, so stale data is never reused.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from raycifar.data.readers import detect_source


def data_fingerprint(data_dir: Path, dataset: str = "cifar10", label_mode: str = "fine") -> str:
    """A 16-hex-digit digest of the dataset's files under ``data_dir`` (as
    :func:`~raycifar.data.readers.detect_source` finds them): each file's path, size and
    modification time (ns). Raises :class:`~raycifar.errors.UserError` when no layout is found."""
    source = detect_source(Path(data_dir), dataset, label_mode)
    root = source.path.resolve()
    files = [root] if root.is_file() else sorted(path for path in root.rglob("*") if path.is_file())
    digest = hashlib.sha256(f"{source.format}\n{dataset}\n{label_mode}\n{root}\n".encode())
    for path in files:
        stat = path.stat()
        digest.update(f"{path.relative_to(root) if path != root else path.name}\t{stat.st_size}\t{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]
