"""Every reader on files written in the exact official byte layouts, and the other layouts."""

from __future__ import annotations

import pickle
import shutil
import tarfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torchvision.datasets
from cifar_files import (
    archive,
    coarse_of,
    rows_to_hwc,
    synthetic_images,
    write_batch,
    write_cifar10,
    write_cifar10_binary,
    write_cifar100,
    write_cifar100_binary,
    write_image_folder,
    write_npz,
    write_records,
)
from PIL import Image

from raycifar.data import detect_source, download, read_part
from raycifar.data.catalog import (
    CIFAR10_CLASSES,
    CIFAR100_COARSE_CLASSES,
    CIFAR100_FINE_CLASSES,
)
from raycifar.data.official import ignored_files
from raycifar.errors import UserError


def _unpickle(path: Path) -> dict:
    return pickle.loads(path.read_bytes(), encoding="bytes")


def test_cifar100_python_reads_fine_and_coarse_labels(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=120, test=40)
    raw = _unpickle(tmp_path / "cifar-100-python" / "train")
    fine = read_part(tmp_path, "train", "cifar100", "fine")
    coarse = read_part(tmp_path, "train", "cifar100", "coarse")
    assert (
        fine.labels.tolist() == raw[b"fine_labels"]
        and coarse.labels.tolist() == raw[b"coarse_labels"]
    )
    assert np.array_equal(fine.images, rows_to_hwc(raw[b"data"])) and np.array_equal(
        fine.images, coarse.images
    )
    assert fine.class_names == CIFAR100_FINE_CLASSES and len(fine.class_names) == 100
    assert (
        coarse.class_names == CIFAR100_COARSE_CLASSES and len(coarse.class_names) == 20
    )
    assert len(read_part(tmp_path, "test", "cifar100")) == 40
    assert detect_source(tmp_path, "cifar100").format == "python"


def test_cifar100_archive_reads_the_same_as_the_folder(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "folder", train=50, test=20)
    packed = archive(
        tmp_path / "folder",
        "cifar-100-python",
        tmp_path / "packed" / "cifar-100-python.tar.gz",
    )
    for data_dir in (
        tmp_path / "packed",
        packed,
    ):  # the folder holding the archive, or the archive itself
        source = detect_source(data_dir, "cifar100", "coarse")
        assert source.format == "python-archive"
        for part in ("train", "test"):
            ours, theirs = (
                source.read(part),
                read_part(tmp_path / "folder", part, "cifar100", "coarse"),
            )
            assert np.array_equal(ours.images, theirs.images) and np.array_equal(
                ours.labels, theirs.labels
            )


