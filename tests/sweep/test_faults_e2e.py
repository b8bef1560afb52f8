"""End to end through the CLI: faults during a sweep and a training run.

One sweep (one trial at a time, so that the Ray Train worker alive is the running trial's)
holds three trials, one per fault:

- a learnable one whose Ray Train worker the test kills with SIGKILL after its first epoch
  (found through Ray's state API): it resumes from its checkpoint and is promoted;
- one with an absurd learning rate, whose loss becomes NaN: it is recorded as diverged;
- one whose checkpoint cannot be written (a full disk, simulated in the workers by
  tests/fault_hooks/sitecustomize.py): it fails with one clear reason.

The sweep starts its own local Ray: the simulated disk fault must be in its workers'
environment, which only a Ray that the CLI starts inherits. ``raycifar train`` of a diverging
config joins the session's shared Ray.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from conftest import _cli_env

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("short_tmpdir")]

HOOKS = Path(__file__).parent.parent / "fault_hooks"
GOOD_LR, NAN_LR, FULL_DISK_LR = 0.1, 1.0e6, 0.0777
FAULT_SPACE = f"""
description: one learnable config, one whose loss diverges, one whose checkpoints cannot be written
budget: 100000
arch: {{model: resnet20, depths: [1, 1], base_width: 8}}
train:
  lr: {{choice: [{GOOD_LR}, {NAN_LR}, {FULL_DISK_LR}]}}
  batch_size: 64
  epochs: 8
  schedule: onecycle
scheduler: {{grace_period: 8, reduction_factor: 2}}
"""


def _seed_drawing_each_lr_once(space_file: Path, data_dir: Path) -> int:
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space

    space = load_space(str(space_file))
    for seed in range(200):
        if sorted(c.train.lr for c in sample_configs(space, 3, seed, data_dir).configs) == sorted(
            [GOOD_LR, NAN_LR, FULL_DISK_LR]
        ):
            return seed
    raise AssertionError("no seed in 0..199 draws each learning rate once")


def _trial_results(sweep_dir: Path, lr: float) -> tuple[str, list[dict]]:
    """(trial id, reported results) of the trial with learning rate ``lr`` ("", [] before it starts)."""
    for folder in sweep_dir.glob("trial_*"):
        params = folder / "params.json"
        if params.is_file() and json.loads(params.read_text())["train"]["lr"] == lr:
            lines = (folder / "result.json").read_text().splitlines() if (folder / "result.json").is_file() else []
            return folder.name.removeprefix("trial_"), [json.loads(line) for line in lines if line.endswith("}")]
    return "", []


def _alive_train_worker_pids(dashboard_url: str) -> list[int]:
    """PIDs of the alive Ray Train workers, through Ray's public state API."""
    from ray.util.state import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    from raycifar.cluster.dashboard import _auth_headers, auth_token

    client = StateApiClient(address=dashboard_url, headers=_auth_headers(auth_token()))
    filters = [("class_name", "=", "RayTrainWorker"), ("state", "=", "ALIVE")]
    actors = client.list(
        StateResource.ACTORS, options=ListApiOptions(filters=filters, detail=True), raise_on_missing_output=False
    )
    return [int(actor.pid) for actor in actors]


