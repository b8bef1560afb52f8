"""Sweeps as Ray jobs on the fake multi-node cluster (cluster.local.yaml): ``raycifar sweep
--submit`` returns at once, the sweep runs to its leaderboard row with no client connected,
``raycifar status --address`` follows it from the Jobs API and the cluster's own files, and
``raycifar stop`` ends a second sweep as interrupted with nothing promoted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_SPACE
from fake_cluster import FakeCluster, fake_cluster

from raycifar.results.leaderboard import read_table
from raycifar.results.sweep_record import read_record

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    """cluster.local.yaml with its two one-CPU worker nodes. The job entrypoints call
    ``raycifar``: this interpreter's scripts folder goes first on the cluster's PATH."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        with fake_cluster(REPO / "cluster.local.yaml", workers=2) as running:
            yield running


def raycifar(cluster: FakeCluster, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    """``raycifar ARGS`` as a client of the cluster (its token, no RAY_ADDRESS), in a fresh process."""
    done = subprocess.run(
        [sys.executable, "-m", "raycifar", *args], env={**cluster.env, "COLUMNS": "200"}, capture_output=True,
        text=True, timeout=300, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, f"raycifar {' '.join(args)}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def submitted(cluster: FakeCluster, name: str) -> dict:
    """Sweep ``name`` as ``raycifar status --address URL --format json`` shows it."""
    report = json.loads(raycifar(cluster, "status", "--address", cluster.dashboard_url, "--format", "json").stdout)
    assert report["notes"] == []
    (entry,) = [s for s in report["submitted"] if s["name"] == name]
    return entry


def poll(cluster: FakeCluster, name: str, done: callable, timeout_s: float = 480) -> dict:
    """Poll status until ``done(entry)``; returns that entry."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        entry = submitted(cluster, name)
        if done(entry):
            return entry
        time.sleep(3)
    raise TimeoutError(f"sweep {name}: still {entry['job_status']} / {entry['sweep']} after {timeout_s:.0f} s")


def test_a_submitted_sweep_runs_to_its_leaderboard_row_without_the_client(
    cluster: FakeCluster, cifar_dir: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    space = tmp_path / "my_space.yaml"  # a local file: it travels with the job
    space.write_text(TINY_SPACE.read_text())
    answer = raycifar(
        cluster, "sweep", str(space), "--submit", "--address", cluster.dashboard_url, "--name", "sub-1",
        "--data-dir", str(cifar_dir), "--results-dir", str(results), "--num-samples", "2", "--max-epochs", "1",
        "--wandb", "off", "--format", "json",
    )  # fmt: skip
    job = json.loads(answer.stdout)
    assert job["sweep"] == "sub-1" and job["submission_id"].startswith("raycifar-sub-1-")
    written = results / "submitted" / "sub-1" / "my_space.yaml"
    assert f"exec raycifar sweep {written} --name sub-1 --address auto --results-dir {results} " in job["entrypoint"]
    entry = poll(cluster, "sub-1", lambda e: e["job_status"] in ("SUCCEEDED", "FAILED", "STOPPED"))
    logs = raycifar(cluster, "logs", "sub-1", "--address", cluster.dashboard_url).stdout
    assert entry["job_status"] == "SUCCEEDED", logs[-3000:]
    assert entry["sweep"]["state"] == "promoted" and entry["sweep"]["counts"] == {"finished": 2}
    (row,) = read_table(results)
    assert (row["sweep"], row["entry_id"], row["space"]) == ("sub-1", entry["sweep"]["promoted_entry"], "my_space")
    assert written.read_text() == space.read_text() + "\n"  # printenv ends it with a newline
    assert "promoted to the leaderboard" in logs


def test_stop_ends_a_submitted_sweep_as_interrupted_with_nothing_promoted(
    cluster: FakeCluster, cifar_dir: Path, tmp_path: Path
) -> None:
    results = tmp_path / "results"
    spec = yaml.safe_load(TINY_SPACE.read_text())
    spec["train"]["epochs"], spec["scheduler"]["grace_period"] = 40, 40  # runs until stopped; ASHA stops none
    space = tmp_path / "long_space.yaml"
    space.write_text(yaml.safe_dump(spec))
    raycifar(
        cluster, "sweep", str(space), "--submit", "--address", cluster.dashboard_url, "--name", "sub-2",
        "--data-dir", str(cifar_dir), "--results-dir", str(results), "--num-samples", "2", "--wandb", "off",
    )  # fmt: skip
    poll(cluster, "sub-2", lambda e: (e["sweep"] or {}).get("counts", {}).get("running", 0) >= 1)
    stopped = raycifar(cluster, "stop", "sub-2", "--address", cluster.dashboard_url)
    assert "sweep sub-2 stopped: trials stopped, nothing promoted" in stopped.stdout
    record = read_record(results / "sweeps" / "sub-2")
    assert (record.outcome, record.promoted_entry) == ("interrupted", None)
    assert read_table(results) == []
    assert submitted(cluster, "sub-2")["sweep"]["state"] == "interrupted"
    again = raycifar(cluster, "stop", "sub-2", "--address", cluster.dashboard_url)
    assert "sweep sub-2 is not running: its job ended STOPPED" in again.stdout
