"""End to end through the CLI: a real Ray Tune sweep of Ray Train trials on CIFAR-format files."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import TINY_SPACE
from loader_refs import hand_counted_accuracy

from raycifar.data import train_val_split
from raycifar.results.layout import entry_dir

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("short_tmpdir")]


def test_sweep_promotes_a_model_that_evaluate_reproduces(tmp_path: Path, cifar_dir: Path, raycifar) -> None:
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--num-samples", "3", "--seed", "1", cwd=tmp_path)  # fmt: skip
    assert "Ray dashboard: http://127.0.0.1:" in sweep.stdout
    assert "promoted to the leaderboard" in sweep.stdout

    rows = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    assert len(rows) == 1
    row = rows[0]
    assert 0 < row["params"] <= 100_000 and row["space"] == "tiny_space"
    assert row["test_acc"] > 0.3, "the synthetic classes are easy: far above the 10% of chance"
    assert json.loads(row["config_json"])["params"] == row["params"]

    scores = json.loads(
        raycifar("evaluate", row["entry_id"], "--results-dir", str(results), "--data-dir", str(cifar_dir),
                 "--format", "json", cwd=tmp_path).stdout  # fmt: skip
    )
    assert scores["test_acc"] == row["test_acc"] and scores["n"] == 200 and scores["test_loss"] > 0

    csv_text = raycifar("leaderboard", "--results-dir", str(results), "--format", "csv", cwd=tmp_path).stdout
    assert csv_text.splitlines()[0].startswith("entry_id,created_at,sweep,space,dataset,model,params")

    offline_runs = list((results / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline_runs) == 3 + 1, "one offline W&B run per trial, and one logging the promoted model"
    assert all(any(run.glob("*.wandb")) for run in offline_runs)


def test_sweep_joins_an_existing_ray_cluster(tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar) -> None:
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--num-samples", "1", "--max-epochs", "1", "--wandb", "off", "--address", ray_address,
                     cwd=tmp_path)  # fmt: skip
    assert "promoted to the leaderboard" in sweep.stdout
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    val = train_val_split(cifar_dir, 0.1, 0)[1]
    assert row["val_acc"] == hand_counted_accuracy(entry_dir(results, row["entry_id"]), val), "the promoted weights"


def test_ctrl_c_stops_the_sweep_without_promoting(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    sweep = subprocess.Popen(
        [sys.executable, "-m", "raycifar", "sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir),
         "--results-dir", str(results), "--num-samples", "4", "--wandb", "off", "--no-dashboard"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 240
    while not list(results.glob("sweeps/*/trial_*")) and time.monotonic() < deadline:
        time.sleep(1)
    sweep.send_signal(signal.SIGINT)
    _, stderr = sweep.communicate(timeout=240)
    assert sweep.returncode == 130, stderr[-2000:]
    assert "unfinished trials; nothing promoted" in stderr
    assert not (results / "leaderboard.parquet").exists()


ASHA_SPACE = """
description: two learnable configs and one whose learning rate is too small to learn in 2 epochs
budget: 100000
arch: {model: resnet20, depths: [1, 1], base_width: 8}
train:
  lr: {choice: [0.1, 1.0e-5]}
  batch_size: 64
  epochs: 2
  schedule: onecycle
scheduler: {grace_period: 1, reduction_factor: 2}
"""


def _seed_drawing_the_bad_config_last(space_file: Path, data_dir: Path) -> int:
    """A sweep seed whose three draws are good, good, bad: ASHA then has two results at the
    first rung when the bad trial reaches it (the first trial at a rung always goes on)."""
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space

    space = load_space(str(space_file))
    for seed in range(200):
        lrs = [c.train.lr for c in sample_configs(space, 3, seed, data_dir).configs]
        if lrs == [0.1, 0.1, 1.0e-5]:
            return seed
    raise AssertionError("no seed in 0..199 draws good, good, bad")


def test_asha_stops_a_trial_that_cannot_learn_and_the_best_epoch_is_promoted(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    space = tmp_path / "asha_space.yaml"
    space.write_text(ASHA_SPACE)
    seed = _seed_drawing_the_bad_config_last(space, cifar_dir)
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(space), "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--num-samples", "3", "--seed", str(seed), "--wandb", "off", "--address", ray_address,
                     "--max-concurrent-trials", "2", cwd=tmp_path, timeout=900)  # fmt: skip
    trials = {}
    for path in (results / "sweeps").rglob("result.json"):
        reported = [json.loads(line) for line in path.read_text().splitlines()]
        trials[reported[0]["config"]["train"]["lr"], path.parent.name] = reported
    bad = [reported for (lr, _), reported in trials.items() if lr == 1.0e-5]
    assert len(trials) == 3 and len(bad) == 1
    assert max(r["epoch"] for r in bad[0]) < 2, f"ASHA let the lr=1e-5 trial run to the end: {sweep.stdout[-2000:]}"
    assert "1 stopped early by ASHA" in sweep.stdout or "2 stopped early by ASHA" in sweep.stdout

    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    every_epoch = [(r["val_acc"], r["epoch"]) for reported in trials.values() for r in reported]
    assert (row["val_acc"], row["epochs"]) == max(every_epoch), "the promoted row is the best epoch of any trial"
    record = json.loads(next((results / "sweeps").glob("*/sweep_record.json")).read_text())
    assert record["promoted_entry"] == row["entry_id"]
    assert sorted(t["state"] for t in record["trials"].values()).count("stopped_early") >= 1
