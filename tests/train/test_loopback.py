"""A local run listens on loopback only: no process of a sweep or a training run, Ray's or
torch's, accepts connections from the network.

Each test runs the CLI on a local Ray and, while it runs, polls the listening TCP sockets
of the CLI's process and every process it spawned (Ray's daemons, the Tune and Train
actors, the Train workers and their torch process group).
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
from conftest import TINY_SPACE

pytestmark = pytest.mark.slow

POLL_S = 0.25
RUN_TIMEOUT_S = 600
FIXED = """\
budget: 100000
arch: {depths: [1, 1], base_width: 8}
train: {lr: 0.1, batch_size: 64, epochs: 1, schedule: linear, warmup_epochs: 0.5}
"""


@pytest.fixture(autouse=True)
def short_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Ray's socket paths must stay under 107 bytes: its session folder goes in a short TMPDIR."""
    with tempfile.TemporaryDirectory(prefix="rc", dir="/tmp") as folder:
        monkeypatch.setenv("TMPDIR", folder)
        yield folder


@dataclass(frozen=True)
class Listener:
    """One listening TCP socket: the process holding it and its local address."""

    pid: int
    process: str  # the command line, as Ray titles its workers (e.g. ``ray::RayTrainWorker``)
    ip: str
    port: int

    def __str__(self) -> str:
        return f"{self.ip}:{self.port} (pid {self.pid}: {self.process})"


def is_loopback(ip: str) -> bool:
    """127.0.0.0/8 or ::1, also written as an IPv4-mapped IPv6 address."""
    address = ipaddress.ip_address(ip.split("%")[0])
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def _title(pid: int) -> str | None:
    """The process's command line as it reads now (Ray retitles a worker once it hosts an actor)."""
    try:
        return " ".join(psutil.Process(pid).cmdline()).strip()[:100]
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None


def _family(root: int, known: dict[int, str]) -> None:
    """Add ``root`` and its live descendants to ``known`` (pid -> command line)."""
    try:
        parent = psutil.Process(root)
        pids = [parent.pid, *(child.pid for child in parent.children(recursive=True))]
    except psutil.NoSuchProcess:
        return
    for pid in pids:
        if pid not in known:
            known[pid] = _title(pid) or "?"


def _listeners(known: dict[int, str], seen: dict[tuple[int, str, int], Listener]) -> None:
    """Add the listening TCP sockets of the processes in ``known`` to ``seen``, titled as now."""
    for c in psutil.net_connections(kind="tcp"):
        if c.status == psutil.CONN_LISTEN and c.pid in known:
            known[c.pid] = _title(c.pid) or known[c.pid]
            seen[c.pid, c.laddr.ip, c.laddr.port] = Listener(c.pid, known[c.pid], c.laddr.ip, c.laddr.port)


def watch_listeners(args: list[str], cwd: Path) -> tuple[int, str, list[Listener]]:
    """Run ``raycifar *args``; returns its exit code, its output and every socket its processes listened on."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    env.update(COLUMNS="200")
    log = cwd / "raycifar.log"
    known: dict[int, str] = {}
    seen: dict[tuple[int, str, int], Listener] = {}
    with log.open("w") as output:
        run = subprocess.Popen(
            [sys.executable, "-m", "raycifar", *args], cwd=cwd, env=env, stdout=output, stderr=subprocess.STDOUT
        )
        deadline = time.monotonic() + RUN_TIMEOUT_S
        try:
            while run.poll() is None and time.monotonic() < deadline:
                _family(run.pid, known)
                _listeners(known, seen)
                time.sleep(POLL_S)
        finally:
            if run.poll() is None:  # stuck: Ctrl+C makes the CLI stop its Ray
                run.send_signal(signal.SIGINT)
                try:
                    run.wait(60)
                except subprocess.TimeoutExpired:
                    run.kill()
                    run.wait()
    return run.returncode, log.read_text(), list(seen.values())


CASES = {
    # A sweep whose one trial trains data-parallel on two workers (gloo on CPU); the test
    # also checks that the trial's epochs were reported by a world of two.
    "sweep-ddp": lambda data, results: [
        "sweep", str(TINY_SPACE), "--data-dir", str(data), "--results-dir", str(results), "--num-samples", "1",
        "--max-epochs", "1", "--workers-per-trial", "2", "--cpus-per-trial", "2", "--wandb", "off", "--no-dashboard",
    ],
    # ``raycifar train`` on one worker, with the dashboard.
    "train-one-worker": lambda data, results: [
        "train", "fixed.yaml", "--data-dir", str(data), "--results-dir", str(results), "--name", "one",
    ],
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_a_local_run_listens_on_loopback_only(case: str, tmp_path: Path, cifar_dir: Path) -> None:
    (tmp_path / "fixed.yaml").write_text(FIXED)
    code, output, listeners = watch_listeners(CASES[case](cifar_dir, tmp_path / "results"), tmp_path)
    assert code == 0, f"raycifar {case} failed:\n{output[-3000:]}"
    assert any("RayTrainWorker" in listener.process for listener in listeners), (
        "the poll saw no Ray Train worker's sockets:\n" + "\n".join(map(str, sorted(listeners, key=str)))
    )
    print(
        f"{case}:", *sorted(str(listener) for listener in listeners if "RayTrainWorker" in listener.process), sep="\n"
    )
    exposed = sorted(str(listener) for listener in listeners if not is_loopback(listener.ip))
    assert not exposed, "listening beyond loopback:\n" + "\n".join(exposed)
    if case == "sweep-ddp":  # the same run shows the trial trained data-parallel, W&B off
        results = tmp_path / "results"
        reported = [json.loads(line) for path in (results / "sweeps").rglob("result.json") for line in path.read_text().splitlines()]
        assert reported and all(r["world_size"] == 2 for r in reported)
        assert {r["node_ip"] for r in reported} == {"127.0.0.1"}, "a local Ray binds to loopback only"
        assert not (results / "wandb").exists()
