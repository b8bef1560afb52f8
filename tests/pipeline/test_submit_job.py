"""Sweeps as Ray jobs, without a cluster: the entrypoint that ``sweep --submit`` builds (options
passed through, refused, rewritten; a local space file written on the cluster), what it sends to
a fake dashboard's Jobs API (metadata, the stop signal, the space file's text and nothing else),
finding a job by sweep name, reading the status job's output, and the one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import cli_server
import pytest
import yaml
from conftest import TINY_SPACE
from fake_cluster import free_port

from raycifar.errors import UserError
from raycifar.pipeline.submit_job import KIND_KEY, RESULTS_KEY, SPACE_ENV, SWEEP_KEY, parse_status_output, sweep_job

NOW = datetime(2026, 1, 2, 3, 4, 5)


def test_options_pass_through_and_the_cluster_options_are_rewritten() -> None:
    options = {
        "data_dir": ["--data-dir", "/shared/cifar10"], "results_dir": ["--results-dir", "/shared/rc"],
        "num_samples": ["--num-samples", "8"], "address": ["--address", "http://head:8265"],
        "download": ["--download"], "dashboard": ["--no-dashboard"], "submit": ["--submit"],
        "output_format": ["--format", "json"],
    }  # fmt: skip
    job = sweep_job("smoke_space", options, now=NOW)
    assert job.argv == (
        "raycifar", "sweep", "smoke_space", "--name", "smoke_space-20260102-030405", "--address", "auto",
        "--results-dir", "/shared/rc", "--data-dir", "/shared/cifar10", "--num-samples", "8", "--download",
        "--no-dashboard",
    )  # fmt: skip
    assert job.space_text is None and SPACE_ENV not in job.runtime_env["env_vars"], "a shipped space goes by name"
    assert job.entrypoint == " ".join(job.argv)
    assert (job.name, job.results_dir) == ("smoke_space-20260102-030405", "/shared/rc")


def test_a_local_space_file_travels_in_the_runtime_env_and_is_written_on_the_cluster(tmp_path: Path) -> None:
    space = tmp_path / "mine.yaml"
    space.write_text(TINY_SPACE.read_text())
    cluster_results = tmp_path / "on cluster"  # a space in the path: the command quotes it
    job = sweep_job(str(space), {"results_dir": ["--results-dir", str(cluster_results)], "name": ["--name", "n1"]})
    written = cluster_results / "submitted" / "n1" / "mine.yaml"
    assert job.argv[:5] == ("raycifar", "sweep", str(written), "--name", "n1")
    assert job.runtime_env["env_vars"][SPACE_ENV] == space.read_text()
    # Run the job's shell command as the job supervisor would, with a stand-in raycifar.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "raycifar").write_text('#!/bin/sh\necho "$@"\n')
    (bin_dir / "raycifar").chmod(0o755)
    env = {**os.environ, **job.runtime_env["env_vars"], "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    done = subprocess.run(job.entrypoint, shell=True, env=env, capture_output=True, text=True, check=True)
    assert done.stdout.split() == ["sweep", *str(written).split(), "--name", "n1", "--address", "auto", "--results-dir", *str(cluster_results).split()]
    assert yaml.safe_load(written.read_text()) == yaml.safe_load(space.read_text())


def test_a_resume_is_submitted_with_its_name_and_the_options_that_may_change() -> None:
    options = {
        "resume": ["--resume", "resnet-1"], "results_dir": ["--results-dir", "/shared/rc"],
        "num_samples": ["--num-samples", "8"], "max_concurrent_trials": ["--max-concurrent-trials", "6"],
        "address": ["--address", "http://head:8265"], "submit": ["--submit"],
    }  # fmt: skip
    job = sweep_job(None, options)
    assert job.argv == (
        "raycifar", "sweep", "--address", "auto", "--results-dir", "/shared/rc", "--resume", "resnet-1",
        "--num-samples", "8", "--max-concurrent-trials", "6",
    )  # fmt: skip
    assert (job.name, job.space_text) == ("resnet-1", None)
    with pytest.raises(UserError, match="^--name: not with --resume"):
        sweep_job(None, {**options, "name": ["--name", "other"]})


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "--submit needs --results-dir"),
        ({"results_dir": ["--results-dir", "rc"]}, "--results-dir rc: with --submit this is a folder on the cluster"),
        ({"results_dir": ["--results-dir", "/rc"], "data_dir": ["--data-dir", "data"]}, "--data-dir data: with --submit"),
        ({"results_dir": ["--results-dir", "/rc"], "resume": ["--resume", "old"]}, "smoke_space: give a SPACE or --resume NAME, not both"),
        ({"results_dir": ["--results-dir", "/rc"], "name": ["--name", "a b"]}, "--name 'a b'"),
    ],
    ids=["no results dir", "relative results dir", "relative data dir", "space and resume", "bad name"],
)
def test_options_that_cannot_go_with_submit_are_one_line_errors(options: dict, message: str) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(")) as refused:
        sweep_job("smoke_space", options)
    assert "\n" not in str(refused.value)


def test_the_status_jobs_json_is_found_among_other_log_lines() -> None:
    report = {"sweeps": [{"name": "a", "state": "running"}]}
    logs = "Running entrypoint for job x: raycifar status\nwarning: {odd} row\n" + json.dumps(report, indent=2) + "\n"
    assert parse_status_output(logs) == report["sweeps"]
    with pytest.raises(ValueError):
        parse_status_output("Running entrypoint\nerror: no such folder\n")


# ---------------------------------------------------------------------- a fake Jobs API

TOKEN = "t0ken"


def _sweep_job(name: str, status: str, start_ms: int) -> dict:
    return {
        "type": "SUBMISSION", "job_id": None, "submission_id": f"raycifar-{name}-abc", "status": status,
        "entrypoint": f"raycifar sweep x --name {name}", "start_time": start_ms, "end_time": None,
        "metadata": {KIND_KEY: "sweep", SWEEP_KEY: name, RESULTS_KEY: "/shared/rc"},
    }  # fmt: skip


class _JobsApi(BaseHTTPRequestHandler):
    """A Ray dashboard's Jobs API: lists two sweep jobs, takes packages and submissions (kept in
    ``received``), and wants the token."""

    received: list[tuple[str, str, bytes]] = []
    jobs = [_sweep_job("old-sweep", "SUCCEEDED", 1_000), _sweep_job("live-sweep", "RUNNING", 2_000)]

    def _answer(self, code: int, body: object) -> None:
        payload = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(payload)

    def _allowed(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {TOKEN}":
            self._answer(401, "Unauthorized: Missing authentication token")
            return False
        return True

    def do_GET(self) -> None:
        if not self._allowed():
            return
        if self.path.startswith("/api/version"):
            return self._answer(200, {"version": "4", "ray_version": "2.60.0", "ray_commit": "x"})
        if self.path.startswith("/api/packages/"):
            return self._answer(404, "no such package")
        if self.path.rstrip("/") == "/api/jobs":
            return self._answer(200, self.jobs)
        return self._answer(404, "not found")

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))

    def do_PUT(self) -> None:
        if self._allowed():
            self.received.append(("PUT", self.path, self._body()))
            self._answer(200, {})

    def do_POST(self) -> None:
        if self._allowed():
            body = self._body()
            self.received.append(("POST", self.path, body))
            self._answer(200, {"submission_id": json.loads(body)["submission_id"], "job_id": None})

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def jobs_api(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    for name in ("RAY_ADDRESS", "RAY_API_SERVER_ADDRESS", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("RAY_AUTH_TOKEN", TOKEN)
    _JobsApi.received = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _JobsApi)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def cli(*args: str) -> subprocess.CompletedProcess:
    """``raycifar ARGS`` in a fresh process with this test's environment."""
    env = {**os.environ, "COLUMNS": "200"}
    return cli_server.run_cli(args, env=env, timeout=120)


