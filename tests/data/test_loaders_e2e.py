"""End to end through the CLI: a sweep on the torchvision loader on CIFAR-100 with coarse
labels (the device loader is the default of every other sweep test; the ffcv sweep is in
tests/data/test_ffcv.py). The sweep joins the session's shared Ray (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from cifar_files import write_cifar100
from conftest import TINY_SPACE

from raycifar.data import read_part

pytestmark = pytest.mark.slow


def test_torchvision_sweep_on_cifar100_coarse_labels(tmp_path: Path, ray_address: str, raycifar) -> None:
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
    results = tmp_path / "results"
    raycifar("sweep", str(path), "--data-dir", str(tmp_path / "data"), "--results-dir", str(results),
             "--num-samples", "1", "--max-epochs", "1", "--wandb", "off", "--address", ray_address,
             "--dataset", "cifar100", "--label-mode", "coarse", cwd=tmp_path)  # fmt: skip
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    config = json.loads(row["config_json"])
    assert (row["dataset"], config["label_mode"], config["model"]["num_classes"]) == ("cifar100", "coarse", 20)
    assert config["loader"] == "torchvision" and config["augment"]["policy"] == "trivialaugment"
    test_labels = read_part(tmp_path / "data", "test", "cifar100", "coarse").labels
    assert np.isclose(row["test_acc"] * len(test_labels), round(row["test_acc"] * len(test_labels)))