def test_binary_cifar10_records_are_one_label_byte_then_planar_pixels(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "cifar-10-batches-bin"
    folder.mkdir()
    row = np.zeros((2, 3072), dtype=np.uint8)
    row[0, 0], row[0, 1024 + 33], row[0, 2048 + 1023] = (
        10,
        20,
        30,
    )  # red (0,0), green (1,1), blue (31,31)
    row[1, 5] = 99
    write_records(folder / "data_batch_1.bin", [[7, 2]], row)
    write_records(folder / "test_batch.bin", [[1]], row[:1])
    train = read_part(tmp_path, "train")
    assert train.labels.tolist() == [7, 2]
    image = train.images[0]
    assert (
        image[0, 0, 0] == 10
        and image[1, 1, 1] == 20
        and image[31, 31, 2] == 30
        and image.sum() == 60
    )
    assert train.images[1, 0, 5, 0] == 99
    assert detect_source(tmp_path).format == "binary"


def test_binary_cifar10_reads_every_batch_in_order(tmp_path: Path) -> None:
    write_cifar10_binary(tmp_path, train_batches=3, per_batch=20, test=10)
    rng = np.random.default_rng(0)  # the writer's draws, repeated
    expected = [synthetic_images(20, rng) for _ in range(3)]
    train = read_part(tmp_path, "train")
    assert np.array_equal(
        train.images, rows_to_hwc(np.concatenate([d for d, _ in expected]))
    )
    assert train.labels.tolist() == [
        label for _, labels in expected for label in labels
    ]
    assert len(read_part(tmp_path, "test")) == 10


def test_binary_cifar100_records_put_coarse_before_fine(tmp_path: Path) -> None:
    write_cifar100_binary(tmp_path, train=30, test=12)
    rng = np.random.default_rng(0)
    data, fine = synthetic_images(30, rng, classes=100)
    assert read_part(tmp_path, "train", "cifar100", "fine").labels.tolist() == fine
    assert read_part(
        tmp_path, "train", "cifar100", "coarse"
    ).labels.tolist() == coarse_of(fine)
    assert np.array_equal(
        read_part(tmp_path, "train", "cifar100").images, rows_to_hwc(data)
    )
    packed = archive(
        tmp_path, "cifar-100-binary", tmp_path / "a" / "cifar-100-binary.tar.gz"
    )
    assert detect_source(packed.parent, "cifar100").format == "binary-archive"
    assert np.array_equal(
        read_part(packed.parent, "test", "cifar100").images,
        read_part(tmp_path, "test", "cifar100").images,
    )


def test_truncated_binary_file_names_the_file(tmp_path: Path) -> None:
    write_cifar10_binary(tmp_path, train_batches=1, per_batch=4, test=2)
    batch = tmp_path / "cifar-10-batches-bin" / "data_batch_1.bin"
    batch.write_bytes(batch.read_bytes()[:-100])
    with pytest.raises(
        UserError,
        match=r"data_batch_1.bin: 12192 bytes is not a whole number of 3073-byte records",
    ):
        read_part(tmp_path, "train")


def test_truncated_cifar100_pickle_names_the_file(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=10, test=5)
    batch = tmp_path / "cifar-100-python" / "test"
    batch.write_bytes(batch.read_bytes()[:300])
    with pytest.raises(
        UserError, match=r"cifar-100-python/test: not a readable CIFAR-100 batch"
    ):
        read_part(tmp_path, "test", "cifar100")


def test_wrong_pixel_count_is_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    write_batch(folder / "data_batch_1", np.zeros((2, 1024), np.uint8), [1, 2], "b")
    write_batch(folder / "test_batch", np.zeros((1, 3072), np.uint8), [1], "t")
    with pytest.raises(
        UserError,
        match=r"data_batch_1: expected pixel rows of 3072 values, got .*\(2, 1024\)",
    ):
        read_part(tmp_path, "train")


def test_npz_round_trip_and_checks(tmp_path: Path) -> None:
    write_npz(tmp_path, train=30, test=10)
    with np.load(tmp_path / "train.npz") as arrays:
        assert np.array_equal(read_part(tmp_path, "train").images, arrays["x"])
        assert read_part(tmp_path, "train").labels.tolist() == arrays["y"].tolist()
    np.savez(
        tmp_path / "test.npz", x=np.zeros((4, 3, 32, 32), np.uint8), y=np.zeros(4, int)
    )
    with pytest.raises(
        UserError,
        match=r"test.npz: x must be uint8 of shape \(N, 32, 32, 3\), got uint8 \(4, 3, 32, 32\)",
    ):
        read_part(tmp_path, "test")
    np.savez(
        tmp_path / "test.npz", x=np.zeros((2, 32, 32, 3), np.uint8), y=np.array([3, 10])
    )
    with pytest.raises(
        UserError, match=r"test.npz: cifar10 labels must be in 0..9, found 3..10"
    ):
        read_part(tmp_path, "test")
    np.savez(tmp_path / "test.npz", images=np.zeros((2, 32, 32, 3), np.uint8))
    with pytest.raises(UserError, match=r"test.npz: missing array x and y"):
        read_part(tmp_path, "test")


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, list[int]]:
    data, labels = synthetic_images(n, np.random.default_rng(seed))
    return rows_to_hwc(data), labels


def test_image_folders_map_class_names_to_the_official_indices(tmp_path: Path) -> None:
    images, labels = _images(24)
    write_image_folder(tmp_path / "train", images, labels)
    test_images, test_labels = _images(8, seed=1)
    write_image_folder(tmp_path / "test", test_images, test_labels)
    train = read_part(tmp_path, "train")
    order = sorted(
        range(24), key=lambda i: (CIFAR10_CLASSES[labels[i]], i)
    )  # class folders, then file names
    assert train.labels.tolist() == [labels[i] for i in order]
    assert np.array_equal(train.images, images[order]), "PNG is lossless"
    assert detect_source(tmp_path).format == "imagefolder"


