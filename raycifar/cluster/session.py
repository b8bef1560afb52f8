"""The Ray connection policy: environment, joining or starting Ray, and what a run may use.

- A local Ray listens on 127.0.0.1 only, with the dashboard there too.
- A second local Ray next to a running one is refused: Ray Train's helper actors look their
  cluster up by address and, finding two, fail, which leaves trials waiting forever.
  Joining the running one (``--address``) shares its CPUs instead.
- Resource requests a local machine cannot meet are errors; on a cluster the autoscaler
  may still add the nodes they need.

This module imports Ray only inside its functions: call :func:`prepare_environment` first.
"""

from __future__ import annotations

import ipaddress
import os
import time
from dataclasses import dataclass
from pathlib import Path

from raycifar.errors import UserError

SHUTDOWN_GRACE_S = 15.0
TRAIN_ENV = {"RAY_TRAIN_ENABLE_STATE_TRACKING": "1"}  # the dashboard's Train page


def available_cpus() -> int:
    """CPUs this process may use: its affinity mask where the OS has one (Linux), else all."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def is_loopback(address: str | None) -> bool:
    """Whether a Ray address (``host``, ``host:port``, ``scheme://host:port``, ``[::1]:port``;
    ``None`` = a local Ray) is on this machine's loopback."""
    host = (address or "127.0.0.1").split("://")[-1]
    if host.startswith("["):  # [IPv6]:port
        host = host[1:].split("]", 1)[0]
    elif host.count(":") == 1:  # host:port (a bare IPv6 address has several colons)
        host = host.rsplit(":", 1)[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # another host name
        return False


def prepare_environment(address: str | None) -> None:
    """Settings Ray reads once, at import: call before ``ray`` is first imported.

    - A local (or loopback) Ray listens on 127.0.0.1 only. Ray otherwise swaps 127.0.0.1
      for the machine's reachable address unless told this is a single-machine setup.
    - Joining a cluster with token authentication (on by default in Ray 2.60) needs
      ``RAY_AUTH_MODE=token`` on the client; it is set when a token is at hand.
    - Tune stays quiet (raycifar draws its own progress line) and does not warn about
      slow callbacks: W&B's start-up takes a few seconds per trial.
    - Ray Train's controllers poll their workers every 0.5 s instead of 2 s, so a
      ``TorchTrainer`` trial ends when its training does (``RAY_TRAIN_HEALTH_CHECK_INTERVAL_S``).
    """
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # with verbose=0 the classic reporter prints nothing
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "30")
    # Each trial starts ~7 small Tune/Train actors at once; Ray's raylet reads this setting
    # from the environment (RAY_<setting>) and otherwise warns once the count passes the CPUs.
    os.environ.setdefault("RAY_worker_maximum_startup_concurrency", str(4 * available_cpus()))
    # A TorchTrainer run's controller (DDP trials, PBT, raycifar train) sees a finished or
    # failed worker group at its next poll: every 2 s by default, 0.5 s here (a local Ray's
    # processes inherit it; a cluster's nodes take it from their own environment).
    os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "0.5")
    if is_loopback(address):
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    token_file = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    if address and "RAY_AUTH_MODE" not in os.environ and ("RAY_AUTH_TOKEN" in os.environ or token_file.is_file()):
        os.environ["RAY_AUTH_MODE"] = "token"


def connect(address: str | None, dashboard: bool = True) -> str | None:
    """Join the Ray cluster at ``address``, or start a local Ray; returns the dashboard URL
    (None when ``dashboard`` is off).

    A local Ray always runs its dashboard process (on 127.0.0.1): Ray Train's placement-group
    cleaner asks the state API it serves whether a trial's controller is gone, and without it
    the CPUs of every trial that the scheduler stops stay reserved, so later trials wait
    forever. ``dashboard=False`` only keeps the URL out of the output.
    """
    import ray

    runtime_env = {"env_vars": TRAIN_ENV}
    if address:
        try:
            context = ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, logging_level="ERROR")
        except ConnectionError:
            raise UserError(
                f"--address {address}: cannot join the Ray cluster (nothing answers there, or it refused the "
                "connection: check the address, that Ray runs there, and its auth token in RAY_AUTH_TOKEN or "
                "~/.ray/auth_token)"
            ) from None
    else:
        _refuse_a_second_local_ray()
        context = ray.init(
            num_cpus=available_cpus(),
            include_dashboard=True,
            dashboard_host="127.0.0.1",
            log_to_driver=False,
            runtime_env=runtime_env,
            logging_level="ERROR",  # raycifar prints the dashboard URL and the progress itself
        )
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url and dashboard else None


def running_local_ray() -> str | None:
    """The GCS address of a Ray already running on this machine, or None.

    Asks Ray itself: ``ray.init(address="auto")`` finds a running local instance.
    """
    import ray

    try:
        ray.init(address="auto", log_to_driver=False, logging_level="ERROR")
    except ConnectionError:
        return None
    try:
        return ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def _refuse_a_second_local_ray() -> None:
    """Stop before starting a second Ray on a machine that already runs one (waiting up to
    :data:`SHUTDOWN_GRACE_S` for one that is shutting down)."""
    deadline = time.monotonic() + SHUTDOWN_GRACE_S
    running = running_local_ray()
    while running and time.monotonic() < deadline:
        time.sleep(1.0)
        running = running_local_ray()
    if running:
        raise UserError(
            f"a Ray instance is already running on this machine ({running}): "
            f"run on it with --address {running}, or stop it first"
        )


def disconnect() -> None:
    """Shut down the Ray connection (and the local Ray this process started)."""
    import ray

    if ray.is_initialized():
        ray.shutdown()


@dataclass(frozen=True)
class RunResources:
    """What one Ray Train run (a sweep trial, or ``raycifar train``) asks for.

    ``cpus`` and ``gpus`` are for the whole run, split evenly across its ``workers``;
    ``gpus=None`` means one per worker when the cluster has that many, else none.
    ``cpu_request``/``gpu_request`` say in errors how the user asked for them
    (e.g. ``--cpus-per-trial 3``).
    """

    workers: int = 1
    cpus: float = 1.0
    gpus: float | None = None
    cpu_request: str = "1 CPU per trial"
    gpu_request: str = "the GPUs per trial"


def resolve_gpus(request: RunResources, local: bool) -> float:
    """GPUs for the run on the connected cluster; on a local Ray, a request the machine
    cannot meet is a :class:`UserError`."""
    import ray

    cluster = ray.cluster_resources()
    cpus, gpus_available = cluster.get("CPU", 0.0), cluster.get("GPU", 0.0)
    gpus = request.gpus
    if gpus is None:
        gpus = float(request.workers) if gpus_available >= request.workers else 0.0
    if local:
        if request.cpus > cpus:
            raise UserError(f"{request.cpu_request} is more than this machine's {cpus:g} CPUs")
        if gpus > gpus_available:
            raise UserError(f"{request.gpu_request} is more than this machine's {gpus_available:g} GPUs")
    return gpus


def concurrent_runs(request: RunResources, gpus: float, max_concurrent: int | None) -> int:
    """How many runs of ``request`` fit the connected cluster now (at least 1), unless
    ``max_concurrent`` says otherwise."""
    import ray

    if max_concurrent:
        return max_concurrent
    cluster = ray.cluster_resources()
    concurrent = int(cluster.get("CPU", 0.0) // request.cpus)
    if gpus > 0 and cluster.get("GPU", 0.0) > 0:
        concurrent = min(concurrent, int(cluster["GPU"] // gpus))
    return max(1, concurrent)
