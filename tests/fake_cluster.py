"""Test helpers: bring up cluster.local.yaml on this machine, talk to its dashboard, and
tear down exactly the processes it started.

The head is started with ``ray start --block`` as the leader of a new session; every
Ray process it starts (the fake worker nodes included) stays in that session, so the
tear-down signals that session only and never touches another Ray on the machine.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import yaml

RAY = str(Path(sys.executable).with_name("ray"))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def session_pids(leader: int) -> list[int]:
    """Every live process in the session that ``leader`` leads."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if os.getsid(int(entry.name)) == leader:
                found.append(int(entry.name))
        except (ProcessLookupError, PermissionError):
            continue
    return found


def _signal_all(pids: list[int], signum: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, signum)
        except ProcessLookupError:
            continue


def stop_session(leader: int, grace_s: float = 5.0) -> None:
    """SIGTERM every process of the session, then SIGKILL what is left after ``grace_s``."""
    _signal_all(session_pids(leader), signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    while session_pids(leader) and time.monotonic() < deadline:
        time.sleep(0.5)
    _signal_all(session_pids(leader), signal.SIGKILL)


@dataclass(frozen=True)
class FakeCluster:
    """A running cluster.local.yaml: its addresses, auth token and client environment."""

    gcs_address: str
    dashboard_url: str
    token: str
    env: dict[str, str]
    head_log: Path

    def get(self, route: str, token: str | None = "cluster") -> object:
        """GET a dashboard route and decode its JSON (``token=None``: send no token)."""
        request = urllib.request.Request(self.dashboard_url + route)
        if token is not None:
            request.add_header(
                "Authorization", f"Bearer {self.token if token == 'cluster' else token}"
            )
        with urllib.request.urlopen(request, timeout=30) as answer:
            body = answer.read()
        return json.loads(body) if body.strip()[:1] in (b"{", b"[") else body.decode()

    def submit(self, *entrypoint: str, submission_id: str | None = None) -> str:
        """``ray job submit`` the entrypoint; returns the command's output.

        With a ``submission_id`` it returns at once (``--no-wait``); without, after the job.
        """
        command = [RAY, "job", "submit", "--address", self.dashboard_url]
        if submission_id:
            command += ["--submission-id", submission_id, "--no-wait"]
        done = subprocess.run(
            [*command, "--", *entrypoint], env=self.env, capture_output=True, text=True, timeout=120, check=False
        )  # fmt: skip
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout

    def alive_nodes(self) -> list[dict]:
        answer = self.get(
            "/api/v0/nodes?limit=100&filter_keys=state&filter_predicates=%3D&filter_values=ALIVE"
        )
        return answer["data"]["result"]["result"]

    def wait_for_nodes(
        self, count: int, timeout_s: float, head: subprocess.Popen | None = None
    ) -> list[dict]:
        """The alive nodes, once there are at least ``count`` of them."""
        deadline = time.monotonic() + timeout_s
        nodes: list[dict] = []
        while time.monotonic() < deadline:
            if head is not None and head.poll() is not None:
                raise RuntimeError(
                    f"ray start exited with {head.returncode}:\n{self.head_log.read_text()[-3000:]}"
                )
            try:
                nodes = self.alive_nodes()
            except (urllib.error.URLError, OSError, KeyError):
                nodes = []
            if len(nodes) >= count:
                return nodes
            time.sleep(2)
        raise TimeoutError(
            f"{len(nodes)} of {count} nodes alive after {timeout_s:.0f} s"
        )


def client_env(**extra: str) -> dict[str, str]:
    """This process's environment without anything that points at another Ray or W&B."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))}
    return {**env, **extra}


@contextmanager
def fake_cluster(
    config: Path, workers: int, timeout_s: float = 240
) -> Iterator[FakeCluster]:
    """Start ``config`` (a fake_multinode cluster file) on free loopback ports, wait for
    the head and ``workers`` worker nodes, and stop every process of it on exit."""
    with tempfile.TemporaryDirectory(
        prefix="rc", dir="/tmp"
    ) as short:  # AF_UNIX paths <= 107 bytes
        root = Path(short)
        port, dashboard_port = free_port(), free_port()
        spec = yaml.safe_load(config.read_text())
        spec["provider"]["gcs_address"] = f"127.0.0.1:{port}"
        (root / "cluster.yaml").write_text(yaml.safe_dump(spec))
        token = secrets.token_hex(16)
        env = client_env(
            TMPDIR=short,
            RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",  # stay on 127.0.0.1
            RAY_AUTH_MODE="token",
            RAY_AUTH_TOKEN=token,
        )
        head_env = {**env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1"}
        command = [
            RAY, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=0",
            "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
            f"--temp-dir={root / 'ray'}", f"--autoscaling-config={root / 'cluster.yaml'}",
        ]  # fmt: skip
        head_log = root / "head.log"
        with open(head_log, "w") as log:
            head = subprocess.Popen(
                command,
                env=head_env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        cluster = FakeCluster(
            f"127.0.0.1:{port}",
            f"http://127.0.0.1:{dashboard_port}",
            token,
            env,
            head_log,
        )
        try:
            cluster.wait_for_nodes(1 + workers, timeout_s, head)
            yield cluster
        finally:
            stop_session(head.pid)
            head.wait(timeout=30)