def test_submit_sends_the_sweep_with_its_space_text_only(jobs_api: str, tmp_path: Path) -> None:
    (tmp_path / "big_data.bin").write_bytes(b"x" * 1000)  # next to the space file: must not travel
    space = tmp_path / "mine.yaml"
    space.write_text(TINY_SPACE.read_text())
    done = cli(
        "sweep", str(space), "--submit", "--address", jobs_api, "--results-dir", "/shared/rc", "--name", "s1",
        "--num-samples", "3", "--wandb", "off", "--format", "json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    (submission,) = [json.loads(r[2]) for r in _JobsApi.received if r[0] == "POST"]
    assert not [r for r in _JobsApi.received if r[0] == "PUT"], "no package upload: nothing but the space text travels"
    assert submission["entrypoint"] == (
        "mkdir -p /shared/rc/submitted/s1 && printenv RAYCIFAR_SUBMITTED_SPACE > /shared/rc/submitted/s1/mine.yaml && "
        "exec raycifar sweep /shared/rc/submitted/s1/mine.yaml --name s1 --address auto --results-dir /shared/rc "
        "--num-samples 3 --wandb off"
    )
    assert submission["metadata"] == {KIND_KEY: "sweep", SWEEP_KEY: "s1", RESULTS_KEY: "/shared/rc"}
    assert submission["runtime_env"] == {
        "env_vars": {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": "330", SPACE_ENV: space.read_text()}
    }
    assert answer["submission_id"] == submission["submission_id"] and answer["submission_id"].startswith("raycifar-s1-")


def test_a_sweep_name_still_running_is_refused(jobs_api: str) -> None:
    done = cli("sweep", "smoke_space", "--submit", "--address", jobs_api, "--results-dir", "/r", "--name", "live-sweep")
    assert done.returncode == 2 and "--name live-sweep: a sweep of that name is running" in done.stderr
    assert not [r for r in _JobsApi.received if r[0] == "POST"]


def test_an_unknown_name_lists_the_submitted_sweeps(jobs_api: str) -> None:
    for command in ("logs", "stop"):
        done = cli(command, "nope", "--address", jobs_api)
        assert done.returncode == 2
        assert done.stderr.strip() == (
            f"error: no sweep named 'nope' was submitted to {jobs_api} (submitted sweeps: live-sweep, old-sweep)"
        )


def test_stopping_a_sweep_that_ended_says_so(jobs_api: str) -> None:
    done = cli("stop", "old-sweep", "--address", jobs_api)
    assert done.returncode == 0 and "sweep old-sweep is not running: its job ended SUCCEEDED" in done.stdout
    assert not [r for r in _JobsApi.received if r[0] == "POST"]


def test_no_cluster_at_the_address_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_API_SERVER_ADDRESS", raising=False)
    url = f"http://127.0.0.1:{free_port()}"
    cases = {
        ("logs", "x", "--address", url): f"--address {url}: cannot reach the Ray dashboard",
        ("stop", "x"): "no cluster given: pass --address",
        ("sweep", "smoke_space", "--submit", "--results-dir", "/r", "--address", "head:6379"): "give the Ray dashboard's URL",
    }
    for args, message in cases.items():
        done = cli(*args)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
