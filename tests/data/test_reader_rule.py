"""The rule for every reader: nothing read is silently changed.

Pixels are 8-bit (0..255) or converted exactly, labels are integer classes of the dataset,
images are 32 x 32 x 3; anything else is a one-line UserError naming the file (and the image
index, for batches). Each case below is read by the layout's reader and must be refused.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from cifar_files import archive, synthetic_images, write_batch, write_png16, write_records
from PIL import Image

from raycifar.data import read_part
from raycifar.errors import UserError

Writer = Callable[[Path], None]


def _rows(n: int = 3) -> np.ndarray:
    """``n`` synthetic images as planar rows of 3072 uint8 values."""
    return synthetic_images(n, np.random.default_rng(0))[0]


def _hwc(n: int = 3) -> np.ndarray:
    return _rows(n).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)


def _python(data: object, labels: object, **extra: object) -> Writer:
    """A cifar-10-batches-py folder whose data_batch_1 holds ``data`` and ``labels`` as given."""

    def write(root: Path) -> None:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        batch = {b"data": data, b"labels": labels, **{k.encode(): v for k, v in extra.items()}}
        (folder / "data_batch_1").write_bytes(pickle.dumps(batch, protocol=2))
        write_batch(folder / "test_batch", _rows(1), [0], "t")

    return write


def _python_raw(blob: bytes) -> Writer:
    def write(root: Path) -> None:
        folder = root / "cifar-10-batches-py"
        folder.mkdir(parents=True)
        (folder / "data_batch_1").write_bytes(blob)
        write_batch(folder / "test_batch", _rows(1), [0], "t")

    return write


def _binary(labels: list[int], cut: int = 0) -> Writer:
    """A cifar-10-batches-bin folder; data_batch_1.bin holds ``labels``, less its last ``cut`` bytes."""

    def write(root: Path) -> None:
        folder = root / "cifar-10-batches-bin"
        folder.mkdir(parents=True)
        write_records(folder / "data_batch_1.bin", [labels], _rows(len(labels)))
        if cut:
            path = folder / "data_batch_1.bin"
            path.write_bytes(path.read_bytes()[:-cut])
        write_records(folder / "test_batch.bin", [[0]], _rows(1))

    return write


def _packed(write: Writer, folder: str, name: str) -> Writer:
    """``write``'s official folder packed as the official archive ``name``, the folder removed."""

    def write_archive(root: Path) -> None:
        write(root / "unpacked")
        archive(root / "unpacked", folder, root / name)

    return write_archive


