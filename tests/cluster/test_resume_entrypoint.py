"""The entrypoint of ``raycifar k8s``'s RayJob (the same lines as a requeued Slurm job's), run
for real: the first run starts the sweep, the run after a kill (a RayJob retry) resumes it with
no finished trial run again, and a run after the promotion does nothing."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest
from test_resume_e2e import RESUME_SPACE, _record, _seed_drawing, _wait_for_one_finished_and_one_training

from raycifar.cluster.kuberay import K8sSweep, entrypoint

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("short_tmpdir")]


def _run(script: str, ray_address: str, cwd: Path, **popen: object) -> subprocess.Popen:
    """The entrypoint's ``bash -c`` as KubeRay's submitter runs it, on a node where ``auto`` is ``ray_address``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    env |= {"RAY_ADDRESS": ray_address, "PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "COLUMNS": "200"}
    env["TUNE_GLOBAL_CHECKPOINT_S"] = "1"  # Tune saves the trials' state every second
    return subprocess.Popen(shlex.split(script), cwd=cwd, env=env, text=True, **popen)


def test_a_retry_resumes_the_sweep_and_loses_no_finished_trial(tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar) -> None:
    space = tmp_path / "resume_space.yaml"
    space.write_text(RESUME_SPACE)
    seed = _seed_drawing(space, cifar_dir, [1.0e-5, 0.1, 0.1])
    results, name = tmp_path / "results", "retried"
    args = ("--data-dir", str(cifar_dir), "--num-samples", "3", "--seed", str(seed), "--wandb", "off", "--max-concurrent-trials", "1")
    script = entrypoint(K8sSweep(name=name, space=str(space), image="unused", results_dir=PurePosixPath(results), sweep_args=args))
    sweep_dir = results / "sweeps" / name

    first = _run(script, ray_address, tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        finished, training = _wait_for_one_finished_and_one_training(sweep_dir, first)
    finally:
        first.send_signal(signal.SIGKILL)  # the driver itself: the entrypoint exec's it
        first.wait(timeout=60)
    finished_before = (sweep_dir / f"trial_{finished}" / "result.json").read_text()

    retry = _run(script, ray_address, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = retry.communicate(timeout=900)
    assert retry.returncode == 0, output[-3000:]
    assert f"resuming sweep {name}: 1 trials finished" in output, output[-3000:]
    record = _record(sweep_dir)
    assert record["outcome"] == "completed" and len(record["trials"]) == 3
    assert (sweep_dir / f"trial_{finished}" / "result.json").read_text() == finished_before, "a finished trial ran again"
    rows = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    assert [row["sweep"] for row in rows] == [name]

    again = _run(script, ray_address, tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    output, _ = again.communicate(timeout=120)
    assert again.returncode == 0 and f"sweep {name} is already promoted: nothing to do" in output, output[-2000:]