def test_class_folders_alone_are_an_out_of_distribution_test_set(
    tmp_path: Path,
) -> None:
    images, _ = _images(6)
    write_image_folder(tmp_path, images, [3] * 6)  # only "cat", like a scraped test set
    assert detect_source(tmp_path).parts() == ("test",)
    assert read_part(tmp_path, "test").labels.tolist() == [3] * 6
    with pytest.raises(UserError, match=r"no train images in this imagefolder layout"):
        read_part(tmp_path, "train")
    (tmp_path / "cat").rename(tmp_path / "5")  # class indices work as folder names too
    assert read_part(tmp_path, "test").labels.tolist() == [5] * 6
    (tmp_path / "5").rename(tmp_path / "kitten")
    with pytest.raises(
        UserError,
        match=r"kitten: folder name is not a class name \(airplane, automobile",
    ):
        read_part(tmp_path, "test")


def test_unlabeled_images_are_accepted_as_a_test_set(tmp_path: Path) -> None:
    images, _ = _images(3)
    for index, image in enumerate(images):
        Image.fromarray(image).save(tmp_path / f"img{index}.jpg", quality=95)
    test = read_part(tmp_path, "test")
    assert detect_source(tmp_path).format == "images"
    assert (
        not test.labeled
        and test.labels.tolist() == [-1, -1, -1]
        and test.images.shape == (3, 32, 32, 3)
    )


def test_wrong_image_size_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "dog").mkdir()
    Image.new("RGB", (64, 48)).save(tmp_path / "dog" / "big.png")
    with pytest.raises(
        UserError, match=r"dog/big.png: images must be 32x32, got 64x48"
    ):
        read_part(tmp_path, "test")


def test_missing_data_lists_the_layouts_and_hints_at_the_other_dataset(
    tmp_path: Path,
) -> None:
    with pytest.raises(
        UserError,
        match=r"CIFAR-100 not found in .*cifar-100-python/ .*cifar-100-binary/.*train.npz",
    ):
        read_part(tmp_path, "train", "cifar100")
    write_cifar100(tmp_path, train=5, test=5)
    with pytest.raises(
        UserError,
        match=r"CIFAR-10 not found .*found cifar-100-python: use --dataset cifar100",
    ):
        read_part(tmp_path, "train", "cifar10")


def test_coarse_labels_exist_only_for_cifar100(cifar_dir: Path) -> None:
    with pytest.raises(
        UserError, match=r"label mode 'coarse' exists only for cifar100, not cifar10"
    ):
        read_part(cifar_dir, "train", "cifar10", "coarse")


