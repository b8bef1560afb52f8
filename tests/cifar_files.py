"""Write small CIFAR datasets in the exact official byte layouts, and in the other layouts
raycifar reads (npz, image folders).

Official layouts (Krizhevsky, 2009): pixels are 3072 bytes per image, 1024 red, then 1024
green, then 1024 blue, each plane row-major.

- python version: pickled dicts. CIFAR-10 ``data_batch_*``/``test_batch`` hold ``b"data"``
  and ``b"labels"``; CIFAR-100 ``train``/``test`` hold ``b"data"``, ``b"fine_labels"``,
  ``b"coarse_labels"``.
  Batches re-saved by Python 3 have the same keys as ``str``; torchvision reads both
  (``write_cifar10(..., str_keys=True)``).
- binary version: fixed-size records. CIFAR-10 ``data_batch_*.bin``/``test_batch.bin``:
  1 label byte + 3072 pixel bytes; CIFAR-100 ``train.bin``/``test.bin``: 1 coarse label
  byte + 1 fine label byte + 3072 pixel bytes.
"""

from __future__ import annotations

import pickle
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

from raycifar.data import CIFAR10_CLASSES
from raycifar.data.catalog import CIFAR100_COARSE_CLASSES, CIFAR100_FINE_CLASSES


def synthetic_images(
    n: int, rng: np.random.Generator, classes: int = 10
) -> tuple[np.ndarray, list[int]]:
    """Learnable images: each class has its own colour and stripe orientation, plus noise.

    Returns rows of 3072 uint8 values (1024 red, 1024 green, 1024 blue, row-major) and labels.
    """
    labels = rng.integers(0, classes, size=n)
    palette = np.random.default_rng(1234).uniform(
        40, 215, size=(classes, 3)
    )  # the same in every split
    yy, xx = np.mgrid[0:32, 0:32]
    images = np.empty((n, 3, 32, 32), dtype=np.float64)
    for i, label in enumerate(labels):
        stripes = np.sin((xx * np.cos(label) + yy * np.sin(label)) * 0.6) * 30
        images[i] = (
            palette[label][:, None, None]
            + stripes
            + rng.normal(0, 25, size=(3, 32, 32))
        )
    return np.clip(images, 0, 255).astype(np.uint8).reshape(n, 3072), [
        int(v) for v in labels
    ]


