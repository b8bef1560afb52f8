"""Node loss on the fake multi-node cluster (cluster.local.yaml): a one-trial sweep runs as a
Ray job, on each trial path (in-trial, ``--torch-trainer``); once the trial has reported a
checkpoint, the test kills the worker node of the process it trains in (the ``worker_pid``
it reports: SIGKILL to that node's raylet and every process under it, as a machine that dies
would). The trial goes on on another node from its last checkpoint and the sweep promotes it.

A fake node is a raylet process on this machine (started by the head's autoscaler); the
node's Ray workers are that raylet's children. The node's death is only seen through Ray's
state API (the dashboard's ``/api/v0`` routes), as a user would see it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import REPO
from fake_cluster import FakeCluster, fake_cluster
from trial_progress import latest_checkpoints, tune_has_an_epoch_of

from raycifar.results.leaderboard import read_table
from raycifar.results.sweep_record import read_record

pytestmark = pytest.mark.slow

JOB_ID = "raycifar-node-loss"
EPOCHS = 8  # long enough that the kill lands mid-training, short enough to stay cheap
SPACE = f"""\
description: one tiny learnable config that trains long enough to lose a node under it
budget: 100000
arch: {{depths: [1, 1], base_width: 8}}
train: {{lr: 0.1, batch_size: 64, epochs: {EPOCHS}, schedule: onecycle}}
scheduler: {{grace_period: {EPOCHS}, reduction_factor: 2}}
"""


@pytest.fixture
def cluster() -> Iterator[FakeCluster]:
    """cluster.local.yaml with its two one-CPU worker nodes: one to lose, one to go on on (a
    fresh cluster for each test: a lost node is not the next test's)."""
    with fake_cluster(REPO / "cluster.local.yaml", workers=2) as running:
        yield running


def _state(cluster: FakeCluster, resource: str, **equal: str) -> list[dict]:
    """``/api/v0/<resource>`` entries (all states) whose fields equal ``equal``."""
    query = "".join(f"&filter_keys={k}&filter_predicates=%3D&filter_values={v}" for k, v in equal.items())
    return cluster.get(f"/api/v0/{resource}?limit=1000&detail=1{query}")["data"]["result"]["result"]


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def _descendants(root: int) -> list[int]:
    """Every live process under ``root`` (children first found first)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = _parent(int(entry.name))
            except (OSError, IndexError):
                continue
    found, frontier = [], [root]
    while frontier:
        children = [pid for pid, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _kill_node_of(worker_pid: int) -> int:
    """SIGKILL the raylet whose worker ``worker_pid`` is, then every process under it; returns the raylet's PID."""
    raylet = _parent(worker_pid)
    assert Path(f"/proc/{raylet}/comm").read_text().strip() == "raylet", "a Ray worker's parent is its node's raylet"
    under = _descendants(raylet)
    for pid in [raylet, *under]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            continue
    return raylet


def _reported(results: Path, name: str) -> list[dict]:
    """The one trial's reported epochs, from Tune's result.json ([] before it has one)."""
    files = list((results / "sweeps" / name).glob("trial_*/result.json"))
    lines = files[0].read_text().splitlines() if files else []
    return [json.loads(line) for line in lines if line.endswith("}")]


def _job(cluster: FakeCluster) -> dict:
    return cluster.get(f"/api/jobs/{JOB_ID}")


def _actor_of(cluster: FakeCluster, pid: int) -> dict | None:
    """The state API's entry of the actor whose process is ``pid`` (None: not listed yet)."""
    job_id = _job(cluster)["job_id"]
    return next((a for a in _state(cluster, "actors", job_id=job_id) if int(a.get("pid") or 0) == pid), None)


def _trainer_after_a_checkpoint(cluster: FakeCluster, results: Path, name: str) -> dict:
    """The actor the trial trains in (the ``worker_pid`` its latest checkpoint reports), once
    the driver has an epoch of it: a checkpoint to go on from."""
    deadline = time.monotonic() + 480
    while time.monotonic() < deadline:
        job = _job(cluster)
        assert job["status"] in ("PENDING", "RUNNING"), cluster.get(f"/api/jobs/{JOB_ID}/logs")["logs"][-3000:]
        sweep_dir = results / "sweeps" / name
        latest = list(latest_checkpoints(sweep_dir).items()) if job.get("job_id") else []
        registered = latest and tune_has_an_epoch_of(sweep_dir, latest[0][0])
        actor = _actor_of(cluster, int(latest[0][1]["worker_pid"])) if registered else None
        if actor is not None and actor["state"] == "ALIVE":
            return actor
        time.sleep(0.5)
    raise TimeoutError("the trial reported no epoch in 480 s")


def _wait(what: str, done: Callable[[], bool], timeout_s: float) -> None:
    """Poll ``done`` every 2 s until it is true; ``timeout_s`` is a deadline, not a measure."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if done():
            return
        time.sleep(2)
    raise TimeoutError(f"{what}: not after {timeout_s:.0f} s")


@pytest.mark.parametrize("path", [[], ["--torch-trainer"]], ids=["in-trial", "torch-trainer"])
def test_a_trial_goes_on_from_its_checkpoint_on_another_node_when_its_node_dies(
    cluster: FakeCluster, cifar_dir: Path, tmp_path: Path, path: list[str]
) -> None:
    results, name = tmp_path / "results", "node-loss"
    (tmp_path / "space.yaml").write_text(SPACE)
    cluster.submit(  # the debug timeline: the driver marks each epoch it receives
        "env", "RAYCIFAR_TIMELINE=1", sys.executable, "-m", "raycifar", "sweep", str(tmp_path / "space.yaml"), "--address", "auto",
        "--data-dir", str(cifar_dir), "--results-dir", str(results), "--name", name, "--num-samples", "1",
        "--cpus-per-trial", "1", "--max-failures", "2", "--wandb", "off", *path, submission_id=JOB_ID,
    )  # fmt: skip
    trainer = _trainer_after_a_checkpoint(cluster, results, name)
    lost = trainer["node_id"]
    raylet = _kill_node_of(int(trainer["pid"]))
    before = len(_reported(results, name))

    _wait(f"node {lost} (raylet {raylet}) reported dead", lambda: _state(cluster, "nodes", node_id=lost)[0]["state"] == "DEAD", 120)  # fmt: skip
    _wait("the sweep job's end", lambda: _job(cluster)["status"] in ("SUCCEEDED", "FAILED", "STOPPED"), 480)
    job = _job(cluster)
    logs = cluster.get(f"/api/jobs/{JOB_ID}/logs")["logs"]
    assert job["status"] == "SUCCEEDED", logs[-4000:]
    record = read_record(results / "sweeps" / name)
    ended = [(t.state, t.reason) for t in record.trials.values()]
    assert record.outcome == "completed" and ended == [("finished", None)], f"the trial ended {ended}"

    # the trial went on on another node (the process it reported after the kill)
    actors = {int(a.get("pid") or 0): a for a in _state(cluster, "actors", job_id=job["job_id"])}
    reported = _reported(results, name)
    nodes = {actors[int(r["worker_pid"])]["node_id"] for r in reported if int(r["worker_pid"]) in actors}
    assert lost in nodes and nodes - {lost}, f"the trial trained on {nodes}; lost {lost}"
    if path:  # a TorchTrainer trial's driver and Train controller sat on the head all along
        (head,) = [n["node_id"] for n in _state(cluster, "nodes") if n["is_head_node"]]
        drivers = {a["class_name"].rsplit(".", 1)[-1]: a["node_id"] for a in actors.values() if a["class_name"].endswith(("ImplicitFunc", "TrainController"))}  # fmt: skip
        assert drivers == {"ImplicitFunc": head, "TrainController": head}, f"head {head}: {drivers}"

    # ... from its last checkpoint: every epoch reported once, the restarted group's first epoch right after it
    epochs = [r["epoch"] for r in reported]
    assert epochs == list(range(1, EPOCHS + 1)), f"an epoch was trained twice or skipped: {epochs}"
    resumed = [r["resumed_from_epoch"] for r in reported]
    restart = next((i for i, start in enumerate(resumed) if start > 0), None)
    assert restart is not None, (
        f"no epoch came from a restarted worker group ({before} reported at the kill): {resumed}"
    )
    assert resumed[:restart] == [0] * restart and set(resumed[restart:]) == {epochs[restart - 1]}

    # ... and the sweep promoted it
    (row,) = read_table(results)
    assert row["sweep"] == name and row["entry_id"] == record.promoted_entry
