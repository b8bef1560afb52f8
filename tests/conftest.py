"""Shared fixtures: small CIFAR-10 datasets written in the official byte layout, the CLI run
as a subprocess, a short TMPDIR for Ray's socket paths, and one local Ray shared by the
end-to-end tests that can join it.

The shared Ray is up only while tests that ask for ``ray_address`` run: every other test
stops it first (a test whose CLI starts its own local Ray would otherwise be refused, and
``--address auto`` would find two clusters). ``pytest_collection_modifyitems`` runs the
tests that ask for it one after another, so that it starts once per session.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

# The helper modules (cifar_files, board_files ...) sit beside this file; tests in the
# package folders (tests/results/ ...) import them, and a few import helpers of another test
# module by its name (test module names are unique across the folders).
TESTS = Path(__file__).parent
sys.path[:0] = [str(TESTS), *sorted(str(folder) for folder in TESTS.iterdir() if folder.is_dir() and folder.name not in ("fault_hooks", "__pycache__"))]

import cli_server  # noqa: E402
from cifar_files import write_cifar10  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"
TINY_SPACE = Path(__file__).parent / "tiny_space.yaml"
SHARED_RAY_FIXTURE = "ray_address"


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training batches of 300 images and a 200-image test batch, learnable."""
    return write_cifar10(tmp_path_factory.mktemp("cifar"), train_batches=2, per_batch=300, test=200)


def _cli_env() -> dict[str, str]:
    """This process's environment without W&B keys or a RAY_ADDRESS, and wide Rich output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    return {**env, "COLUMNS": "200"}


def run_raycifar(*args: str, cwd: Path, timeout: int = 480) -> subprocess.CompletedProcess:
    """``python -m raycifar ARGS`` in ``cwd``; fails the test, with the output's tail, unless it exits 0."""
    result = cli_server.run_cli(args, cwd=cwd, env=_cli_env(), timeout=timeout)
    assert result.returncode == 0, (
        f"raycifar {' '.join(args)} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    )
    return result


@pytest.fixture
def raycifar() -> Callable[..., subprocess.CompletedProcess]:
    """The CLI as a subprocess: ``raycifar(*args, cwd=folder, timeout=480)`` (see :func:`run_raycifar`)."""
    return run_raycifar


@pytest.fixture
def short_tmpdir(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Ray's socket paths must stay under 107 bytes: its session folder goes in a short TMPDIR."""
    with tempfile.TemporaryDirectory(prefix="rc", dir="/tmp", ignore_cleanup_errors=True) as folder:
        monkeypatch.setenv("TMPDIR", folder)
        yield folder


@pytest.fixture(scope="session", autouse=True)
def _own_inductor_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The suite's own inductor cache folder, which holds the node's compile record that
    ``compile: auto`` decides by (raycifar.train.compile_policy): what the user's machine
    learned neither steers the tests nor is overwritten by them. Set before anything starts
    Ray or the CLI, which inherit it."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor")))
        yield


SHARED_CPUS = 2.0
IDLE_TIMEOUT_S = 180.0  # Ray frees a finished job's actors and placement groups within seconds

HOLD_RAY = """
import sys, ray
# The dashboard serves the state API that Ray Train's placement-group cleaner needs to free
# the CPUs of trials the scheduler stops (see raycifar.cluster.session.connect).
context = ray.init(num_cpus=2, include_dashboard=True, dashboard_host="127.0.0.1", log_to_driver=False)
print(context.address_info["gcs_address"], flush=True)
for _ in sys.stdin:  # each line asks how many CPUs are free; the cluster is held until stdin closes
    print("free-cpus", ray.available_resources().get("CPU", 0.0), flush=True)
ray.shutdown()
"""