def _kill_the_good_trials_worker_after_epoch_1(
    sweep: subprocess.Popen, out: list[str], sweep_dir: Path
) -> tuple[int, int]:
    """Wait for the learnable trial's first epoch, SIGKILL its Ray Train worker; returns
    (the killed PID, the epochs the trial had reported then)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and sweep.poll() is None:
        url = next((line.split("Ray dashboard: ")[1].strip() for line in out if "Ray dashboard: " in line), None)
        _, reported = _trial_results(sweep_dir, GOOD_LR)
        pids = _alive_train_worker_pids(url) if url and reported else []
        if len(pids) == 1:  # one trial at a time: its one worker (the state API may lag its start)
            os.kill(pids[0], signal.SIGKILL)
            return pids[0], len(_trial_results(sweep_dir, GOOD_LR)[1])
        time.sleep(0.2)
    raise AssertionError(f"the learnable trial never reported an epoch:\n{''.join(out)[-3000:]}")


def test_a_killed_worker_resumes_a_diverged_trial_and_a_full_disk_fail_alone_and_the_sweep_promotes(
    tmp_path: Path, cifar_dir: Path
) -> None:
    space = tmp_path / "fault_space.yaml"
    space.write_text(FAULT_SPACE)
    results, name = tmp_path / "results", "faults"
    env = {**_cli_env(), "PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]),
           "RAYCIFAR_TEST_FULL_DISK_LR": str(FULL_DISK_LR)}  # fmt: skip
    sweep = subprocess.Popen(
        [sys.executable, "-m", "raycifar", "sweep", str(space), "--data-dir", str(cifar_dir), "--results-dir",
         str(results), "--name", name, "--num-samples", "3", "--seed", str(_seed_drawing_each_lr_once(space, cifar_dir)),
         "--max-concurrent-trials", "1", "--max-failures", "1", "--wandb", "off"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.extend(iter(sweep.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        killed, reported_before = _kill_the_good_trials_worker_after_epoch_1(sweep, out, results / "sweeps" / name)
        sweep.wait(timeout=900)
    finally:
        if sweep.poll() is None:
            sweep.kill()
    reader.join(timeout=30)
    text = "".join(out)
    assert sweep.returncode == 0, text[-4000:]
    sweep_dir = results / "sweeps" / name

    # the killed trial resumed from its last checkpoint (not from epoch 0), finished, and was promoted
    good_id, good = _trial_results(sweep_dir, GOOD_LR)
    assert reported_before < 8, f"the worker {killed} was killed after the trial had finished"
    epochs = [r["epoch"] for r in good]
    assert epochs == list(range(1, 9)), f"an epoch was trained twice or skipped: {epochs}"
    resumed = [r["resumed_from_epoch"] for r in good]
    restart = next(i for i, start in enumerate(resumed) if start > 0)  # the first epoch of the new worker group
    assert resumed[:restart] == [0] * restart and set(resumed[restart:]) == {epochs[restart - 1]}
    (row,) = json.loads(subprocess.run(
        [sys.executable, "-m", "raycifar", "leaderboard", "--results-dir", str(results), "--format", "json"],
        cwd=tmp_path, env=_cli_env(), capture_output=True, text=True, check=True).stdout)  # fmt: skip
    assert row["trial_id"] == good_id
    record = json.loads((sweep_dir / "sweep_record.json").read_text())
    assert record["promoted_entry"] == row["entry_id"] and record["trials"][good_id]["state"] == "finished"

    # the NaN trial stopped at its first diverged epoch, is recorded as such and was not promoted
    nan_id, nan = _trial_results(sweep_dir, NAN_LR)
    assert nan[-1]["diverged"] is True and [r["epoch"] for r in nan] == [1]
    assert record["trials"][nan_id]["state"] == "diverged"
    assert f"trial {nan_id} diverged at epoch 1" in text

    # the full-disk trial failed alone, with the reason in its error file, record and the summary
    disk_id, _ = _trial_results(sweep_dir, FULL_DISK_LR)
    reason = "the checkpoint of epoch 1 could not be written (No space left on device: "
    assert record["trials"][disk_id]["state"] == "error" and reason in record["trials"][disk_id]["reason"]
    assert reason in (sweep_dir / f"trial_{disk_id}" / "error.txt").read_text().strip().splitlines()[-1]
    assert f"trial {disk_id} failed: {reason}" in text
    assert "3 trials, 0 stopped early by ASHA, 1 failed, 1 diverged" in text


DIVERGING = f"""\
budget: 100000
arch: {{depths: [1, 1], base_width: 8}}
train: {{lr: {NAN_LR}, batch_size: 64, epochs: 3, schedule: onecycle}}
"""


def test_train_of_a_diverging_config_ends_with_one_line(tmp_path: Path, cifar_dir: Path, ray_address: str) -> None:
    (tmp_path / "diverging.yaml").write_text(DIVERGING)
    results = tmp_path / "results"
    run = subprocess.run(
        [sys.executable, "-m", "raycifar", "train", "diverging.yaml", "--data-dir", str(cifar_dir), "--results-dir",
         str(results), "--name", "nan", "--promote", "--wandb", "off", "--address", ray_address],
        cwd=tmp_path, env=_cli_env(), capture_output=True, text=True, timeout=480,
    )  # fmt: skip
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    (line,) = [line for line in run.stderr.splitlines() if "training run nan" in line]
    assert "diverged at epoch 1 (training loss nan)" in line and "lower train.lr" in line
    assert [json.loads(x)["epoch"] for x in (results / "runs" / "nan" / "metrics.jsonl").read_text().splitlines()] == [
        1
    ]
    assert not (results / "leaderboard.parquet").exists()
