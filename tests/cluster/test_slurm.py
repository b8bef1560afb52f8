"""``raycifar slurm`` on a real one-node Slurm (Debian's packages, a private cluster in a temp
folder: tests/slurm_cluster.py): submit, leaderboard row, requeue and the time-limit warning
with nothing lost, two jobs at once. Ray runs inside the jobs: run these under the Ray lock."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from slurm_cluster import PrivateSlurm, missing
from test_resume_e2e import _record

pytestmark = [pytest.mark.slow]
TINY_SPACE = Path(__file__).resolve().parents[1] / "tiny_space.yaml"
SLURM_SPACE = """
description: a few seconds a trial on one CPU, so that a requeue and a warning land mid-sweep
budget: 100000
arch: {model: resnet20, depths: [1, 1], base_width: 8}
train: {lr: {choice: [0.1, 0.05]}, batch_size: 64, epochs: 10, schedule: onecycle}
"""
SAVED_S = 3  # Tune saves the trials' states every second here (TUNE_GLOBAL_CHECKPOINT_S=1): a finished trial is in it by then


@pytest.fixture(scope="session")
def slurm() -> Iterator[PrivateSlurm]:
    """The private cluster; stopped in the documented order, and nothing of it may be left.
    Its folder is directly under /tmp: munged (user munge) cannot enter pytest's own (mode 700)."""
    reason = missing()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true requires the Slurm tests: {reason}")
        pytest.skip(reason)
    folder = Path(tempfile.mkdtemp(prefix="slurm", dir="/tmp"))
    folder.chmod(0o755)
    cluster = PrivateSlurm(folder / "c")
    try:
        cluster.start()
        yield cluster
    finally:
        left = cluster.stop()
        left += [f"{p.pid} {p.name()}" for p in _job_processes(cluster.job_ids)]
        shutil.rmtree(folder, ignore_errors=True)
        assert left == [], f"left running after the private Slurm stopped: {left}"


