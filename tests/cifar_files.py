"""Write small CIFAR-10 datasets in the exact official "python version" byte layout."""

from __future__ import annotations

import pickle
import tarfile
from pathlib import Path

import numpy as np

from raycifar.data import CLASS_NAMES


def synthetic_images(n: int, rng: np.random.Generator) -> tuple[np.ndarray, list[int]]:
    """Learnable images: each class has its own colour and stripe orientation, plus noise.

    Returns rows of 3072 uint8 values (1024 red, 1024 green, 1024 blue, row-major) and labels.
    """
    labels = rng.integers(0, 10, size=n)
    palette = np.random.default_rng(1234).uniform(40, 215, size=(10, 3))  # the same in every split
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.empty((n, 3, 32, 32), dtype=np.float64)
    for i, label in enumerate(labels):
        stripes = np.sin((xx * np.cos(label) + yy * np.sin(label)) * 0.6) * 30
        images[i] = palette[label][:, None, None] + stripes + rng.normal(0, 25, size=(3, 32, 32))
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072), [int(v) for v in labels]


def write_batch(path: Path, data: np.ndarray, labels: list[int], name: str) -> None:
    batch = {b"batch_label": name.encode(), b"labels": labels, b"data": data, b"filenames": [b"x.png"] * len(labels)}
    path.write_bytes(pickle.dumps(batch, protocol=2))


def write_cifar10(root: Path, train_batches: int = 2, per_batch: int = 300, test: int = 200, seed: int = 0) -> Path:
    """Write ``root/cifar-10-batches-py`` with ``train_batches`` data batches and a test batch."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, train_batches + 1):
        data, labels = synthetic_images(per_batch, rng)
        write_batch(folder / f"data_batch_{index}", data, labels, f"training batch {index} of {train_batches}")
    data, labels = synthetic_images(test, rng)
    write_batch(folder / "test_batch", data, labels, "testing batch 1 of 1")
    meta = {b"label_names": [n.encode() for n in CLASS_NAMES], b"num_cases_per_batch": per_batch, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=2))
    return root


def archive_cifar10(root: Path, archive_dir: Path) -> Path:
    """Pack ``root/cifar-10-batches-py`` into ``archive_dir/cifar-10-python.tar.gz``."""
    archive_dir.mkdir(parents=True, exist_ok=True)
    target = archive_dir / "cifar-10-python.tar.gz"
    with tarfile.open(target, "w:gz") as archive:
        archive.add(root / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    return target