def test_download_fetches_cifar100_with_torchvision(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []

    def fake_cifar100(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        write_cifar100(Path(root), train=10, test=5)

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", fake_cifar100)
    download(tmp_path / "new", "cifar100")
    assert calls == [(str(tmp_path / "new"), True, True)]
    assert len(read_part(tmp_path / "new", "train", "cifar100")) == 10


def test_cifar10_python_files_are_not_taken_for_cifar100(cifar_dir: Path) -> None:
    """The same folder can hold both datasets: each reads its own files."""
    assert detect_source(cifar_dir, "cifar10").format == "python"
    with pytest.raises(UserError, match=r"CIFAR-100 not found"):
        detect_source(cifar_dir, "cifar100")


# --- what the reference tools read is read; only official names are batches ---------------------


def test_batches_resaved_by_python3_with_str_keys_are_read(tmp_path: Path) -> None:
    """torchvision reads batches (and batches.meta / meta) pickled with str keys; so do we."""
    for dataset, write in (("cifar10", write_cifar10), ("cifar100", write_cifar100)):
        write(tmp_path / "bytes" / dataset)
        write(tmp_path / "str" / dataset, str_keys=True)
        modes = ("fine", "coarse") if dataset == "cifar100" else ("fine",)
        for mode, part in ((mode, part) for mode in modes for part in ("train", "test")):
            ours = read_part(tmp_path / "str" / dataset, part, dataset, mode)
            official = read_part(tmp_path / "bytes" / dataset, part, dataset, mode)
            assert np.array_equal(ours.images, official.images) and np.array_equal(ours.labels, official.labels)
    meta = pickle.loads((tmp_path / "str" / "cifar100" / "cifar-100-python" / "meta").read_bytes())
    assert "fine_label_names" in meta, "the writer really wrote str keys"


def test_a_cifar100_batch_without_the_asked_labels_names_its_keys(tmp_path: Path) -> None:
    write_cifar100(tmp_path, train=10, test=5, str_keys=True)
    batch = tmp_path / "cifar-100-python" / "train"
    content = pickle.loads(batch.read_bytes())
    del content["coarse_labels"]
    batch.write_bytes(pickle.dumps(content))
    assert len(read_part(tmp_path, "train", "cifar100", "fine")) == 10
    with pytest.raises(
        UserError,
        match=r"cifar-100-python/train: this CIFAR-100 batch has no coarse_labels "
        r"\(its keys: batch_label, data, filenames, fine_labels\)",
    ):
        read_part(tmp_path, "train", "cifar100", "coarse")


@pytest.mark.parametrize(
    ("layout", "write", "folder", "copy"),
    [
        ("python", write_cifar10, "cifar-10-batches-py", "data_batch_1 copy"),
        ("python", write_cifar10, "cifar-10-batches-py", "data_batch_01"),
        ("binary", write_cifar10_binary, "cifar-10-batches-bin", "data_batch_1 copy.bin"),
        ("binary", write_cifar10_binary, "cifar-10-batches-bin", "data_batch_1.bin.bak"),
        ("python", write_cifar100, "cifar-100-python", "train copy"),
        ("binary", write_cifar100_binary, "cifar-100-binary", "train (2).bin"),
    ],
)
def test_copies_beside_the_official_batches_are_not_read(
    tmp_path: Path, layout: str, write: Callable[..., Path], folder: str, copy: str
) -> None:
    """A Finder copy (``data_batch_1 copy``) would put the same images in train and validation."""
    dataset = "cifar100" if "100" in folder else "cifar10"
    write(tmp_path)
    before = read_part(tmp_path, "train", dataset)
    official = "train" if dataset == "cifar100" else "data_batch_1"
    official += ".bin" if layout == "binary" else ""
    shutil.copy(tmp_path / folder / official, tmp_path / folder / copy)
    after = read_part(tmp_path, "train", dataset)
    assert np.array_equal(after.images, before.images) and np.array_equal(after.labels, before.labels)
    assert ignored_files(detect_source(tmp_path, dataset)) == [copy]


def test_batches_are_read_in_batch_number_order(tmp_path: Path) -> None:
    """data_batch_10 comes after data_batch_2 (file-name order would put it first)."""
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for index in (1, 2, 10):
        write_batch(folder / f"data_batch_{index}", np.full((1, 3072), index, np.uint8), [index % 10], "b")
    write_batch(folder / "test_batch", np.zeros((1, 3072), np.uint8), [0], "t")
    train = read_part(tmp_path, "train")
    assert train.images[:, 0, 0, 0].tolist() == [1, 2, 10] and train.labels.tolist() == [1, 2, 0]


def test_an_archive_holding_a_batch_twice_is_refused(tmp_path: Path) -> None:
    write_cifar10_binary(tmp_path / "a", train_batches=1, per_batch=3, test=2)
    packed = tmp_path / "packed" / "cifar-10-binary.tar.gz"
    packed.parent.mkdir()
    with tarfile.open(packed, "w:gz") as out:
        out.add(tmp_path / "a" / "cifar-10-batches-bin", arcname="cifar-10-batches-bin")
        out.add(tmp_path / "a" / "cifar-10-batches-bin", arcname="old/cifar-10-batches-bin")
    with pytest.raises(
        UserError,
        match=r"cifar-10-binary.tar.gz: holds data_batch_1.bin twice \(cifar-10-batches-bin/data_batch_1.bin "
        r"and old/cifar-10-batches-bin/data_batch_1.bin\); keep one",
    ):
        read_part(packed.parent, "train")
