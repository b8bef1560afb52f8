"""Inside a Slurm job raycifar's local mode looks for this job's Ray only, and every Ray worker
gets the job's ``RAY_ADDRESS`` (raycifar.cluster.session)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from raycifar.cluster import session


def _running_local_ray(**env: str) -> str:
    """What ``running_local_ray`` answers in a fresh process (as in the CLI) with this environment."""
    code = "from raycifar.cluster import session; session.prepare_environment(None); print(session.running_local_ray())"
    base = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SLURM_JOB_ID")}
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()[-1]


def test_in_a_slurm_job_a_neighbours_ray_is_not_this_jobs(ray_address: str) -> None:
    """The shared Ray stands for another job's Ray on the node: outside Slurm it is found (and a
    second local Ray refused); inside a Slurm job with no Ray of its own, it is not this job's."""
    assert _running_local_ray() == ray_address
    assert _running_local_ray(SLURM_JOB_ID="4242") == "None"
    # the job's own head, as raycifar slurm exports it
    assert _running_local_ray(SLURM_JOB_ID="4242", RAY_ADDRESS="127.0.0.1:10100") == "127.0.0.1:10100"


def test_the_workers_get_the_jobs_ray_address(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert session.worker_env() == session.TRAIN_ENV
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:10100")
    assert session.worker_env() == {**session.TRAIN_ENV, "RAY_ADDRESS": "127.0.0.1:10100"}
    monkeypatch.setenv("RAY_ADDRESS", "ray://head:10001")  # a Ray Client address means nothing to a worker
    assert session.worker_env() == session.TRAIN_ENV


@pytest.fixture
def _own_environment() -> Iterator[None]:
    """prepare_environment sets several variables: this test's changes end with it."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.mark.usefixtures("_own_environment")
def test_auto_with_a_loopback_ray_address_stays_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """``--address auto`` joins ``RAY_ADDRESS``: on 127.0.0.1, Ray must not swap in the node's address."""
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:10100")
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", raising=False)
    session.prepare_environment("auto")
    assert os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] == "0"
    monkeypatch.setenv("RAY_ADDRESS", "10.0.0.5:6379")
    monkeypatch.delenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER")
    session.prepare_environment("auto")
    assert "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER" not in os.environ
