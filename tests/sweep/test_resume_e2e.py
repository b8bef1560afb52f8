"""End to end: a sweep whose driver is SIGKILLed mid-sweep, then `raycifar sweep --resume`."""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from trial_progress import latest_checkpoints

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("short_tmpdir")]

EPOCHS = 20  # a few seconds a trial: the second is still training when Tune has saved the first
RESUME_SPACE = f"""
description: one config that learns nothing (drawn first) and ones that learn, {EPOCHS} epochs each
budget: 100000
arch: {{model: resnet20, depths: [1, 1], base_width: 8}}
train:
  lr: {{choice: [0.1, 1.0e-5]}}
  batch_size: 64
  epochs: {EPOCHS}
  schedule: onecycle
scheduler: {{grace_period: 1, reduction_factor: 2}}
"""


def _seed_drawing(space_file: Path, data_dir: Path, lrs: list[float]) -> int:
    """A sweep seed whose draws have these learning rates, in order. The first trial (bad)
    is the first at every ASHA rung, so it always finishes; the second (good) is above the
    first's records, so ASHA lets it go on: it is the one still training at the kill."""
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space

    space = load_space(str(space_file))
    for seed in range(200):
        if [c.train.lr for c in sample_configs(space, len(lrs), seed, data_dir).configs] == lrs:
            return seed
    raise AssertionError(f"no seed in 0..199 draws {lrs}")


def _epochs(trial_dir: Path) -> list[int]:
    path = trial_dir / "result.json"
    if not path.is_file():
        return []
    return [json.loads(line)["epoch"] for line in path.read_text().splitlines() if line.endswith("}")]


def _record(sweep_dir: Path) -> dict:
    try:
        return json.loads((sweep_dir / "sweep_record.json").read_text())
    except (OSError, ValueError):
        return {}


