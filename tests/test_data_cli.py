"""``raycifar data info``, ``raycifar data prepare`` and the data options of ``raycifar sweep``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cifar_files import write_cifar100
from conftest import TINY_SPACE

from raycifar.data import read_part, train_val_split
from raycifar.data.ffcv_loader import INSTALL_HINT


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        **{k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"},
        "RAY_ADDRESS": "",
        "COLUMNS": "200",
    }
    return subprocess.run(
        [sys.executable, "-m", "raycifar", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
        check=False,
    )


def test_data_info_json_counts_splits_classes_and_channel_statistics(
    tmp_path: Path, cifar_dir: Path
) -> None:
    result = run_cli(
        "data",
        "info",
        "--data-dir",
        str(cifar_dir),
        "--val-fraction",
        "0.2",
        "--format",
        "json",
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "python" and info["source"].endswith("cifar-10-batches-py")
    splits = info["splits"]
    train_part, val_part = train_val_split(cifar_dir, 0.2, 0)
    assert (
        splits["train"]["count"],
        splits["val"]["count"],
        splits["test"]["count"],
    ) == (
        len(train_part),
        len(val_part),
        200,
    )
    train = read_part(cifar_dir, "train")
    per_class = np.bincount(train.labels, minlength=10)
    for index, name in enumerate(train.class_names):
        assert (
            splits["train"]["per_class"][name] + splits["val"]["per_class"][name]
            == per_class[index]
        )
    pixels = train.images.reshape(-1, 3) / 255
    assert info["channel_mean"] == pytest.approx(pixels.mean(axis=0).tolist(), abs=1e-4)
    assert info["channel_std"] == pytest.approx(pixels.std(axis=0).tolist(), abs=1e-4)


def test_data_info_table_for_cifar100_coarse(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "data", train=100, test=40)
    result = run_cli("data", "info", "--data-dir", str(tmp_path / "data"), "--dataset", "cifar100",
                     "--label-mode", "coarse", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 0, result.stderr
    train, val = train_val_split(tmp_path / "data", 0.1, 0, "cifar100", "coarse")
    assert f"train {len(train)}, val {len(val)}, test 40" in result.stdout
    assert (
        "aquatic_mammals" in result.stdout
        and "vehicles_2" in result.stdout
        and "apple" not in result.stdout
    )


def test_data_commands_fail_in_one_line(tmp_path: Path, cifar_dir: Path) -> None:
    missing = run_cli(
        "data", "info", "--data-dir", str(tmp_path / "none"), cwd=tmp_path
    )
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "CIFAR-10 not found in" in missing.stderr
    bad_fraction = run_cli(
        "data",
        "info",
        "--data-dir",
        str(cifar_dir),
        "--val-fraction",
        "0.7",
        cwd=tmp_path,
    )
    assert (
        bad_fraction.returncode == 2
        and "--val-fraction 0.7: must be above 0 and below 0.5" in bad_fraction.stderr
    )


def test_sweep_data_options_are_checked_before_ray_starts(
    tmp_path: Path, cifar_dir: Path
) -> None:
    results = tmp_path / "results"
    coarse = run_cli("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--label-mode", "coarse",
                     "--results-dir", str(results), cwd=tmp_path)  # fmt: skip
    assert coarse.returncode == 2
    assert coarse.stderr.strip().splitlines() == [
        f"error: {TINY_SPACE} with --label-mode coarse: label_mode: coarse labels exist only for cifar100, not cifar10"
    ]
    no_cifar100 = run_cli("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--dataset", "cifar100",
                          "--results-dir", str(results), cwd=tmp_path)  # fmt: skip
    assert (
        no_cifar100.returncode == 2 and "CIFAR-100 not found in" in no_cifar100.stderr
    )
    assert not results.exists()


def test_ffcv_hint_when_it_is_missing(tmp_path: Path, cifar_dir: Path) -> None:
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "ffcv.py").write_text("raise ImportError('no ffcv here')\n")
    env = {
        **os.environ,
        "PYTHONPATH": f"{shadow}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
    }
    result = subprocess.run(
        [sys.executable, "-m", "raycifar", "data", "prepare", "--format", "ffcv", "--data-dir", str(cifar_dir)],
        cwd=tmp_path, capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {INSTALL_HINT}"]
    assert "pip install 'raycifar[ffcv]'" in INSTALL_HINT


def test_data_prepare_writes_the_split_once(tmp_path: Path, cifar_dir: Path) -> None:
    pytest.importorskip("ffcv", reason="FFCV is an optional extra")
    from typer.testing import CliRunner

    from raycifar.cli import app
    from raycifar.data.ffcv_loader import beton_dir

    data = tmp_path / "data"
    data.symlink_to(cifar_dir, target_is_directory=True)
    prepare = [
        "data",
        "prepare",
        "--format",
        "ffcv",
        "--data-dir",
        str(data),
        "--seed",
        "3",
    ]
    first = CliRunner().invoke(
        app, prepare, env={"COLUMNS": "300"}
    )  # in this process: FFCV is imported once
    assert first.exit_code == 0, first.output
    folder = beton_dir(data.resolve(), "cifar10", "fine", 0.1, 3)
    train, val = train_val_split(cifar_dir, 0.1, 3)
    assert (
        f"wrote {folder} (train {len(train)}, val {len(val)}, test 200 images)"
        in first.output
    )
    assert sorted(p.name for p in folder.iterdir()) == [
        "manifest.json",
        "test.beton",
        "train.beton",
        "val.beton",
    ]
    written = (folder / "train.beton").stat().st_mtime_ns
    again = CliRunner().invoke(app, prepare, env={"COLUMNS": "300"})
    assert (
        f"up to date: {folder}" in again.output
        and (folder / "train.beton").stat().st_mtime_ns == written
    )
