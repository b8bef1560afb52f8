"""The CIFAR-10 python-version reader, the validation split and the device loader."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import archive_cifar10, write_batch, write_cifar10
from click.testing import Result
from conftest import SHARED_CIFAR10, TINY_SPACE
from loader_refs import normalized
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data import (
    CIFAR10_CLASSES,
    DeviceLoader,
    ImageSet,
    download,
    read_part,
    stratified_split,
    train_val_split,
)
from raycifar.errors import UserError


def test_reads_any_number_of_batches_in_order(cifar_dir: Path) -> None:
    train = read_part(cifar_dir, "train")
    test = read_part(cifar_dir, "test")
    assert train.images.shape == (600, 32, 32, 3) and train.images.dtype == np.uint8
    assert test.images.shape == (200, 32, 32, 3)
    raw = pickle.loads((cifar_dir / "cifar-10-batches-py" / "data_batch_2").read_bytes(), encoding="bytes")
    assert train.labels[300:].tolist() == raw[b"labels"]
    assert train.class_names == CIFAR10_CLASSES


def test_pixel_layout_is_planar_rgb_row_major(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    row = np.zeros((1, 3072), dtype=np.uint8)
    row[0, 0] = 10  # red, pixel (0, 0)
    row[0, 1024 + 33] = 20  # green, pixel (1, 1)
    row[0, 2048 + 1023] = 30  # blue, pixel (31, 31)
    write_batch(folder / "data_batch_1", row, [3], "b")
    write_batch(folder / "test_batch", row, [3], "t")
    image = read_part(tmp_path, "train").images[0]
    assert image[0, 0, 0] == 10 and image[1, 1, 1] == 20 and image[31, 31, 2] == 30
    assert image.sum() == 60


def test_archive_reads_the_same_as_the_folder(cifar_dir: Path, tmp_path: Path) -> None:
    archive_cifar10(cifar_dir, tmp_path)
    for part in ("train", "test"):
        from_folder, from_archive = read_part(cifar_dir, part), read_part(tmp_path, part)
        assert np.array_equal(from_folder.images, from_archive.images)
        assert np.array_equal(from_folder.labels, from_archive.labels)


def test_missing_data_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"CIFAR-10 not found in .*cifar-10-batches-py") as err:
        read_part(tmp_path, "train")
    assert "--" not in str(err.value), "the reader names no option: each command adds a hint with its own"


def test_truncated_batch_names_the_file(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_batches=1, per_batch=20, test=10)
    batch = tmp_path / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:500])
    with pytest.raises(UserError, match=r"data_batch_1: not a readable CIFAR-10 batch"):
        read_part(tmp_path, "train")


def test_out_of_range_labels_are_rejected(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    write_batch(folder / "data_batch_1", np.zeros((2, 3072), np.uint8), [1, 12], "b")
    write_batch(folder / "test_batch", np.zeros((1, 3072), np.uint8), [1], "t")
    with pytest.raises(UserError, match=r"data_batch_1: cifar10 labels must be in 0..9, found 1..12"):
        read_part(tmp_path, "train")


def test_split_is_stratified_seeded_and_disjoint() -> None:
    labels = np.repeat(np.arange(10), 50)
    train, val = stratified_split(labels, 0.1, seed=3)
    assert len(val) == 50 and np.bincount(labels[val]).tolist() == [5] * 10
    assert set(train).isdisjoint(val) and len(train) + len(val) == 500
    again_train, again_val = stratified_split(labels, 0.1, seed=3)
    assert np.array_equal(val, again_val) and np.array_equal(train, again_train)
    assert not np.array_equal(val, stratified_split(labels, 0.1, seed=4)[1])


def test_train_and_val_partition_the_training_set(cifar_dir: Path) -> None:
    train, val = train_val_split(cifar_dir, 0.1, 0)
    assert len(train) + len(val) == 600 and len(val) == 60
    full = read_part(cifar_dir, "train").images.reshape(600, -1)
    rows = {row.tobytes() for row in full}
    assert {r.tobytes() for r in train.images.reshape(len(train), -1)} | {r.tobytes() for r in val.images.reshape(60, -1)} == rows


def _image_set(n: int) -> ImageSet:
    images = np.arange(n * 3072, dtype=np.int64).reshape(n, 32, 32, 3) % 251
    return ImageSet(images.astype(np.uint8), np.arange(n) % 10)


def test_loader_shards_the_same_permutation_across_ranks() -> None:
    data = _image_set(103)
    seen = []
    for rank in range(2):
        loader = DeviceLoader(data, 16, torch.device("cpu"), train=True, seed=5, rank=rank, world_size=2)
        loader.set_epoch(0)
        seen.append(torch.cat([labels for _, labels in loader]))
        assert len(loader) == 4
    assert len(seen[0]) == len(seen[1]) == 51


def test_train_batches_are_augmented_and_val_batches_are_not() -> None:
    data = _image_set(8)
    train = DeviceLoader(data, 8, torch.device("cpu"), train=True, seed=0)
    val = DeviceLoader(data, 8, torch.device("cpu"), train=False)
    (val_images, val_labels), = list(val)
    assert val_labels.tolist() == data.labels.tolist()
    assert torch.allclose(val_images, normalized(data.images), atol=1e-5), "the images in order, only normalized"
    train.set_epoch(0)
    first = next(iter(train))[0]
    train.set_epoch(0)
    assert torch.equal(first, next(iter(train))[0]), "an epoch is reproducible from its seed"
    train.set_epoch(1)
    assert not torch.equal(first, next(iter(train))[0])


@pytest.mark.skipif(not SHARED_CIFAR10.exists(), reason="the shared real CIFAR-10 subset is not present")
def test_reads_the_real_cifar10_subset() -> None:
    train, test = read_part(SHARED_CIFAR10, "train"), read_part(SHARED_CIFAR10, "test")
    assert len(train) == 10_000 and len(test) == 2_000
    assert set(np.unique(train.labels)) == set(range(10))
    assert 100 < train.images.mean() < 140


def test_download_fetches_with_torchvision_into_the_data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    calls = []

    def fake_cifar10(root: str, train: bool, download: bool) -> None:
        calls.append((root, train, download))
        write_cifar10(Path(root), train_batches=1, per_batch=20, test=10)

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", fake_cifar10)
    download(tmp_path / "new")
    assert calls == [(str(tmp_path / "new"), True, True)]
    assert len(read_part(tmp_path / "new", "train")) == 20


def test_failed_download_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import torchvision.datasets

    def offline(root: str, train: bool, download: bool) -> None:
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(torchvision.datasets, "CIFAR10", offline)
    with pytest.raises(UserError, match=r"^downloading CIFAR-10 into .* failed \(Network is unreachable\); without internet, put the official"):
        download(tmp_path)


def _labels(per_class: int) -> np.ndarray:
    return np.repeat(np.arange(10), per_class)


def test_a_split_that_leaves_validation_empty_is_refused_with_the_fix() -> None:
    """Five images per class and val_fraction 0.1 round to no validation image at all."""
    with pytest.raises(
        UserError,
        match=r"^tiny: val_fraction 0\.1 leaves 0 of its 50 images for validation \(largest class: 5 images\); "
        r"use more images or a val_fraction of 0\.11 or more \(--val-fraction",
    ):
        stratified_split(_labels(5), 0.1, 0, "tiny")
    train, val = stratified_split(_labels(5), 0.11, 0, "tiny")  # the fraction it suggests works
    assert np.bincount(_labels(5)[val]).tolist() == [1] * 10 and len(train) == 40
    with pytest.raises(UserError, match=r"largest class: 1 images\); use at least 2 images of a class"):
        stratified_split(_labels(1), 0.4, 0)
    with pytest.raises(UserError, match=r"val_fraction 0\.9 leaves no training images"):
        stratified_split(_labels(1), 0.9, 0)


def test_split_seeds_must_be_whole_numbers_from_zero() -> None:
    with pytest.raises(UserError, match=r"^split seed -1: must be 0 or more$"):
        stratified_split(_labels(10), 0.1, -1)
    with pytest.raises(UserError, match=r"^split seed 1\.5: must be a whole number, 0 or more$"):
        stratified_split(_labels(10), 0.1, 1.5)  # type: ignore[arg-type]
    assert np.array_equal(stratified_split(_labels(10), 0.1, np.int64(7))[1], stratified_split(_labels(10), 0.1, 7)[1])


def _data_info(*args: str) -> Result:
    return CliRunner().invoke(app, ["data", "info", *args], env={"COLUMNS": "300", "RAY_ADDRESS": ""})


def test_data_info_refuses_an_empty_validation_split_and_a_negative_seed_in_one_line(tmp_path: Path) -> None:
    write_cifar10(tmp_path, train_batches=1, per_batch=30, test=10)  # about 3 images per class
    tiny = _data_info("--data-dir", str(tmp_path))
    assert tiny.exit_code == 2 and len(tiny.stderr.strip().splitlines()) == 1
    assert "cifar-10-batches-py: val_fraction 0.1 leaves 0 of its 30 images for validation" in tiny.stderr
    negative = _data_info("--data-dir", str(tmp_path), "--val-fraction", "0.3", "--seed", "-1")
    assert negative.exit_code == 2 and negative.stderr.strip().splitlines() == [
        "error: Invalid value for '--seed': Input should be greater than or equal to 0 (got '-1') (see root data info --help)"
    ]


def test_data_info_lists_the_files_it_does_not_read(cifar_dir: Path, tmp_path: Path) -> None:
    shutil.copytree(cifar_dir, tmp_path / "data")
    folder = tmp_path / "data" / "cifar-10-batches-py"
    shutil.copy(folder / "data_batch_1", folder / "data_batch_1 copy")
    result = _data_info("--data-dir", str(tmp_path / "data"), "--format", "json")
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ignored"] == ["data_batch_1 copy"] and info["splits"]["train"]["count"] == 540


def test_sweep_refuses_an_empty_validation_split_before_ray_starts(tmp_path: Path) -> None:
    """The sweep splits as data info does, so it fails the same way, before any trial runs."""
    write_cifar10(tmp_path / "data", train_batches=1, per_batch=30, test=10)
    results = tmp_path / "results"
    result = CliRunner().invoke(
        app, ["sweep", str(TINY_SPACE), "--data-dir", str(tmp_path / "data"), "--results-dir", str(results)],
        env={"COLUMNS": "300", "RAY_ADDRESS": ""},
    )  # fmt: skip
    assert result.exit_code == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "val_fraction 0.1 leaves 0 of its 30 images for validation" in result.stderr
    assert not results.exists()
