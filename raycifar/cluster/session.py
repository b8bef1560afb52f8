"""The Ray connection policy: environment, joining or starting Ray, and what a run may use.

- A local Ray listens on 127.0.0.1 only, with the dashboard there too.
- A second local Ray next to a running one is refused: Ray Train's helper actors look their
  cluster up by address and, finding two, fail, which leaves trials waiting forever.
  Joining the running one (``--address``) shares its CPUs instead.
- Resource requests a local machine cannot meet are errors; on a cluster the autoscaler
  may still add the nodes they need.
- Every connection to a cluster (``ray.init``, Ray Client, the Jobs and state APIs) waits at
  most :func:`connect_timeout_s` seconds (30 by default, ``$RAYCIFAR_CONNECT_TIMEOUT_S``) for
  the cluster to answer: :func:`check_reachable` first, before anything is written.

This module imports Ray only inside its functions: call :func:`prepare_environment` first.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from raycifar.errors import UserError

SHUTDOWN_GRACE_S = 15.0
CONNECT_TIMEOUT_ENV = "RAYCIFAR_CONNECT_TIMEOUT_S"
CONNECT_TIMEOUT_S = 30.0
DEFAULT_PORTS = {"ray": 10001, "http": 80, "https": 443, "": 6379}  # Ray Client, dashboard URLs, the GCS
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


def connect_timeout_s() -> float:
    """How long a connection to a cluster may wait for an answer, in seconds:
    ``$RAYCIFAR_CONNECT_TIMEOUT_S``, else 30. Raises :class:`UserError` for a value that is
    not a positive number."""
    given = os.environ.get(CONNECT_TIMEOUT_ENV)
    if given is None:
        return CONNECT_TIMEOUT_S
    try:
        value = float(given)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise UserError(f"{CONNECT_TIMEOUT_ENV}={given!r}: give a number of seconds above 0")
    return value


def endpoint(address: str) -> tuple[str, int] | None:
    """The host and TCP port a cluster address is reached at (``ray://host[:10001]``,
    ``http(s)://host[:port]``, ``host[:6379]``, ``[::1]:port``); None for ``auto`` and
    ``local`` (Ray finds a local cluster itself)."""
    scheme, _, rest = address.rpartition("://")
    if rest in ("auto", "local") and not scheme:
        return None
    rest = rest.split("/", 1)[0]
    port = DEFAULT_PORTS.get(scheme, DEFAULT_PORTS[""])
    if rest.startswith("["):  # [IPv6]:port
        host, _, after = rest[1:].partition("]")
        return host, int(after[1:]) if after.startswith(":") and after[1:].isdigit() else port
    if rest.count(":") == 1:
        host, _, given = rest.partition(":")
        return host, int(given) if given.isdigit() else port
    return rest, port


# HTTP/2 with prior knowledge (gRPC: the GCS, Ray Client): the client preface and an empty SETTINGS frame.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
_SETTINGS = 0x04


def _answers(connection: socket.socket, scheme: str) -> bool:
    """Whether the server on ``connection`` answers as a Ray endpoint does: an HTTP response
    (the dashboard's ``http://``), or an HTTP/2 SETTINGS frame (gRPC: the GCS, ``ray://``).
    ``https`` is not looked into (TLS): the connection is the answer."""
    if scheme == "https":
        return True
    if scheme == "http":
        connection.sendall(b"HEAD / HTTP/1.0\r\nHost: raycifar\r\n\r\n")
        answered = _first_bytes(connection, 5) == b"HTTP/"
        _first_bytes(connection, 65536)  # the rest of the answer: closing mid-answer resets the server's side
        return answered
    connection.sendall(_H2_PREFACE)
    head = _first_bytes(connection, 9)
    return len(head) == 9 and head[3] == _SETTINGS


def _first_bytes(connection: socket.socket, count: int) -> bytes:
    """The first ``count`` bytes the server sends (fewer if it closes first): TCP may hand
    them over in several pieces."""
    head = b""
    while len(head) < count:
        chunk = connection.recv(count - len(head))
        if not chunk:
            break
        head += chunk
    return head


def check_reachable(address: str, flag: str = "--address") -> None:
    """Raise :class:`UserError` unless the cluster at ``address`` answers within
    :func:`connect_timeout_s`: a TCP connection, then the first answer of its protocol (see
    :func:`_answers`). The line names ``flag``, the address, the wait and
    ``$RAYCIFAR_CONNECT_TIMEOUT_S``. Writes nothing."""
    where = endpoint(address)
    if where is None:
        return
    timeout = connect_timeout_s()
    wait = f"raycifar waits up to {timeout:g} s for an answer, set by {CONNECT_TIMEOUT_ENV} (default {CONNECT_TIMEOUT_S:g})"
    scheme = address.split("://")[0] if "://" in address else ""
    try:
        with socket.create_connection(where, timeout=timeout) as connection:
            answered = _answers(connection, scheme)
    except TimeoutError:
        raise UserError(
            f"{flag} {address}: the cluster did not answer within {timeout:g} s ({CONNECT_TIMEOUT_ENV} sets the wait, "
            f"default {CONNECT_TIMEOUT_S:g} s); check the address and that Ray runs there"
        ) from None
    except OSError as err:
        reason = err.strerror or type(err).__name__
        what = "the Ray dashboard" if address.startswith(("http://", "https://")) else "the cluster"
        raise UserError(
            f"{flag} {address}: cannot reach {what} at {where[0]}:{where[1]} ({reason}; {wait}); "
            "check the address and that Ray runs there"
        ) from None
    if not answered:
        what = "a Ray dashboard" if scheme.startswith("http") else "a Ray cluster (its GCS or Ray Client server)"
        raise UserError(f"{flag} {address}: something answers at {where[0]}:{where[1]}, but not as {what}; check the address and port")


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
    if is_loopback(os.environ.get("RAY_ADDRESS", "auto") if address == "auto" else address):  # auto: RAY_ADDRESS first
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    if address:  # Ray's own waits for a cluster, bounded like raycifar's (check_reachable)
        timeout = str(max(1, round(connect_timeout_s())))
        os.environ.setdefault("RAY_CLIENT_MAX_CONNECTION_TIMEOUT_S", timeout)
        os.environ.setdefault("RAY_CLIENT_INITIAL_CONNECTION_TIMEOUT_S", str(min(5, int(timeout))))
        os.environ.setdefault("RAY_gcs_rpc_server_connect_timeout_s", timeout)
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

    runtime_env = {"env_vars": worker_env()}
    if address:
        check_reachable(address)
        try:
            context = ray.init(address=address, log_to_driver=False, runtime_env=runtime_env, logging_level="ERROR")
        except ConnectionError:
            raise UserError(
                f"--address {address}: cannot join the Ray cluster (nothing answered within {connect_timeout_s():g} s, "
                f"set by {CONNECT_TIMEOUT_ENV}, or it refused the connection: check the address, that Ray runs "
                "there, and its auth token in RAY_AUTH_TOKEN or ~/.ray/auth_token)"
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


def worker_env() -> dict[str, str]:
    """The environment every Ray worker of a run gets: :data:`TRAIN_ENV`, and ``RAY_ADDRESS``
    when it is set (a ``raycifar slurm`` job's own head). Without it, Ray Train's placement-group
    cleaner finds its cluster by scanning the machine, where another job's Ray may run."""
    address = os.environ.get("RAY_ADDRESS", "")
    return {**TRAIN_ENV, "RAY_ADDRESS": address} if address and "://" not in address else dict(TRAIN_ENV)


def running_local_ray() -> str | None:
    """The GCS address of a Ray already running on this machine, or None.

    Asks Ray itself: ``ray.init(address="auto")`` finds a running local instance. Inside a
    Slurm job (``SLURM_JOB_ID``) only this job's Ray counts: the one ``RAY_ADDRESS`` names
    (a ``raycifar slurm`` script exports it); another job's or user's Ray on the node is not
    this job's business.
    """
    import ray

    if os.environ.get("SLURM_JOB_ID"):
        return os.environ.get("RAY_ADDRESS") or None
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
