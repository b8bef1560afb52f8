"""cluster.local.yaml end to end: the fake multi-node cluster comes up on 127.0.0.1, a smoke
sweep submitted with ``ray job submit`` spreads its trials over several nodes, the
dashboard's HTTP API shows the job's status and logs, ``raycifar status`` reports both the
cluster and the sweep, and everything is torn down."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.error
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO, TINY_SPACE
from fake_cluster import FakeCluster, fake_cluster

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
    """The fake cluster with its min_workers, then scaled up to max_workers on request."""
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
