"""End to end through the CLI: a sweep on each non-default loader (the device loader is the
default of every other sweep test) and CIFAR-100 with coarse labels. The sweeps join one
Ray started once for this module."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from cifar_files import write_cifar100
from conftest import TINY_SPACE

from raycifar.data import read_part

pytestmark = pytest.mark.slow


HOLD_RAY = """
import sys, ray
context = ray.init(num_cpus=2, include_dashboard=False)
print(context.address_info["gcs_address"], flush=True)
sys.stdin.read()  # hold the cluster until the test closes our stdin
ray.shutdown()
"""


@pytest.fixture(scope="module")
def ray_address() -> Iterator[str]:
    """A local Ray (loopback only, short TMPDIR for its socket paths) held for the module's sweeps."""
    with tempfile.TemporaryDirectory(prefix="rc", dir="/tmp") as folder:
        env = {**os.environ, "TMPDIR": folder, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLD_RAY],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        try:
            yield holder.stdout.readline().strip()
        finally:
            holder.stdin.close()
            holder.wait(timeout=60)


def raycifar(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("WANDB_", "RAY_ADDRESS"))
    }
    result = subprocess.run(
        [sys.executable, "-m", "raycifar", *args],
        cwd=cwd, env={**env, "COLUMNS": "200"}, capture_output=True, text=True, timeout=480, check=False,
    )  # fmt: skip
    assert result.returncode == 0, (
        f"raycifar {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


def _quick_sweep(
    space: Path, data_dir: Path, results: Path, address: str, *options: str
) -> dict:
    """One trial of one epoch on the held Ray; returns its leaderboard row."""
    raycifar("sweep", str(space), "--data-dir", str(data_dir), "--results-dir", str(results), "--num-samples", "1",
             "--max-epochs", "1", "--wandb", "off", "--address", address, *options, cwd=results.parent)  # fmt: skip
    rows = json.loads(
        raycifar(
            "leaderboard",
            "--results-dir",
            str(results),
            "--format",
            "json",
            cwd=results.parent,
        ).stdout
    )
    assert len(rows) == 1
    return rows[0]


def test_ffcv_sweep(tmp_path: Path, cifar_dir: Path, ray_address: str) -> None:
    pytest.importorskip("ffcv", reason="FFCV is an optional extra")
    data = tmp_path / "data"
    data.symlink_to(cifar_dir, target_is_directory=True)
    row = _quick_sweep(
        TINY_SPACE, data, tmp_path / "results", ray_address, "--loader", "ffcv"
    )
    assert (
        json.loads(row["config_json"])["loader"] == "ffcv" and 0 < row["val_acc"] <= 1
    )
    assert (data / "ffcv" / "cifar10-fine-val0.1-seed0" / "train.beton").is_file()


def test_torchvision_sweep_on_cifar100_coarse_labels(
    tmp_path: Path, ray_address: str
) -> None:
    write_cifar100(tmp_path / "data", train=400, test=100)
    space = yaml.safe_load(TINY_SPACE.read_text())
    space.update(
        loader="torchvision",
        augment={"cutout": 8, "policy": "trivialaugment", "random_erasing": 0.25},
        class_weights={"people": 2.0},
    )
    space["train"].update(mixup_alpha=0.2, cutmix_alpha=1.0, mix_switch_prob=0.5)
    path = tmp_path / "c100.yaml"
    path.write_text(yaml.safe_dump(space))
    row = _quick_sweep(
        path,
        tmp_path / "data",
        tmp_path / "results",
        ray_address,
        "--dataset",
        "cifar100",
        "--label-mode",
        "coarse",
    )
    config = json.loads(row["config_json"])
    assert (row["dataset"], config["label_mode"], config["model"]["num_classes"]) == (
        "cifar100",
        "coarse",
        20,
    )
    assert (
        config["loader"] == "torchvision"
        and config["augment"]["policy"] == "trivialaugment"
    )
    test_labels = read_part(tmp_path / "data", "test", "cifar100", "coarse").labels
    assert np.isclose(
        row["test_acc"] * len(test_labels), round(row["test_acc"] * len(test_labels))
    )