class SharedRay:
    """One local Ray (2 CPUs, 127.0.0.1, dashboard on loopback) held by a child process of pytest.

    The child starts it with ``ray.init`` and shuts it down when its stdin closes, so the
    Ray ends with the test process even if pytest is killed. Its session folder lives in a
    short temporary TMPDIR, removed on :meth:`stop`.
    """

    def __init__(self) -> None:
        self._holder: subprocess.Popen | None = None
        self._folder: tempfile.TemporaryDirectory | None = None
        self._address = ""

    def address(self) -> str:
        """The GCS address ``127.0.0.1:PORT``, starting the Ray first if it is not up."""
        if self._holder is None:
            self._start()
        return self._address

    def free_cpus(self) -> float:
        """How many of the shared Ray's CPUs no actor or placement group holds now."""
        self._holder.stdin.write("cpus\n")
        self._holder.stdin.flush()
        while True:  # Ray may print warnings of its own on the holder's stdout
            line = self._holder.stdout.readline()
            if not line or line.startswith("free-cpus "):
                return float(line.split()[-1]) if line else 0.0

    def wait_until_idle(self, timeout_s: float = IDLE_TIMEOUT_S) -> None:
        """Wait until every CPU of the shared Ray is free again: what a previous test's
        trials held is released when its CLI process (a Ray job) has ended, which Ray does a
        few seconds later. A test fails by name when its CPUs are never released."""
        deadline = time.monotonic() + timeout_s
        free = self.free_cpus()
        while free < SHARED_CPUS and time.monotonic() < deadline:
            time.sleep(1.0)
            free = self.free_cpus()
        if free < SHARED_CPUS:
            pytest.fail(
                f"the shared Ray has {free:g} of {SHARED_CPUS:g} CPUs free {timeout_s:.0f} s after the previous "
                "test that used it: that test left trials' resources held"
            )

    def _start(self) -> None:
        self._folder = tempfile.TemporaryDirectory(prefix="rc", dir="/tmp", ignore_cleanup_errors=True)
        folder = Path(self._folder.name)
        env = {**_cli_env(), "TMPDIR": str(folder), "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}  # loopback only
        with open(folder / "holder.log", "w") as log:
            self._holder = subprocess.Popen(
                [sys.executable, "-c", HOLD_RAY], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                text=True, env=env,
            )  # fmt: skip
        self._address = self._holder.stdout.readline().strip()
        if not self._address.startswith("127.0.0.1:"):
            log_tail = (folder / "holder.log").read_text()[-3000:]
            self.stop()
            pytest.fail(f"the shared Ray did not start on 127.0.0.1 (got {self._address!r}):\n{log_tail}")

    def stop(self) -> None:
        """Shut the Ray down (if up) and remove its folder."""
        if self._holder is not None:
            self._holder.stdin.close()
            try:
                self._holder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait(timeout=30)
            self._holder = None
        if self._folder is not None:
            self._folder.cleanup()
            self._folder = None


@pytest.fixture(scope="session")
def shared_ray() -> Iterator[SharedRay]:
    """The session's :class:`SharedRay` (started lazily by ``ray_address``)."""
    holder = SharedRay()
    yield holder
    holder.stop()


@pytest.fixture
def ray_address(shared_ray: SharedRay) -> str:
    """The shared local Ray's address, for CLI runs that join it with ``--address``; every
    test gets it with all of its CPUs free."""
    address = shared_ray.address()
    shared_ray.wait_until_idle()
    return address


@pytest.fixture(autouse=True)
def _shared_ray_only_where_asked(request: pytest.FixtureRequest, shared_ray: SharedRay) -> None:
    """Stop the shared Ray before any test that does not ask for it (it may start its own)."""
    if SHARED_RAY_FIXTURE not in request.fixturenames:
        shared_ray.stop()


CLUSTER_MODULES = ("test_cluster_local.py", "test_cluster_node_loss.py", "test_ray_up_ssh.py")
BROWSER_MODULES = ("test_html_browser.py",)
SLURM_MODULES = ("test_slurm.py",)  # a private Slurm whose jobs run Ray: outside the shared-Ray window


def _mark(item: pytest.Item) -> None:
    """The markers beside ``slow`` (pyproject.toml): ``ray``, ``cluster`` and ``browser``."""
    if item.get_closest_marker("slow") or SHARED_RAY_FIXTURE in getattr(item, "fixturenames", ()):
        item.add_marker(pytest.mark.ray)
    if item.path.name in CLUSTER_MODULES:
        item.add_marker(pytest.mark.cluster)
    if item.path.name in BROWSER_MODULES:
        item.add_marker(pytest.mark.browser)
    if item.path.name in SLURM_MODULES:
        item.add_marker(pytest.mark.slurm)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the tests (see :func:`_mark`), and run the tests that join the shared Ray one after
    another, where the first of them was."""
    for item in items:
        _mark(item)
    joining = [item for item in items if SHARED_RAY_FIXTURE in getattr(item, "fixturenames", ())]
    if not joining:
        return
    first = items.index(joining[0])
    others = [item for item in items if item not in joining]
    items[:] = others[:first] + joining + others[first:]
