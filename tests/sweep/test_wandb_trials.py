"""One W&B run per trial, written by the sweep's driver (raycifar.sweep.wandb_trials): each
run keeps its trial's config and every reported epoch, read back from the offline run files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from wandb_records import records

from raycifar.sweep.wandb_trials import TrialRuns


def trial(trial_id: str, lr: float) -> SimpleNamespace:
    config = {"train": {"lr": lr, "epochs": 2}, "params": 1234}
    return SimpleNamespace(trial_id=trial_id, config=config, __str__=lambda self=None: f"run_trial_{trial_id}")


def _key(item) -> str:
    return item.key or ".".join(item.nested_key)


def run_of(folder: Path) -> dict:
    """The run id, group, config and logged history of one offline run folder."""
    (path,) = folder.glob("*.wandb")
    run, config, history = None, {}, []
    for record in records(path):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            config.update({_key(item): json.loads(item.value_json) for item in record.run.config.update})
        elif kind == "config":
            config.update({_key(item): json.loads(item.value_json) for item in record.config.update})
        elif kind == "history":
            history.append({_key(item): json.loads(item.value_json) for item in record.history.item})
    return {"id": run.run_id, "group": run.run_group, "config": config, "history": history}


def test_each_trial_gets_its_own_run_with_its_config_and_epochs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DATA_DIR", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    callback = TrialRuns("offline", tmp_path / "wandb", "sweep-a")
    (tmp_path / "wandb").mkdir()
    first, second = trial("aaaa0001", 0.1), trial("bbbb0002", 0.3)
    callback.on_trial_start(0, [], first)
    callback.on_trial_start(0, [], second)  # two trials at once: their epochs interleave
    for epoch, (acc_a, acc_b) in enumerate([(0.31, 0.25), (0.52, 0.40)], start=1):
        callback.on_trial_result(0, [], first, {"epoch": epoch, "val_acc": acc_a, "checkpoint_path": "/x", "config": {}})
        callback.on_trial_result(0, [], second, {"epoch": epoch, "val_acc": acc_b, "diverged": False, "date": "d"})
    callback.on_trial_complete(0, [], first)
    callback.on_trial_error(0, [], second)
    callback.on_experiment_end([])

    runs = {r["id"]: r for r in map(run_of, (tmp_path / "wandb" / "wandb").glob("offline-run-*"))}
    assert sorted(runs) == ["aaaa0001", "bbbb0002"]
    assert {r["group"] for r in runs.values()} == {"sweep-a"}
    assert runs["aaaa0001"]["config"]["train"] == {"lr": 0.1, "epochs": 2}
    assert runs["bbbb0002"]["config"]["train"]["lr"] == 0.3
    logged = {tid: [(h["epoch"], h["val_acc"]) for h in r["history"]] for tid, r in runs.items()}
    assert logged == {"aaaa0001": [(1, 0.31), (2, 0.52)], "bbbb0002": [(1, 0.25), (2, 0.40)]}
    assert all("checkpoint_path" not in h and "date" not in h for r in runs.values() for h in r["history"])
