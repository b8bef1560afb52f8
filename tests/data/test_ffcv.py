"""The ffcv loader (an optional extra): its .beton files, batches that match the device
loader's, ``raycifar data prepare --format ffcv``, and a sweep on it. Every FFCV test lives
here, so that this module alone is skipped without FFCV (pip install 'raycifar[ffcv]');
under CI=true, .ci/run fails when any test here was skipped."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import write_cifar10
from conftest import TINY_SPACE
from loader_refs import hand_counted_accuracy, image_set, normalized, raw
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data import ImageSet, train_val_split
from raycifar.data.ffcv_loader import beton_dir
from raycifar.results.layout import entry_dir

ffcv = pytest.importorskip("ffcv", reason="FFCV is an optional extra (pip install 'raycifar[ffcv]')")

CPU = torch.device("cpu")


def test_ffcv_files_round_trip_exactly(tmp_path: Path) -> None:
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import ToTensor

    from raycifar.data.ffcv_loader import write_beton

    data = image_set(70)
    write_beton(data, tmp_path / "part.beton")
    loader = Loader(
        str(tmp_path / "part.beton"), batch_size=32, num_workers=1, order=OrderOption.SEQUENTIAL, drop_last=False,
        pipelines={"image": [SimpleRGBImageDecoder(), ToTensor()], "label": [IntDecoder(), ToTensor()]},
    )  # fmt: skip
    batches = [(images.clone(), labels.clone()) for images, labels in loader]
    assert np.array_equal(torch.cat([b for b, _ in batches]).numpy(), data.images)
    assert (
        torch.cat([labels for _, labels in batches]).flatten().tolist()
        == data.labels.tolist()
    )


def test_ffcv_loader_matches_the_device_loader_and_augments(tmp_path: Path) -> None:
    from raycifar.data.ffcv_loader import FfcvLoader, write_beton

    data = image_set(64)
    data = ImageSet(
        data.images, np.arange(64)
    )  # a label per image identifies it after shuffling
    write_beton(data, tmp_path / "part.beton")
    val = [
        (images.clone(), labels.clone())
        for images, labels in FfcvLoader(tmp_path / "part.beton", 32, CPU, False)
    ]
    assert torch.allclose(
        torch.cat([b for b, _ in val]), normalized(data.images), atol=1e-5
    )
    assert torch.cat([labels for _, labels in val]).dtype == torch.int64

    train = FfcvLoader(
        tmp_path / "part.beton", 64, CPU, True, seed=0, padding=0, flip=False, cutout=8
    )
    train.set_epoch(0)
    images, labels = next(iter(train))
    cut = raw(images)
    original = data.images[labels.numpy()]
    assert not np.array_equal(cut, original)
    assert ((cut == original) | (cut == 0)).all(), "only cutout squares changed"


def test_prepared_files_hold_the_same_split_and_follow_the_data(tmp_path: Path) -> None:
    from raycifar.data import train_val_split
    from raycifar.data.ffcv_loader import FfcvLoader, prepare_ffcv

    data = write_cifar10(tmp_path / "data", train_batches=1, per_batch=80, test=20)
    first = prepare_ffcv(data, "cifar10", "fine", 0.25, split_seed=4)
    train, val = train_val_split(data, 0.25, 4)
    assert first.written and first.counts == {
        "train": len(train),
        "val": len(val),
        "test": 20,
    }
    loaded = [
        (images.clone(), labels.clone())
        for images, labels in FfcvLoader(first.folder / "val.beton", 8, CPU, False)
    ]
    assert torch.cat([labels for _, labels in loaded]).tolist() == val.labels.tolist()
    assert torch.allclose(
        torch.cat([b for b, _ in loaded]), normalized(val.images), atol=1e-5
    )
    assert not prepare_ffcv(data, "cifar10", "fine", 0.25, split_seed=4).written, (
        "up to date"
    )
    write_cifar10(data, train_batches=1, per_batch=80, test=20, seed=9)
    assert prepare_ffcv(data, "cifar10", "fine", 0.25, split_seed=4).written, (
        "new data, new files"
    )


def test_data_prepare_writes_the_split_once(tmp_path: Path, cifar_dir: Path) -> None:
    data = tmp_path / "data"
    data.symlink_to(cifar_dir, target_is_directory=True)
    prepare = ["data", "prepare", "--format", "ffcv", "--data-dir", str(data), "--seed", "3"]
    env = {"COLUMNS": "300", "RAY_ADDRESS": ""}
    first = CliRunner().invoke(app, prepare, env=env)
    assert first.exit_code == 0, first.output
    folder = beton_dir(data.resolve(), "cifar10", "fine", 0.1, 3)
    train, val = train_val_split(cifar_dir, 0.1, 3)
    counts = f"train {len(train)}, val {len(val)}, test 200 images"
    assert f"wrote {folder} ({counts})" in first.stdout
    files = sorted(p.name for p in folder.iterdir())
    assert files == ["manifest.json", "test.beton", "train.beton", "val.beton"]
    written = (folder / "train.beton").stat().st_mtime_ns
    again = CliRunner().invoke(app, prepare, env=env)
    assert f"up to date: {folder}" in again.stdout
    assert (folder / "train.beton").stat().st_mtime_ns == written


@pytest.mark.slow
def test_ffcv_sweep(tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar) -> None:
    data = tmp_path / "data"
    data.symlink_to(cifar_dir, target_is_directory=True)
    results = tmp_path / "results"
    raycifar("sweep", str(TINY_SPACE), "--data-dir", str(data), "--results-dir", str(results), "--num-samples", "1",
             "--max-epochs", "1", "--wandb", "off", "--address", ray_address, "--loader", "ffcv", cwd=tmp_path)  # fmt: skip
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    assert json.loads(row["config_json"])["loader"] == "ffcv"
    folder = data / "ffcv" / "cifar10-fine-val0.1-seed0"
    assert (folder / "train.beton").is_file()
    val = train_val_split(cifar_dir, 0.1, 0)[1]
    assert json.loads((folder / "manifest.json").read_text())["counts"]["val"] == len(val)
    assert row["val_acc"] == hand_counted_accuracy(entry_dir(results, row["entry_id"]), val), "scored on val.beton"