def _job_processes(job_ids: set[str]) -> list[psutil.Process]:
    """Processes of these Slurm jobs (their environment names the job), Ray's included."""
    found = []
    for process in psutil.process_iter():
        try:
            if process.environ().get("SLURM_JOB_ID") in job_ids:
                found.append(process)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def _submit(slurm: PrivateSlurm, cwd: Path, *args: str) -> str:
    """``raycifar slurm ARGS --submit``: the job id it prints."""
    env = {k: v for k, v in slurm.env.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    env |= {"TUNE_GLOBAL_CHECKPOINT_S": "1", "PATH": f"{Path(sys.executable).parent}:{env['PATH']}", "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-m", "raycifar", "slurm", "--submit", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    job = done.stdout.strip()
    assert job.isdigit(), done.stdout
    slurm.job_ids.add(job)
    return job


ENDED = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "OUT_OF_MEMORY", "PREEMPTED", "BOOT_FAIL", "DEADLINE"}


def _state(slurm: PrivateSlurm, job: str) -> str:
    """The job's state (ended jobs included: slurmctld keeps them for MinJobAge, 300 s); "" if unknown."""
    return slurm.run("squeue", "-h", "-t", "all", "-j", job, "-o", "%T", check=False).stdout.strip()


def _wait(what: str, ready, timeout_s: float = 420.0, every_s: float = 0.5):  # noqa: ANN001, ANN202
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = ready()
        if value:
            return value
        time.sleep(every_s)
    raise AssertionError(f"timed out waiting for {what}")


def _restart_now(slurm: PrivateSlurm, job: str) -> None:
    """A requeued job waits ~2 min (BeginTime) before it may start again: start it now."""
    _wait(f"job {job} back in the queue", lambda: _state(slurm, job) == "PENDING", 120)
    slurm.run("scontrol", "update", f"jobid={job}", "StartTime=now")


def _finished(sweep_dir: Path) -> set[str]:
    return {tid for tid, t in _record(sweep_dir).get("trials", {}).items() if t["state"] in ("finished", "stopped_early")}


def test_a_sweep_survives_a_requeue_and_the_time_limit_warning(slurm: PrivateSlurm, tmp_path: Path, cifar_dir: Path) -> None:
    """One job: submitted, requeued (``scontrol requeue``) after its first trial, then warned
    (``scancel --batch --signal=USR1``) after its second: each run resumes, no finished trial
    runs again, and the sweep ends with exactly one leaderboard row."""
    space = tmp_path / "space.yaml"
    space.write_text(SLURM_SPACE)
    results, name = tmp_path / "rc", "requeued"
    sweep_dir = results / "sweeps" / name
    job = _submit(slurm, tmp_path, str(space), "--name", name, "--results-dir", str(results), "--cpus-per-node", "2",
                  "--mem", "3G", "--time", "20:00", "--", "--data-dir", str(cifar_dir), "--num-samples", "5",
                  "--scheduler", "fifo", "--wandb", "off", "--max-concurrent-trials", "1")  # fmt: skip
    first = _wait("a finished trial", lambda: _finished(sweep_dir))
    time.sleep(SAVED_S)
    kept = {tid: (sweep_dir / f"trial_{tid}" / "result.json").read_text() for tid in first}
    slurm.run("scontrol", "requeue", job)
    _restart_now(slurm, job)

    second = _wait("a trial finished after the requeue", lambda: _finished(sweep_dir) - first if _state(slurm, job) == "RUNNING" else set())
    time.sleep(SAVED_S)
    kept |= {tid: (sweep_dir / f"trial_{tid}" / "result.json").read_text() for tid in second}
    slurm.run("scancel", "--batch", "--signal=USR1", job)
    _restart_now(slurm, job)
    _wait(f"job {job} to end", lambda: _state(slurm, job) in ENDED, 600)
    assert _state(slurm, job) == "COMPLETED"

    log = (tmp_path / f"raycifar-{name}-{job}.out").read_text()
    assert "time limit near (USR1): stopping the sweep" in log and f"requeueing job {job}" in log, log[-3000:]
    assert log.count(f"resuming sweep {name}") == 2, log[-3000:]
    assert "run 2, on" in log, log[-3000:]
    record = _record(sweep_dir)
    assert record["outcome"] == "completed" and len(record["trials"]) == 5, record
    for tid, text in kept.items():
        assert (sweep_dir / f"trial_{tid}" / "result.json").read_text() == text, f"finished trial {tid} ran again"
    board = subprocess.run([sys.executable, "-m", "raycifar", "leaderboard", "--results-dir", str(results), "--format", "json"],
                           capture_output=True, text=True, check=True, cwd=tmp_path)  # fmt: skip
    assert [row["sweep"] for row in json.loads(board.stdout)] == [name]
    status = subprocess.run([sys.executable, "-m", "raycifar", "status", "--results-dir", str(results)],
                            capture_output=True, text=True, check=True, cwd=tmp_path, env={**os.environ, "COLUMNS": "200"})  # fmt: skip
    assert f"Slurm job {job}" in status.stdout, status.stdout
    assert _job_processes({job}) == [], "the job left processes behind"


def _listening(job: str) -> dict[int, str]:
    """Listening TCP ports of the job's processes: port -> process name."""
    ports = {}
    for process in _job_processes({job}):
        try:
            for conn in process.net_connections(kind="tcp"):
                if conn.status == psutil.CONN_LISTEN:
                    ports[conn.laddr.port] = f"{process.name()} on {conn.laddr.ip}"
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return ports


def test_two_jobs_run_at_once_each_on_its_own_ports(slurm: PrivateSlurm, tmp_path: Path, cifar_dir: Path) -> None:
    """With --mem and one CPU each, two jobs (one a 2-worker trial) run at the same time on
    the one node, both finish, and every port Ray opens is in its job's window. (Ray's GCS and
    raylets listen on all interfaces whatever the node address: its token guards them.)"""
    jobs = {}
    for name, extra in (("one", []), ("ddp", ["--workers-per-trial", "2"])):
        jobs[name] = _submit(slurm, tmp_path, str(TINY_SPACE), "--name", name, "--results-dir", str(tmp_path / "rc"),
                             "--cpus-per-node", "1", "--mem", "2G", "--time", "15:00", "--", "--data-dir", str(cifar_dir),
                             "--num-samples", "1", "--wandb", "off", *extra)  # fmt: skip
    running = lambda: set(slurm.run("squeue", "-h", "-t", "R", "-o", "%i").stdout.split()) >= set(jobs.values())  # noqa: E731
    _wait("both jobs RUNNING at the same time", running, 120)
    seen: dict[str, dict[int, str]] = {job: {} for job in jobs.values()}
    while not all(_state(slurm, job) in ENDED for job in jobs.values()):
        for job in jobs.values():
            seen[job] |= _listening(job)
        time.sleep(1)
    ephemeral = range(*(int(x) + i for i, x in enumerate(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())))
    for name, job in jobs.items():
        log = (tmp_path / f"raycifar-{name}-{job}.out").read_text()
        assert "promoted to the leaderboard" in log, log[-3000:]
        low = int(log.split("raycifar: ports ")[1].split("-")[0])
        outside = {p: who for p, who in seen[job].items() if not low <= p < low + 100}
        # PyTorch's rendezvous store and gloo (a 2-worker trial) listen on ports the OS picks:
        # in its ephemeral range, which no job's window overlaps; Ray's own ports are all in the window.
        allowed = {p: who for p, who in outside.items() if name == "ddp" and p in ephemeral}
        assert seen[job] and outside == allowed, f"job {job} ({name}) listened outside {low}-{low + 99}: {outside}"
