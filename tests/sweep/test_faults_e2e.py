"""End to end through the CLI: faults during a sweep and a training run.

One sweep (one trial at a time), on each trial path (in-trial, and ``--torch-trainer``),
holds three trials, one per fault:

- a learnable one whose training process the test kills with SIGKILL after its first epoch
  (the ``worker_pid`` the trial reports: its own process in-trial, its Ray Train worker
  under a TorchTrainer): it resumes from its checkpoint and is promoted;
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
from trial_progress import latest_checkpoints, tune_has_an_epoch_of

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


def _kill_the_good_trials_worker_after_epoch_1(
    sweep: subprocess.Popen, out: list[str], sweep_dir: Path
) -> tuple[int, int]:
    """Wait until Tune has the learnable trial's first epoch, SIGKILL the process it trains in
    (the ``worker_pid`` its latest checkpoint reports); returns (the killed PID, the epochs
    it had checkpointed then)."""
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and sweep.poll() is None:
        good = [(tid, m) for tid, m in latest_checkpoints(sweep_dir).items() if m["train"].get("lr") == GOOD_LR]
        if good and tune_has_an_epoch_of(sweep_dir, good[0][0]):
            pid = int(good[0][1]["worker_pid"])
            os.kill(pid, signal.SIGKILL)
            return pid, int(good[0][1]["epoch"])
        time.sleep(0.1)
    raise AssertionError(f"the learnable trial never reported an epoch:\n{''.join(out)[-3000:]}")


@pytest.mark.parametrize("path", [[], ["--torch-trainer"]], ids=["in-trial", "torch-trainer"])
def test_a_killed_worker_resumes_a_diverged_trial_and_a_full_disk_fail_alone_and_the_sweep_promotes(
    tmp_path: Path, cifar_dir: Path, path: list[str]
) -> None:
    space = tmp_path / "fault_space.yaml"
    space.write_text(FAULT_SPACE)
    results, name = tmp_path / "results", "faults"
    env = {**_cli_env(), "PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]),
           "RAYCIFAR_TEST_FULL_DISK_LR": str(FULL_DISK_LR), "RAYCIFAR_TIMELINE": "1"}  # fmt: skip
    sweep = subprocess.Popen(
        [sys.executable, "-m", "raycifar", "sweep", str(space), "--data-dir", str(cifar_dir), "--results-dir",
         str(results), "--name", name, "--num-samples", "3", "--seed", str(_seed_drawing_each_lr_once(space, cifar_dir)),
         "--max-concurrent-trials", "1", "--max-failures", "1", "--wandb", "off", *path],
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
    restart = next((i for i, start in enumerate(resumed) if start > 0), None)  # the first epoch of the new worker group
    assert restart is not None, f"killed {killed} after epoch {reported_before}; the trial reported {good}"
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


UNWIND_S = 3.5  # longer than Tune's default wait (TUNE_FUNCTION_THREAD_TIMEOUT_S, 2 s) before reusing a process
ASHA_REUSE_SPACE = """
description: learnable configs and one whose learning rate is too small for ASHA to keep
budget: 100000
arch: {depths: [1, 1], base_width: 8}
train: {lr: {choice: [0.1, 1.0e-5]}, batch_size: 64, epochs: 2, schedule: onecycle}
scheduler: {grace_period: 1, reduction_factor: 2}
"""


def _seed_drawing(space_file: Path, data_dir: Path, lrs: list[float]) -> int:
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space

    space = load_space(str(space_file))
    for seed in range(300):
        if [c.train.lr for c in sample_configs(space, len(lrs), seed, data_dir).configs] == lrs:
            return seed
    raise AssertionError(f"no seed in 0..299 draws {lrs}")


def test_a_stopped_trial_that_unwinds_slowly_never_hangs_the_sweep(tmp_path: Path, cifar_dir: Path) -> None:
    """ASHA stops the lr=1e-5 trial after its first epoch; its thread then takes 3.5 s to end
    (tests/fault_hooks), more than Tune waits by default before handing its process to the
    next trial. The next trials still run, in reused processes, and the sweep ends."""
    space = tmp_path / "space.yaml"
    space.write_text(ASHA_REUSE_SPACE)
    seed = _seed_drawing(space, cifar_dir, [0.1, 0.1, 1.0e-5, 0.1, 0.1])
    results, unwound = tmp_path / "results", tmp_path / "unwound"
    unwound.mkdir()
    env = {**_cli_env(), "PYTHONPATH": os.pathsep.join([str(HOOKS), os.environ.get("PYTHONPATH", "")]),
           "RAYCIFAR_TEST_SLOW_UNWIND_S": str(UNWIND_S), "RAYCIFAR_TEST_SLOW_UNWIND_DIR": str(unwound)}  # fmt: skip
    sweep = subprocess.run(
        [sys.executable, "-m", "raycifar", "sweep", str(space), "--data-dir", str(cifar_dir), "--results-dir",
         str(results), "--name", "unwind", "--num-samples", "5", "--seed", str(seed), "--max-concurrent-trials", "2",
         "--wandb", "off", "--no-dashboard"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stdout[-3000:] + sweep.stderr[-3000:]
    record = json.loads((results / "sweeps" / "unwind" / "sweep_record.json").read_text())
    states = sorted(t["state"] for t in record["trials"].values())
    assert len(states) == 5 and "stopped_early" in states and "running" not in states, states
    assert any(unwound.iterdir()), "no stopped trial went through the slow unwind"
    pids = set()
    for folder in (results / "sweeps" / "unwind").glob("trial_*"):
        pids |= {json.loads(line)["worker_pid"] for line in (folder / "result.json").read_text().splitlines() if line}
    assert len(pids) < 5, f"five trials in five processes: none was reused ({sorted(pids)})"
