"""Each searcher end to end through the CLI on the shared Ray: the study it leaves, the search
records of a conditional space, optuna-dashboard on the study, and the time budget."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from raycifar.search.searchers import TRIAL_ID_ATTR, study_path

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("short_tmpdir")]

# A tiny conditional space: momentum and nesterov are searched only with SGD; every
# dimension is a choice so that the grid searcher can run it too.
CONDITIONAL_SPACE = """
description: tiny conditional space
budget: 100000
arch:
  depths: {choice: [[1, 1], [1, 1, 1]]}
  base_width: {choice: [8, 12]}
train:
  optimizer: {choice: [sgd, adamw]}
  lr: {choice: [0.05, 0.1]}
  momentum: {choice: [0.8, 0.9], when: {train.optimizer: sgd}}
  nesterov: {choice: [true, false], when: {train.optimizer: sgd}}
  batch_size: 64
  epochs: 2
  schedule: onecycle
scheduler: {grace_period: 1, reduction_factor: 2}
"""

STATES = {"finished": TrialState.COMPLETE, "stopped_early": TrialState.PRUNED, "error": TrialState.FAIL}


def _sweep(raycifar, tmp_path: Path, cifar_dir: Path, ray_address: str, *options: str) -> tuple[Path, dict]:
    space = tmp_path / "cond_space.yaml"
    space.write_text(CONDITIONAL_SPACE)
    results = tmp_path / "results"
    raycifar("sweep", str(space), "--data-dir", str(cifar_dir), "--results-dir", str(results), "--name", "s",
             "--wandb", "off", "--address", ray_address, *options, cwd=tmp_path)  # fmt: skip
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    return results / "sweeps" / "s", row


def _study(sweep_dir: Path) -> optuna.Study:
    backend = optuna.storages.journal.JournalFileBackend(str(study_path(sweep_dir)))
    return optuna.load_study(study_name="sweep", storage=optuna.storages.JournalStorage(backend))


def _decoded(params: dict) -> dict:
    """Optuna keeps list choices (stage depths) as their JSON text."""
    return {key: json.loads(value) if isinstance(value, str) and value.startswith("[") else value
            for key, value in params.items()}  # fmt: skip


def _check_study_matches_the_sweep(sweep_dir: Path) -> dict:
    """One study trial per Tune trial, with the same state and the same search record."""
    record = json.loads((sweep_dir / "sweep_record.json").read_text())
    tune_trials = {path.name.removeprefix("trial_") for path in sweep_dir.glob("trial_*")}
    ran = {t.user_attrs[TRIAL_ID_ATTR]: t for t in _study(sweep_dir).trials if TRIAL_ID_ATTR in t.user_attrs}
    assert set(ran) == tune_trials == set(record["trials"])
    for trial_id, entry in record["trials"].items():
        assert ran[trial_id].state == STATES[entry["state"]], trial_id
        assert _decoded(ran[trial_id].params) == entry["search"], "the study holds each trial's search record"
        config = json.loads((sweep_dir / f"trial_{trial_id}" / "params.json").read_text())
        sgd = config["train"]["optimizer"] == "sgd"
        assert ("train.momentum" in entry["search"]) == sgd and ("train.nesterov" in entry["search"]) == sgd
        if not sgd:  # inactive: the key's default trains
            assert (config["train"]["momentum"], config["train"]["nesterov"]) == (0.9, True)
        if entry["state"] == "finished":
            assert ran[trial_id].intermediate_values or ran[trial_id].user_attrs.get("val_acc_by_epoch")
    return record


# grid and qmc run through the same Tune searcher as tpe; tests/search/test_searchers.py covers their
# proposals (budget, conditions, seeding) without Ray. Searchers and schedulers are crossed: each
# sweep also runs one of the schedulers that ASHA's own tests (tests/sweep/test_sweep_e2e.py) and
# PBT's (tests/sweep/test_schedulers.py) leave; fifo is Tune's default
# (tests/sweep/test_schedulers.py::test_each_name_builds_its_tune_scheduler).
@pytest.mark.parametrize(("searcher", "scheduler"), [("tpe", "median"), ("nsga2", "hyperband")])
def test_each_searcher_runs_a_sweep_and_leaves_its_study(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar, searcher: str, scheduler: str
) -> None:
    epochs = ["--max-epochs", "1"] if searcher != "tpe" else []  # tpe: 2 epochs, so the scheduler can stop one early
    sweep_dir, row = _sweep(raycifar, tmp_path, cifar_dir, ray_address, "--searcher", searcher, "--num-samples", "3",
                            "--scheduler", scheduler, *epochs)  # fmt: skip
    assert row["params"] <= 100_000
    record = _check_study_matches_the_sweep(sweep_dir)
    assert record["searcher"] == searcher and len(record["trials"]) == 3
    assert record["scheduler"]["name"] == scheduler
    reported = [json.loads(line) for p in sweep_dir.glob("trial_*/result.json") for line in p.read_text().splitlines()]
    assert len({r["trial_id"] for r in reported}) == 3, "every proposed trial ran"
    assert (row["val_acc"], row["epochs"]) == max((r["val_acc"], r["epoch"]) for r in reported), "the best epoch promoted"
    if searcher == "nsga2":
        pareto = record["pareto"]
        assert pareto and {p["trial_id"] for p in pareto} <= set(record["trials"])
        finished = [t for t in _study(sweep_dir).trials if t.state == TrialState.COMPLETE and TRIAL_ID_ATTR in t.user_attrs]
        dominated = {
            a.user_attrs[TRIAL_ID_ATTR] for a in finished for b in finished
            if b.values[0] >= a.values[0] and b.values[1] <= a.values[1] and b.values != a.values
        }  # fmt: skip
        assert {p["trial_id"] for p in pareto} == {t.user_attrs[TRIAL_ID_ATTR] for t in finished} - dominated
    if searcher == "tpe":
        _check_optuna_dashboard_serves(sweep_dir)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _check_optuna_dashboard_serves(sweep_dir: Path) -> None:
    port = _free_port()
    dashboard = subprocess.Popen(
        [str(Path(sys.executable).with_name("optuna-dashboard")), str(study_path(sweep_dir)), "--host", "127.0.0.1",
         "--port", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        deadline, studies = time.monotonic() + 60, None
        while studies is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as answer:
                    studies = json.loads(answer.read())
            except OSError:
                time.sleep(0.5)
        assert studies is not None, "optuna-dashboard answered on loopback"
        assert [study["study_name"] for study in studies["study_summaries"]] == ["sweep"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/dashboard", timeout=5) as page:
            assert b"<html" in page.read().lower()
    finally:
        dashboard.terminate()
        dashboard.wait(timeout=30)


def test_a_time_budget_ends_an_open_ended_sweep_and_promotes(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    budget = 35
    space = CONDITIONAL_SPACE.replace("epochs: 2", "epochs: 300") + "num_samples: unlimited\n"  # far past the budget
    (tmp_path / "cond_space.yaml").write_text(space)
    results = tmp_path / "results"
    started = time.time()
    sweep = raycifar("sweep", str(tmp_path / "cond_space.yaml"), "--data-dir", str(cifar_dir), "--results-dir",
                     str(results), "--name", "s", "--wandb", "off", "--address", ray_address,
                     "--time-budget", f"{budget}s", cwd=tmp_path)  # fmt: skip
    assert "ended by its time budget" in sweep.stdout and "promoted to the leaderboard" in sweep.stdout
    sweep_dir = results / "sweeps" / "s"
    record = json.loads((sweep_dir / "sweep_record.json").read_text())
    results_by_trial = [
        [json.loads(line) for line in path.read_text().splitlines()] for path in sweep_dir.glob("trial_*/result.json")
    ]
    results_by_trial = [rows for rows in results_by_trial if rows]  # a trial the budget stopped before its first epoch
    longest_epoch = max(r["train_seconds"] for rows in results_by_trial for r in rows)
    deadline = started + budget
    starts = [datetime.fromisoformat(e["started_at"]).timestamp() for e in record["trials"].values() if e["started_at"]]
    assert starts and max(starts) <= deadline, "no trial starts after the budget"
    last_report = max(r["timestamp"] for rows in results_by_trial for r in rows)
    assert last_report <= deadline + longest_epoch + 5, "no epoch is reported a whole epoch after the budget"
    assert all(rows[-1]["epoch"] < 300 for rows in results_by_trial), "the budget stopped the trials, not their end"
    assert {t["state"] for t in record["trials"].values()} <= {"finished", "stopped_early"}, "nothing left running"
    assert not [t for t in _study(sweep_dir).trials if t.state == TrialState.RUNNING], "the study ended them too"
