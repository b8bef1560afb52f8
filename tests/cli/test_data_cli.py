"""``raycifar data info``, ``raycifar data prepare`` and the data options of ``raycifar sweep``,
run in this process (stdout and stderr apart)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from cifar_files import write_cifar100
from click.testing import Result
from conftest import TINY_SPACE
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data import read_part, train_val_split
from raycifar.data.ffcv_loader import INSTALL_HINT


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(
        app, list(args), env={"COLUMNS": "300", "RAY_ADDRESS": ""}
    )


def test_data_info_json_counts_splits_classes_and_channel_statistics(
    cifar_dir: Path,
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
    )
    assert result.exit_code == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["format"] == "python" and info["source"].endswith("cifar-10-batches-py")
    splits = info["splits"]
    train_part, val_part = train_val_split(cifar_dir, 0.2, 0)
    counts = (splits["train"]["count"], splits["val"]["count"], splits["test"]["count"])
    assert counts == (len(train_part), len(val_part), 200)
    train = read_part(cifar_dir, "train")
    per_class = np.bincount(train.labels, minlength=10)
    for index, name in enumerate(train.class_names):
        in_splits = (
            splits["train"]["per_class"][name] + splits["val"]["per_class"][name]
        )
        assert in_splits == per_class[index]
    pixels = train.images.reshape(-1, 3) / 255
    assert info["channel_mean"] == pytest.approx(pixels.mean(axis=0).tolist(), abs=1e-4)
    assert info["channel_std"] == pytest.approx(pixels.std(axis=0).tolist(), abs=1e-4)


def test_data_info_table_for_cifar100_coarse(tmp_path: Path) -> None:
    write_cifar100(tmp_path / "data", train=100, test=40)
    result = run_cli("data", "info", "--data-dir", str(tmp_path / "data"), "--dataset", "cifar100",
                     "--label-mode", "coarse")  # fmt: skip
    assert result.exit_code == 0, result.stderr
    train, val = train_val_split(tmp_path / "data", 0.1, 0, "cifar100", "coarse")
    assert f"train {len(train)}, val {len(val)}, test 40" in result.stdout
    assert "aquatic_mammals" in result.stdout and "vehicles_2" in result.stdout
    assert "apple" not in result.stdout


def test_data_commands_fail_in_one_line(tmp_path: Path, cifar_dir: Path) -> None:
    missing = run_cli("data", "info", "--data-dir", str(tmp_path / "none"))
    assert missing.exit_code == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert "CIFAR-10 not found in" in missing.stderr
    bad_fraction = run_cli(
        "data", "info", "--data-dir", str(cifar_dir), "--val-fraction", "0.7"
    )
    assert bad_fraction.exit_code == 2
    assert "--val-fraction 0.7: must be above 0 and below 0.5" in bad_fraction.stderr


def test_sweep_data_options_are_checked_before_ray_starts(
    tmp_path: Path, cifar_dir: Path
) -> None:
    results = tmp_path / "results"
    coarse = run_cli("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--label-mode", "coarse",
                     "--results-dir", str(results))  # fmt: skip
    assert coarse.exit_code == 2
    expected = (
        f"error: {TINY_SPACE} with --label-mode coarse: "
        "label_mode: coarse labels exist only for cifar100, not cifar10"
    )
    assert coarse.stderr.strip().splitlines() == [expected]
    no_cifar100 = run_cli("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--dataset", "cifar100",
                          "--results-dir", str(results))  # fmt: skip
    assert no_cifar100.exit_code == 2 and "CIFAR-100 not found in" in no_cifar100.stderr
    assert not results.exists()


def test_ffcv_hint_when_it_is_missing(
    cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(
        sys.modules, "ffcv", None
    )  # `import ffcv` now raises ImportError
    result = run_cli(
        "data", "prepare", "--format", "ffcv", "--data-dir", str(cifar_dir)
    )
    assert result.exit_code == 2
    assert result.stderr.strip().splitlines() == [f"error: {INSTALL_HINT}"]
    assert "pip install 'raycifar[ffcv]'" in INSTALL_HINT
