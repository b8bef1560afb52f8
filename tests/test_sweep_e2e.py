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
from raycifar.leaderboard import entry_dir

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
    assert len(offline_runs) == 3, "one offline W&B run per trial"
    assert all(any(run.glob("*.wandb")) for run in offline_runs)


def test_trials_run_data_parallel_with_two_workers(tmp_path: Path, cifar_dir: Path, raycifar) -> None:
    results = tmp_path / "results"
    raycifar("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--results-dir", str(results),
             "--num-samples", "1", "--max-epochs", "1", "--workers-per-trial", "2", "--cpus-per-trial", "2",
             "--wandb", "off", "--no-dashboard", cwd=tmp_path)  # fmt: skip
    reported = [json.loads(line) for path in (results / "sweeps").rglob("result.json") for line in path.read_text().splitlines()]
    assert reported and all(r["world_size"] == 2 for r in reported)
    assert {r["node_ip"] for r in reported} == {"127.0.0.1"}, "a local Ray binds to loopback only"
    assert not (results / "wandb").exists()


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