def coarse_of(fine: list[int]) -> list[int]:
    """A fixed fine-to-coarse mapping for the synthetic CIFAR-100 (5 fine classes per coarse one)."""
    return [label // 5 for label in fine]


def rows_to_hwc(rows: np.ndarray) -> np.ndarray:
    """3072-byte planar rows to N x 32 x 32 x 3 images (what every reader returns)."""
    return rows.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _keyed(batch: dict[bytes, object], str_keys: bool) -> dict:
    """``batch`` with its keys as Python 2 left them (bytes) or as Python 3 re-saves them (str)."""
    return {key.decode(): value for key, value in batch.items()} if str_keys else batch


def write_batch(
    path: Path, data: np.ndarray, labels: list[int], name: str, str_keys: bool = False
) -> None:
    """A CIFAR-10 python batch; ``data`` is written as given (any dtype), for bad-input tests too."""
    batch = {
        b"batch_label": name.encode(),
        b"labels": labels,
        b"data": data,
        b"filenames": [b"x.png"] * len(labels),
    }
    path.write_bytes(pickle.dumps(_keyed(batch, str_keys), protocol=2))


def write_cifar10(
    root: Path,
    train_batches: int = 2,
    per_batch: int = 300,
    test: int = 200,
    seed: int = 0,
    str_keys: bool = False,
) -> Path:
    """Write ``root/cifar-10-batches-py`` with ``train_batches`` data batches and a test batch
    (keys as bytes, as in the official files, or as str with ``str_keys``)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, train_batches + 1):
        data, labels = synthetic_images(per_batch, rng)
        write_batch(
            folder / f"data_batch_{index}",
            data,
            labels,
            f"training batch {index} of {train_batches}",
            str_keys,
        )
    data, labels = synthetic_images(test, rng)
    write_batch(folder / "test_batch", data, labels, "testing batch 1 of 1", str_keys)
    meta = {
        b"label_names": [n.encode() for n in CIFAR10_CLASSES],
        b"num_cases_per_batch": per_batch,
        b"num_vis": 3072,
    }
    (folder / "batches.meta").write_bytes(pickle.dumps(_keyed(meta, str_keys), protocol=2))
    return root


def write_cifar100(
    root: Path, train: int = 400, test: int = 200, seed: int = 0, str_keys: bool = False
) -> Path:
    """Write ``root/cifar-100-python`` (``train``, ``test``, ``meta``) with fine and coarse labels
    (keys as bytes, or as str with ``str_keys``)."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("test", test)):
        data, fine = synthetic_images(count, rng, classes=100)
        batch = {
            b"filenames": [b"x.png"] * count,
            b"batch_label": f"{name}ing batch 1 of 1".encode(),
            b"fine_labels": fine,
            b"coarse_labels": coarse_of(fine),
            b"data": data,
        }
        (folder / name).write_bytes(pickle.dumps(_keyed(batch, str_keys), protocol=2))
    meta = {
        b"fine_label_names": [n.encode() for n in CIFAR100_FINE_CLASSES],
        b"coarse_label_names": [n.encode() for n in CIFAR100_COARSE_CLASSES],
    }
    (folder / "meta").write_bytes(pickle.dumps(_keyed(meta, str_keys), protocol=2))
    return root


def write_records(path: Path, label_columns: list[list[int]], data: np.ndarray) -> None:
    """A binary-version file: per image, its label bytes (in ``label_columns`` order), then 3072 pixel bytes."""
    labels = np.array(label_columns, dtype=np.uint8).T
    path.write_bytes(np.concatenate([labels, data], axis=1).tobytes())


def write_cifar10_binary(
    root: Path,
    train_batches: int = 2,
    per_batch: int = 50,
    test: int = 30,
    seed: int = 0,
) -> Path:
    """Write ``root/cifar-10-batches-bin``: records of 1 label byte + 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-10-batches-bin"
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(1, train_batches + 1):
        data, labels = synthetic_images(per_batch, rng)
        write_records(folder / f"data_batch_{index}.bin", [labels], data)
    data, labels = synthetic_images(test, rng)
    write_records(folder / "test_batch.bin", [labels], data)
    (folder / "batches.meta.txt").write_text("\n".join(CIFAR10_CLASSES) + "\n")
    return root


def write_cifar100_binary(
    root: Path, train: int = 100, test: int = 40, seed: int = 0
) -> Path:
    """Write ``root/cifar-100-binary``: records of coarse byte + fine byte + 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    folder = root / "cifar-100-binary"
    folder.mkdir(parents=True, exist_ok=True)
    for name, count in (("train.bin", train), ("test.bin", test)):
        data, fine = synthetic_images(count, rng, classes=100)
        write_records(folder / name, [coarse_of(fine), fine], data)
    (folder / "fine_label_names.txt").write_text(
        "\n".join(CIFAR100_FINE_CLASSES) + "\n"
    )
    (folder / "coarse_label_names.txt").write_text(
        "\n".join(CIFAR100_COARSE_CLASSES) + "\n"
    )
    return root


def write_npz(root: Path, train: int = 60, test: int = 20, seed: int = 0) -> Path:
    """Write ``root/train.npz`` and ``root/test.npz`` holding ``x`` (N x 32 x 32 x 3 uint8) and ``y``."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for name, count in (("train", train), ("test", test)):
        data, labels = synthetic_images(count, rng)
        np.savez(root / f"{name}.npz", x=rows_to_hwc(data), y=np.array(labels))
    return root


def write_image_folder(
    root: Path,
    images: np.ndarray,
    labels: list[int],
    names: tuple[str, ...] = CIFAR10_CLASSES,
) -> Path:
    """Write HWC images as ``root/<class name>/<index>.png``."""
    for index, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / names[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{index:05d}.png")
    return root


def archive(root: Path, folder_name: str, archive_path: Path) -> Path:
    """Pack ``root/folder_name`` into the .tar.gz ``archive_path``, as the official archives are."""
    archive_path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(archive_path, "w:gz") as packed:
        packed.add(root / folder_name, arcname=folder_name)
    return archive_path


def archive_cifar10(root: Path, archive_dir: Path) -> Path:
    """Pack ``root/cifar-10-batches-py`` into ``archive_dir/cifar-10-python.tar.gz``."""
    return archive(root, "cifar-10-batches-py", archive_dir / "cifar-10-python.tar.gz")


def write_png16(path: Path, pixels: np.ndarray) -> Path:
    """A 16-bit-per-channel PNG of H x W x 3 (RGB) or H x W (grey) uint16 ``pixels``, written
    byte by byte (PNG spec: IHDR with bit depth 16, filter-0 rows of big-endian samples)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    height, width = pixels.shape[:2]
    colour_type = 2 if pixels.ndim == 3 else 0
    rows = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in pixels)
    header = struct.pack(">IIBBBBB", width, height, 16, colour_type, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
    )
    return path