def _wait_for_one_finished_and_one_training(sweep_dir: Path, driver: subprocess.Popen) -> tuple[str, str]:
    """Poll until a trial has finished and another has a checkpoint but not its last (as the
    trial writes them: Tune's result.json copy lags by seconds), both in the state Tune last
    saved (a trial started after that save is ``lost`` on resume, by design); returns
    (finished trial id, training trial id)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and driver.poll() is None:
        trials = _record(sweep_dir).get("trials", {})
        progress = latest_checkpoints(sweep_dir)
        saved = {tid for tid in trials if (sweep_dir / f"trial_{tid}" / "params.json").is_file()}  # in Tune's saved state
        finished = [tid for tid in saved if trials[tid]["state"] == "finished"]
        training = [tid for tid in saved if trials[tid]["state"] == "running" and 0 < progress.get(tid, {}).get("epoch", 0) < EPOCHS]
        if finished and training:
            return finished[0], training[0]
        time.sleep(0.1)
    raise AssertionError(f"no finished + training trial pair seen (driver exit code {driver.poll()})")


def _files(folder: Path) -> set[str]:
    """Files under ``folder`` except temp files and Ray Train's checkpoint folders (Train
    keeps the 2 best by design and deletes the others as better epochs come)."""
    return {
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if p.is_file() and not p.name.startswith((".", "tmp")) and "/checkpoint_" not in str(p.relative_to(folder))
    }  # fmt: skip


def test_a_killed_sweep_resumes_where_it_stopped(tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar) -> None:
    space = tmp_path / "resume_space.yaml"
    space.write_text(RESUME_SPACE)
    seed = _seed_drawing(space, cifar_dir, [1.0e-5, 0.1, 0.1])
    results, name = tmp_path / "results", "killed"
    sweep_dir = results / "sweeps" / name
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    driver = subprocess.Popen(
        [sys.executable, "-m", "raycifar", "sweep", str(space), "--data-dir", str(cifar_dir), "--results-dir",
         str(results), "--num-samples", "3", "--seed", str(seed), "--name", name, "--wandb", "off",
         "--address", ray_address, "--max-concurrent-trials", "1"],
        # Tune saves its trial files into the sweep folder every second (default: every 10 s or more)
        cwd=tmp_path, env={**env, "TUNE_GLOBAL_CHECKPOINT_S": "1"}, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        finished, training = _wait_for_one_finished_and_one_training(sweep_dir, driver)
    finally:
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=60)
    before_files = _files(sweep_dir)
    finished_dir, training_dir = sweep_dir / f"trial_{finished}", sweep_dir / f"trial_{training}"
    finished_before = ((finished_dir / "params.json").read_text(), (finished_dir / "result.json").read_text())
    last_epoch = latest_checkpoints(sweep_dir)[training]["epoch"]  # trained and checkpointed before the kill

    status = raycifar("status", "--results-dir", str(results), cwd=tmp_path).stdout
    assert "interrupted at" in status and "1 of 3 trials finished" in status, status
    assert f"resume with `raycifar sweep --resume {name} --results-dir {results}`" in status, status

    changed = subprocess.run(
        [sys.executable, "-m", "raycifar", "sweep", "--resume", name, "--results-dir", str(results), "--seed", "99"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert changed.returncode == 2 and changed.stderr.count("\n") == 1, changed.stderr
    assert f"--seed 99: sweep {name} was started with {seed}" in changed.stderr

    # Resumed with more trials at once than it started with (a bigger cluster).
    resumed = raycifar("sweep", "--resume", name, "--results-dir", str(results), "--address", ray_address,
                       "--max-concurrent-trials", "2", cwd=tmp_path, timeout=900)  # fmt: skip
    assert "promoted to the leaderboard" in resumed.stdout, resumed.stdout[-2000:]

    record = _record(sweep_dir)
    assert len(record["trials"]) == 3 and record["outcome"] == "completed"
    (third,) = set(record["trials"]) - {finished, training}
    assert record["trials"][third]["started_at"] < record["trials"][training]["ended_at"], (
        "after the resume with --max-concurrent-trials 2 the third trial waited for the interrupted one"
    )
    assert all(t["state"] in ("finished", "stopped_early") for t in record["trials"].values()), record["trials"]
    assert ((finished_dir / "params.json").read_text(), (finished_dir / "result.json").read_text()) == finished_before
    assert record["trials"][finished]["state"] == "finished"
    _check_resumed_from_its_checkpoint(training_dir, last_epoch)
    missing = before_files - _files(sweep_dir)
    assert not missing, f"files deleted by the resume: {sorted(missing)}"

    with open(sweep_dir / "scheduler_state.pkl", "rb") as stream:
        rungs = {milestone: dict(recorded) for milestone, recorded in pickle.load(stream)["_brackets"][0]._rungs}
    assert training in rungs[1] and finished in rungs[1], f"rung records before the kill were lost: {rungs}"

    rows = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    assert len(rows) == 1 and rows[0]["sweep"] == name

    again = subprocess.run(
        [sys.executable, "-m", "raycifar", "sweep", "--resume", name, "--results-dir", str(results)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert again.returncode == 2 and "already ended" in again.stderr and again.stderr.count("\n") == 1, again.stderr

    _extend_and_check(results, name, ray_address, tmp_path, raycifar, before=_files(sweep_dir))


def _check_resumed_from_its_checkpoint(trial_dir: Path, last_epoch: int) -> None:
    """The trial killed after checkpointing ``last_epoch`` went on from its last checkpoint:
    the one of that epoch, or of the next if the kill came while that one was written; every
    epoch before it is in its results once (those Tune had not saved yet reported again by
    the resumed trial: raycifar.sweep.in_trial)."""
    rows = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line.endswith("}")]
    epochs = [row["epoch"] for row in rows]
    assert epochs[:last_epoch] == list(range(1, last_epoch + 1)), "the epochs reported before the kill changed"
    after = rows[last_epoch:]
    assert after, f"the trial reported nothing after the kill at epoch {last_epoch}"
    restarted_from = after[0]["resumed_from_epoch"]
    assert last_epoch <= restarted_from <= last_epoch + 1, (
        f"killed after epoch {last_epoch} was reported, the trial restarted from epoch {restarted_from}"
    )
    reported = [row["epoch"] for row in after]
    if reported[0] == restarted_from:  # its last epoch, trained before the kill, reported again (raycifar.train.worker)
        reported = reported[1:]
    assert reported == list(range(restarted_from + 1, epochs[-1] + 1)), (
        f"after its restart from epoch {restarted_from} the trial reported epochs {[row['epoch'] for row in after]}"
    )


def _best_val_acc(sweep_dir: Path) -> float:
    """The best val_acc any trial reported, read from the trials' result.json files."""
    return max(
        json.loads(line)["val_acc"] for path in sweep_dir.glob("trial_*/result.json")
        for line in path.read_text().splitlines() if line.endswith("}")
    )  # fmt: skip


def _extend_and_check(results: Path, name: str, ray_address: str, cwd: Path, raycifar, before: set[str]) -> None:
    """``--resume NAME --num-samples 1`` on the ended sweep: one more trial, proposed by the
    same study, and the best epoch of all four trials on the leaderboard."""
    import optuna

    sweep_dir = results / "sweeps" / name
    old_trials = set(_record(sweep_dir)["trials"])
    extended = raycifar("sweep", "--resume", name, "--results-dir", str(results), "--address", ray_address,
                        "--num-samples", "1", cwd=cwd, timeout=600)  # fmt: skip
    assert f"extending sweep {name}: 3 trials ended, 1 more proposed by random" in extended.stdout, extended.stdout
    record = _record(sweep_dir)
    assert record["outcome"] == "completed" and record["planned_trials"] == 4 and len(record["trials"]) == 4
    (added,) = set(record["trials"]) - old_trials
    assert record["trials"][added]["state"] in ("finished", "stopped_early")
    assert not before - _files(sweep_dir), "the extension deleted files of the first trials"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / "search" / "study.journal")))
    (study,) = optuna.get_all_study_summaries(storage)
    assert study.n_trials == 4, "the extension's trial was not asked from the sweep's own study"
    rows = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=cwd).stdout)
    promoted = next(row for row in rows if row["entry_id"] == record["promoted_entry"])
    assert promoted["val_acc"] == pytest.approx(_best_val_acc(sweep_dir))
    new_best = promoted["trial_id"] == added
    assert len(rows) == (2 if new_best else 1), "a best that did not change was promoted again"
    headline = "promoted to the leaderboard" if new_best else "best entry, already on the leaderboard"
    assert f"{headline}: {promoted['entry_id']}" in extended.stdout, extended.stdout[-1500:]
