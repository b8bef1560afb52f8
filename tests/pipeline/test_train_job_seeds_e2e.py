"""End to end through the CLI: ``raycifar train --from-entry ID --seeds 2 --promote`` on the
session's shared Ray (tests/conftest.py): two runs, the first promoted, the row's seed columns
from both runs' test evaluations, and the offline W&B runs and model artifact."""

from __future__ import annotations

import json
import statistics
from pathlib import Path

import pytest
from board_files import exported_checkpoint
from wandb_records import artifacts

from raycifar.entries.evaluate import evaluate_on_test
from raycifar.entries.promote import promote
from raycifar.results.layout import entry_dir

pytestmark = pytest.mark.slow


def test_retrain_an_entry_with_two_seeds_and_promote_the_spread(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    results = tmp_path / "results"
    base = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), results, sweep="s", trial_id="t",
                   val_acc=0.5, epochs=1, source_checkpoint="x")  # the winner to retrain (trial seed 3)  # fmt: skip
    run = raycifar("train", "--from-entry", base["entry_id"], "--results-dir", str(results), "--seeds", "2",
                   "--epochs", "1", "--promote", "--name", "final", "--address", ray_address, "--format", "json",
                   cwd=tmp_path)  # fmt: skip
    shown = json.loads(run.stdout)
    assert [(r["seed"], r["run"]) for r in shown["seed_runs"]] == [(3, "final-seed3"), (4, "final-seed4")]
    assert (results / "runs" / "final-seed3").is_dir() and (results / "runs" / "final-seed4").is_dir()

    rows = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    (row,) = [r for r in rows if r["entry_id"] != base["entry_id"]]
    assert row["seeds"] == 2 and row["trial_id"] == "final-seed3" and json.loads(row["config_json"])["seed"] == 3
    first = evaluate_on_test(entry_dir(results, row["entry_id"]), cifar_dir)["test_acc"]
    second = evaluate_on_test(Path(shown["seed_runs"][1]["checkpoint"]), cifar_dir)["test_acc"]
    assert row["test_acc"] == first and shown["seed_runs"][1]["test_acc"] == second
    assert row["test_acc_mean"] == pytest.approx((first + second) / 2, rel=1e-12)
    assert row["test_acc_std"] == pytest.approx(statistics.stdev([first, second]), rel=1e-12)

    offline = sorted((results / "wandb" / "wandb").glob("offline-run-*"))
    assert len(offline) == 3, "one W&B run per seed, one for the promoted model"
    logged = [artifact for folder in offline for artifact in artifacts(folder)]
    assert [(a.name, "best" in a.aliases) for a in logged] == [("model-final", True)]


def test_train_plus_val_promotes_the_last_epoch_without_a_val_score(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    results = tmp_path / "results"
    base = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), results, sweep="s", trial_id="t",
                   val_acc=0.5, epochs=1, source_checkpoint="x")  # fmt: skip
    run = raycifar("train", "--from-entry", base["entry_id"], "--results-dir", str(results), "--epochs", "2",
                   "--train-on", "train+val", "--promote", "--name", "all", "--wandb", "off",
                   "--address", ray_address, "--format", "json", cwd=tmp_path)  # fmt: skip
    shown = json.loads(run.stdout)
    assert shown["selected_on"] == "epoch" and shown["best_epoch"] == 2
    row = shown["row"]
    assert row["val_acc"] is None and row["epochs"] == 2 and row["seeds"] == 1 and row["test_acc_std"] is None
    assert json.loads(row["config_json"])["train_on"] == "train+val"
    assert not (results / "wandb").exists()