def _npz(**arrays: object) -> Writer:
    def write(root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        np.savez(root / "train.npz", **arrays)

    return write


def _image(save: Callable[[Path], None], name: str = "a.png", folder: str = "train/cat") -> Writer:
    """A class folder (or, with folder="", the root: unlabeled images) holding one bad image
    ``name`` beside a good one."""

    def write(root: Path) -> None:
        target = root / folder
        target.mkdir(parents=True)
        Image.fromarray(_hwc(1)[0]).save(target / "0-good.png")
        save(target / name)

    return write


def _pil(mode: str, size: tuple[int, int] = (32, 32), colour: object = 0, **options: object) -> Callable[[Path], None]:
    return lambda path: Image.new(mode, size, colour).save(path, **options)


def _rgba_with_one_transparent_pixel(path: Path) -> None:
    pixels = np.full((32, 32, 4), 255, np.uint8)
    pixels[5, 7, 3] = 0
    Image.fromarray(pixels).save(path)


def _animated_gif(path: Path) -> None:
    frames = [Image.new("RGB", (32, 32), colour) for colour in ((200, 0, 0), (0, 0, 200))]
    frames[0].save(path, save_all=True, append_images=frames[1:])


def _float_pixels() -> np.ndarray:
    return _rows(2).astype(np.float32) / 255


def _wide_pixels() -> np.ndarray:
    data = _rows(3).astype(np.int64)
    data[1, 40] = 300
    return data


TRAIN_CASES: list[tuple[str, Writer, str]] = [
    # the python layout: pickled dicts of data and labels
    ("python float pixels", _python(_float_pixels(), [0, 1]),
     r"data_batch_1: pixels must be 8-bit integers 0\.\.255, got float32 values"),
    ("python pixel above 255", _python(_wide_pixels(), [0, 1, 2]),
     r"data_batch_1: image 1: pixel value 300 is outside 0\.\.255"),
    ("python negative pixel", _python(_rows(2).astype(np.int16) - 1, [0, 1]),
     r"data_batch_1: image 0: pixel value -1 is outside 0\.\.255"),
    ("python float labels", _python(_rows(2), [0.0, 1.5]),
     r"data_batch_1: labels must be integers, got float64 values"),
    ("python label out of range", _python(_rows(3), [0, 1, 10]),
     r"data_batch_1: cifar10 labels must be in 0\.\.9, found 0\.\.10 \(first at image 2: 10\)"),
    ("python negative label", _python(_rows(2), [-1, 1]),
     r"data_batch_1: cifar10 labels must be in 0\.\.9, found -1\.\.1 \(first at image 0: -1\)"),
    ("python wrong pixel count", _python(np.zeros((2, 1024), np.uint8), [0, 1]),
     r"data_batch_1: expected pixel rows of 3072 values, got an array of shape \(2, 1024\)"),
    ("python more labels than images", _python(_rows(2), [0, 1, 2]),
     r"data_batch_1: 2 images but 3 labels"),
    ("python no labels", _python_raw(pickle.dumps({b"data": _rows(1), b"batch_label": b"b"})),
     r"data_batch_1: this CIFAR-10 batch has no labels \(its keys: batch_label, data\)"),
    ("python not a dict", _python_raw(pickle.dumps([_rows(1), [0]])),
     r"data_batch_1: not a CIFAR-10 batch \(the pickle holds a list, not a dict\)"),
    ("python truncated", _python_raw(pickle.dumps({b"data": _rows(1), b"labels": [0]})[:400]),
     r"data_batch_1: not a readable CIFAR-10 batch \(truncated, damaged, or not a pickle\)$"),
    ("python pixels as text", _python(["ab"] * 2, [0, 1]),
     r"data_batch_1: the pixels must be numbers, got <U2 values"),
    # the same decoder behind the official .tar.gz
    ("python archive pixel above 255",
     _packed(_python(_wide_pixels(), [0, 1, 2]), "cifar-10-batches-py", "cifar-10-python.tar.gz"),
     r"cifar-10-python\.tar\.gz:cifar-10-batches-py/data_batch_1: image 1: pixel value 300"),
    ("python archive label out of range",
     _packed(_python(_rows(2), [0, 11]), "cifar-10-batches-py", "cifar-10-python.tar.gz"),
     r"cifar-10-python\.tar\.gz:cifar-10-batches-py/data_batch_1: cifar10 labels .*first at image 1: 11"),
    # the binary layout: bytes are 8-bit by nature; labels and record sizes are checked
    ("binary label out of range", _binary([3, 10, 4]),
     r"data_batch_1\.bin: cifar10 labels must be in 0\.\.9, found 3\.\.10 \(first at image 1: 10\)"),
    ("binary truncated", _binary([3, 4], cut=10),
     r"data_batch_1\.bin: 6136 bytes is not a whole number of 3073-byte records"),
    ("binary archive label out of range",
     _packed(_binary([200]), "cifar-10-batches-bin", "cifar-10-binary.tar.gz"),
     r"cifar-10-binary\.tar\.gz:cifar-10-batches-bin/data_batch_1\.bin: cifar10 labels .*first at image 0: 200"),
    ("binary archive truncated",
     _packed(_binary([1], cut=1), "cifar-10-batches-bin", "cifar-10-binary.tar.gz"),
     r"data_batch_1\.bin: 3072 bytes is not a whole number of 3073-byte records"),
    # npz: x and y as saved
    ("npz float pixels", _npz(x=_hwc(2).astype(np.float64) / 255, y=np.array([0, 1])),
     r"train\.npz: pixels must be 8-bit integers 0\.\.255, got float64 values"),
    ("npz pixel above 255", _npz(x=_wide_pixels().reshape(3, 3, 32, 32).transpose(0, 2, 3, 1), y=np.arange(3)),
     r"train\.npz: image 1: pixel value 300 is outside 0\.\.255"),
    ("npz greyscale shape", _npz(x=np.zeros((2, 32, 32, 1), np.uint8), y=np.array([0, 1])),
     r"train\.npz: x must be uint8 of shape \(N, 32, 32, 3\), got uint8 \(2, 32, 32, 1\)"),
    ("npz float labels", _npz(x=_hwc(2), y=np.array([0.0, 1.0])),
     r"train\.npz: labels must be integers, got float64 values"),
    ("npz label out of range", _npz(x=_hwc(2), y=np.array([0, 10])),
     r"train\.npz: cifar10 labels must be in 0\.\.9, found 0\.\.10 \(first at image 1: 10\)"),
    ("npz two labels per image", _npz(x=_hwc(2), y=np.zeros((2, 2), int)),
     r"train\.npz: labels must be one integer per image, got an array of shape \(2, 2\)"),
    ("npz not a zip", lambda root: (root.mkdir(), (root / "train.npz").write_bytes(b"not a zip file")),
     r"train\.npz: not a readable \.npz file \(truncated, damaged, not a zip of \.npy arrays"),
    # labelled image folders
    ("png with a transparent pixel", _image(_rgba_with_one_transparent_pixel),
     r"train/cat/a\.png: 1 transparent pixel\(s\) \(alpha below 255\)"),
    ("palette png with a transparent colour", _image(_pil("P", transparency=0)),
     r"train/cat/a\.png: 1024 transparent pixel\(s\)"),
    ("16-bit RGB png", _image(lambda p: write_png16(p, np.full((32, 32, 3), 40000, np.uint16))),
     r"train/cat/a\.png: mode RGB with more than 8 bits per channel cannot be converted to 8-bit RGB without loss"),
    ("16-bit greyscale png", _image(lambda p: write_png16(p, np.full((32, 32), 300, np.uint16))),
     r"train/cat/a\.png: mode I;16 .*cannot be converted to 8-bit RGB without loss"),
    ("CMYK jpeg", _image(_pil("CMYK"), "a.jpg"),
     r"train/cat/a\.jpg: mode CMYK cannot be converted to 8-bit RGB without loss"),
    ("float tiff", _image(_pil("F", colour=0.5), "a.tif"),
     r"train/cat/a\.tif: mode F .*cannot be converted to 8-bit RGB without loss"),
    ("animated gif", _image(_animated_gif, "a.gif"),
     r"train/cat/a\.gif: an animated image \(2 frames\)"),
    ("image of the wrong size", _image(_pil("RGB", (32, 31))),
     r"train/cat/a\.png: images must be 32x32, got 32x31"),
    ("not an image", _image(lambda p: p.write_bytes(b"\x89PNG\r\n\x1a\n garbage")),
     r"train/cat/a\.png: not a readable image \(truncated, damaged, or not an image format Pillow reads\)$"),
    ("truncated png", _image(lambda p: (_pil("RGB", colour=(1, 2, 3))(p), p.write_bytes(p.read_bytes()[:60]))),
     r"train/cat/a\.png: not a readable image \(truncated, damaged, or not an image format Pillow reads\)$"),
    ("class folder out of range", lambda root: Image.new("RGB", (32, 32)).save(_made(root / "train" / "10") / "a.png"),
     r"train/10: folder name is not a class name"),
    ("broken archive", lambda root: (root.mkdir(), (root / "cifar-10-python.tar.gz").write_bytes(b"\x1f\x8b broken")),
     r"cifar-10-python\.tar\.gz: not a readable \.tar\.gz archive \(truncated, damaged, or not a gzip-compressed tar file\)$"),
]  # fmt: skip

UNLABELED_CASES: list[tuple[str, Writer, str]] = [
    ("unlabeled png with a transparent pixel", _image(_rgba_with_one_transparent_pixel, folder=""),
     r"/a\.png: 1 transparent pixel\(s\)"),
    ("unlabeled 16-bit RGB png", _image(lambda p: write_png16(p, np.ones((32, 32, 3), np.uint16)), folder=""),
     r"/a\.png: mode RGB with more than 8 bits per channel"),
    ("unlabeled CMYK jpeg", _image(_pil("CMYK"), "a.jpeg", folder=""), r"/a\.jpeg: mode CMYK"),
    ("unlabeled image of the wrong size", _image(_pil("L", (64, 32)), folder=""),
     r"/a\.png: images must be 32x32, got 64x32"),
]  # fmt: skip


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True)
    return folder


