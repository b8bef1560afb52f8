"""End to end through the CLI: ``raycifar train`` on Ray Train, promotion, and retraining an entry.
The runs join the session's shared Ray (tests/conftest.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

FIXED = """\
budget: 100000
arch: {depths: [1, 1], base_width: 8}
train: {lr: 0.1, batch_size: 64, epochs: 2, schedule: linear, warmup_epochs: 0.5, ema_decay: 0.9, tta: flip}
"""


def epoch_log(results: Path, name: str) -> list[dict]:
    return [json.loads(line) for line in (results / "runs" / name / "metrics.jsonl").read_text().splitlines()]


def test_train_promote_then_retrain_the_entry_on_two_workers(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    results = tmp_path / "results"
    (tmp_path / "fixed.yaml").write_text(FIXED)
    first = raycifar("train", "fixed.yaml", "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--name", "first", "--promote", "--address", ray_address, cwd=tmp_path)  # fmt: skip
    assert "epoch   1/2" in first.stdout and "epoch   2/2" in first.stdout and "val_acc_tta" in first.stdout
    assert "promoted to the leaderboard" in first.stdout
    log = epoch_log(results, "first")
    assert [m["epoch"] for m in log] == [1, 2]
    assert all({"val_acc_tta", "train_seconds", "checkpoint_path"} <= set(m) for m in log)

    rows = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    assert len(rows) == 1 and rows[0]["sweep"] == "first" and rows[0]["space"] == "fixed"
    assert rows[0]["val_acc"] == max(m["val_acc"] for m in log) and rows[0]["test_acc"] > 0.3
    assert json.loads(rows[0]["config_json"])["train"]["ema_decay"] == 0.9
    scores = json.loads(raycifar("evaluate", rows[0]["entry_id"], "--results-dir", str(results), "--format", "json",
                                 cwd=tmp_path).stdout)  # fmt: skip
    assert scores["matches_recorded"], "the promoted weights are the evaluated (EMA) weights"

    retrain = raycifar("train", "--from-entry", rows[0]["entry_id"], "--results-dir", str(results), "--epochs", "3",
                       "--set", "tta=none", "--name", "longer", "--workers", "2", "--address", ray_address, cwd=tmp_path)  # fmt: skip
    assert "epoch   3/3" in retrain.stdout and "promoted" not in retrain.stdout
    log = epoch_log(results, "longer")
    assert [m["epoch"] for m in log] == [1, 2, 3] and all(m["world_size"] == 2 for m in log)
    assert all("val_acc_tta" not in m for m in log)
    assert (
        len(json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout))
        == 1
    )
