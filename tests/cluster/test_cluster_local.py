"""cluster.local.yaml end to end, on one fake multi-node cluster for the module: it comes up
on 127.0.0.1, a smoke sweep submitted with ``ray job submit`` spreads its trials over
several nodes, the dashboard's HTTP API shows the job's status and logs, ``raycifar status``
reports both the cluster and the sweep; then sweeps as Ray jobs: ``raycifar sweep --submit``
returns at once, the sweep runs to its leaderboard row with no client connected, ``raycifar
status --address`` follows it from the Jobs API and the cluster's own files, and ``raycifar
stop`` ends a second sweep as interrupted with nothing promoted; everything is torn down.

(The node-loss tests bring up clusters of their own: they kill nodes.)"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from conftest import REPO, TINY_SPACE
from fake_cluster import FakeCluster, fake_cluster

from raycifar.results.leaderboard import read_table
from raycifar.results.sweep_record import read_record

pytestmark = pytest.mark.slow

JOB_ID = "raycifar-smoke"
MIN_WORKERS, MAX_WORKERS = 2, 3  # cluster.local.yaml's cpu_worker
# docs/cluster.md's recipe for scaling up before a sweep: ask the autoscaler for the CPUs of every worker.
SCALE_UP = (
    "import ray; from ray.autoscaler.sdk import request_resources; "
    f"ray.init(); request_resources(bundles=[{{'CPU': 1}}] * {MAX_WORKERS})"
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[FakeCluster]:
    """The fake cluster with its min_workers, then scaled up to max_workers on request. Job
    entrypoints call ``raycifar``: this interpreter's scripts folder goes first on its PATH."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
        with fake_cluster(REPO / "cluster.local.yaml", workers=MIN_WORKERS) as running:
            running.submit(sys.executable, "-c", SCALE_UP)
            yield running


@pytest.fixture(scope="module")
def results(
    cluster: FakeCluster, cifar_dir: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """Submit a two-trial smoke sweep as a Ray job (each trial takes one worker node's CPU)."""
    results_dir = tmp_path_factory.mktemp("cluster") / "results"
    sweep = [
        sys.executable, "-m", "raycifar", "sweep", str(TINY_SPACE), "--address", "auto",
        "--data-dir", str(cifar_dir), "--results-dir", str(results_dir), "--name", "on-cluster",
        "--num-samples", "2", "--max-epochs", "1", "--cpus-per-trial", "1", "--wandb", "off",
    ]  # fmt: skip
    cluster.submit(*sweep, submission_id=JOB_ID)
    return results_dir


def wait_for_job(cluster: FakeCluster, timeout_s: float = 480) -> dict:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        job = cluster.get(f"/api/jobs/{JOB_ID}")
        if job["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            return job
        time.sleep(3)
    raise TimeoutError(f"job {JOB_ID} still {job['status']} after {timeout_s:.0f} s")


def test_job_status_and_logs_over_the_dashboard_api(
    cluster: FakeCluster, results: Path
) -> None:
    job = wait_for_job(cluster)
    logs = cluster.get(f"/api/jobs/{JOB_ID}/logs")["logs"]
    assert job["status"] == "SUCCEEDED", logs[-3000:]
    assert job["entrypoint"].split()[1:4] == ["-m", "raycifar", "sweep"]
    assert "promoted to the leaderboard" in logs
    listed = {j["submission_id"]: j["status"] for j in cluster.get("/api/jobs/")}
    assert listed[JOB_ID] == "SUCCEEDED"


def test_the_dashboard_api_wants_the_clusters_token(cluster: FakeCluster) -> None:
    for token, code in ((None, 401), ("not-the-token", 403)):
        with pytest.raises(urllib.error.HTTPError) as refused:
            cluster.get("/api/jobs/", token=token)
        assert refused.value.code == code


def test_the_autoscaler_adds_worker_nodes_on_request(cluster: FakeCluster) -> None:
    nodes = cluster.wait_for_nodes(1 + MAX_WORKERS, timeout_s=120)
    assert sum(n["is_head_node"] for n in nodes) == 1
    assert {
        n["resources_total"].get("CPU") for n in nodes if not n["is_head_node"]
    } == {1.0}


def test_trials_ran_on_more_than_one_worker_node(
    cluster: FakeCluster, results: Path
) -> None:
    job = wait_for_job(cluster)
    head = {n["node_id"] for n in cluster.alive_nodes() if n["is_head_node"]}
    actors = cluster.get("/api/v0/actors?limit=1000&detail=1")["data"]["result"]["result"]
    node_of_pid = {int(a.get("pid") or 0): a["node_id"] for a in actors if a["job_id"] == job["job_id"]}
    trials = [
        p
        for p in (results / "sweeps" / "on-cluster").glob("trial_*")
        if (p / "result.json").is_file()
    ]
    assert len(trials) == 2
    # each trial reports the process it trains in (its own on the in-trial path)
    pids = {json.loads(line)["worker_pid"] for t in trials for line in (t / "result.json").read_text().splitlines() if line.strip()}
    nodes = {node_of_pid[pid] for pid in pids if pid in node_of_pid}
    assert len(nodes) >= 2, f"the two trials trained on {len(nodes)} node(s) (processes {sorted(pids)})"
    assert not nodes & head, "the head offers no CPUs: trials run on worker nodes only"


def test_status_reports_the_cluster_and_the_sweep(
    cluster: FakeCluster, results: Path
) -> None:
    wait_for_job(cluster)
    command = [
        sys.executable,
        "-m",
        "raycifar",
        "status",
        "--results-dir",
        str(results),
        "--format",
        "json",
    ]
    env = {**cluster.env, "RAY_API_SERVER_ADDRESS": cluster.dashboard_url}
    shown = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert shown.returncode == 0, shown.stderr
    report = json.loads(shown.stdout)
    (sweep,) = report["sweeps"]
    assert sweep["name"] == "on-cluster" and sweep["state"] == "promoted"
    assert sweep["counts"] == {"finished": 2}
    nodes = report["cluster"]["nodes"]
    assert len(nodes) >= 1 + MIN_WORKERS and sum(n["is_head"] for n in nodes) == 1
    assert [
        j["status"] for j in report["cluster"]["jobs"] if j["submission_id"] == JOB_ID
    ] == ["SUCCEEDED"]


# --- sweeps as Ray jobs: raycifar sweep --submit, status --address, stop -------------------


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