@pytest.mark.parametrize(
    ("writer", "part", "message"),
    [pytest.param(w, "train", m, id=name) for name, w, m in TRAIN_CASES]
    + [pytest.param(w, "test", m, id=name) for name, w, m in UNLABELED_CASES],
)
def test_every_reader_refuses_what_it_cannot_read_exactly(
    tmp_path: Path, writer: Writer, part: str, message: str
) -> None:
    writer(tmp_path / "data")
    with pytest.raises(UserError, match=message) as caught:
        read_part(tmp_path / "data", part)  # type: ignore[arg-type]
    assert len(str(caught.value).splitlines()) == 1


EXACT_CASES: list[tuple[str, Callable[[np.ndarray], Image.Image]]] = [
    ("greyscale", lambda rgb: Image.fromarray(rgb[..., 0], "L")),
    ("opaque RGBA", lambda rgb: Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]))),
    ("palette", lambda rgb: Image.fromarray(rgb).quantize(256)),
    ("one-bit", lambda rgb: Image.fromarray(rgb[..., 0] > 127)),
]


@pytest.mark.parametrize(("mode", "make"), EXACT_CASES, ids=[name for name, _ in EXACT_CASES])
def test_images_that_convert_exactly_are_read_as_their_rgb_values(
    tmp_path: Path, mode: str, make: Callable[[np.ndarray], Image.Image]
) -> None:
    image = make(_hwc(1)[0])
    (tmp_path / "frog").mkdir()
    image.save(tmp_path / "frog" / "a.png")
    read = read_part(tmp_path, "test")
    assert np.array_equal(read.images[0], np.asarray(image.convert("RGB")))
    assert read.labels.tolist() == [6]


def test_every_suffix_torchvision_reads_is_read(tmp_path: Path) -> None:
    """BMP, TIFF, WebP (lossless) and PPM files are images too, as in torchvision's ImageFolder."""
    pixels = _hwc(4)
    (tmp_path / "ship").mkdir()
    for index, suffix in enumerate((".bmp", ".tif", ".ppm", ".webp")):
        Image.fromarray(pixels[index]).save(tmp_path / "ship" / f"{index}{suffix}", **({"lossless": True} if suffix == ".webp" else {}))
    read = read_part(tmp_path, "test")
    assert np.array_equal(read.images, pixels) and read.labels.tolist() == [8] * 4


def test_integer_pixels_and_keras_labels_are_converted_exactly(tmp_path: Path) -> None:
    """int64 pixels within 0..255 and (N, 1) labels (as Keras saves CIFAR) lose nothing."""
    np.savez(tmp_path / "train.npz", x=_hwc(3).astype(np.int64), y=np.array([[4], [0], [9]]))
    _python(_rows(3).astype(np.int32), np.array([4, 0, 9], np.uint8))(tmp_path / "py")
    for data_dir in (tmp_path, tmp_path / "py"):
        read = read_part(data_dir, "train")
        assert read.images.dtype == np.uint8 and np.array_equal(read.images, _hwc(3))
        assert read.labels.tolist() == [4, 0, 9]
