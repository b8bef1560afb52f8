"""``raycifar status --dashboard-url``: what a Ray cluster is running, through Ray's public
clients (the state API for alive nodes, ``JobSubmissionClient`` for submitted jobs).

Ray's auth token is looked up as Ray does ($RAY_AUTH_TOKEN, the file $RAY_AUTH_TOKEN_PATH,
~/.ray/auth_token) and sent explicitly, whatever ``RAY_AUTH_MODE`` says. Ray is imported
only inside the functions that ask it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from raycifar.cluster.session import check_reachable
from raycifar.errors import UserError
from raycifar.results.sweep_record import iso_time

RPC_TIMEOUT_S = 10


@dataclass(frozen=True)
class ClusterStatus:
    """What the Ray dashboard at ``url`` reports: live nodes and submitted jobs."""

    url: str
    nodes: list[dict]
    jobs: list[dict]




def auth_token() -> tuple[str, str] | None:
    """Ray's auth token and where it came from, looked up as Ray does:
    $RAY_AUTH_TOKEN, then the file $RAY_AUTH_TOKEN_PATH, then ~/.ray/auth_token."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return os.environ["RAY_AUTH_TOKEN"].strip(), "$RAY_AUTH_TOKEN"
    path = Path(os.environ.get("RAY_AUTH_TOKEN_PATH", "~/.ray/auth_token")).expanduser()
    return (path.read_text().strip(), str(path)) if path.is_file() else None


def _auth_headers(token: tuple[str, str] | None) -> dict[str, str]:
    """Headers for Ray's HTTP clients. The token goes in explicitly: Ray's clients add it
    themselves only when this process runs with RAY_AUTH_MODE=token."""
    headers = {"Content-Type": "application/json"}
    if token:
        headers["Authorization"] = f"Bearer {token[0]}"
    return headers


@contextmanager
def _only_this_address() -> Iterator[None]:
    """Ray's HTTP clients prefer $RAY_API_SERVER_ADDRESS and $RAY_ADDRESS over the address
    they are given; hide both while they are built so that --dashboard-url is the one used."""
    saved = {name: os.environ.pop(name) for name in ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS") if name in os.environ}
    try:
        yield
    finally:
        os.environ.update(saved)


@contextmanager
def _dashboard_errors(url: str, token: tuple[str, str] | None, flag: str = "--dashboard-url") -> Iterator[None]:
    """Turn the Ray clients' exceptions into one-line UserErrors naming ``flag`` and ``url``."""
    import requests
    from ray.exceptions import AuthenticationError
    from ray.util.state.exception import RayStateApiException, ServerUnavailable

    try:
        yield
    except AuthenticationError:
        if token is None:
            advice = "no token was sent: set RAY_AUTH_TOKEN or put the cluster's token in ~/.ray/auth_token"
        else:
            advice = f"the token from {token[1]} is not this cluster's: set RAY_AUTH_TOKEN to the cluster's token"
        raise UserError(f"{flag} {url}: the dashboard refused the request ({advice})") from None
    except (ServerUnavailable, ConnectionError, requests.exceptions.RequestException) as err:
        reason = "no answer" if isinstance(err, ServerUnavailable) else type(err).__name__
        raise UserError(f"{flag} {url}: cannot reach the Ray dashboard ({reason})") from None
    except (RayStateApiException, RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise UserError(f"{flag} {url}: unexpected answer from the Ray dashboard ({first})") from None


def _node(node: dict) -> dict:
    resources = node.get("resources_total") or {}
    return {
        "node_id": node.get("node_id"),
        "node_ip": node.get("node_ip"),
        "is_head": bool(node.get("is_head_node")),
        "state": node.get("state"),
        "cpus": resources.get("CPU", 0.0),
        "gpus": resources.get("GPU", 0.0),
    }


def _when(ms: int | None) -> str | None:
    return iso_time(datetime.fromtimestamp(ms / 1000, timezone.utc)) if ms else None


def _job(job) -> dict:
    """One ``JobDetails`` from ``JobSubmissionClient.list_jobs`` as plain values."""
    return {
        "submission_id": job.submission_id,
        "job_id": job.job_id,
        "status": str(getattr(job.status, "value", job.status)),
        "entrypoint": job.entrypoint,
        "start_time": _when(job.start_time),
        "end_time": _when(job.end_time),
    }


def _list_alive_nodes(url: str, headers: dict[str, str]) -> list[dict]:
    """Alive nodes through Ray's state API (``ray.util.state``; the same query as ``list_nodes``,
    whose signature has no way to pass the auth header)."""
    from ray.util.state import StateApiClient
    from ray.util.state.common import ListApiOptions, StateResource

    with _only_this_address():
        client = StateApiClient(address=url, headers=headers)
    options = ListApiOptions(limit=10_000, timeout=RPC_TIMEOUT_S, filters=[("state", "=", "ALIVE")])
    nodes = client.list(StateResource.NODES, options=options, raise_on_missing_output=False)
    return [_node(asdict(n)) for n in nodes]


def _list_jobs(url: str, headers: dict[str, str]) -> list[dict]:
    """Submitted jobs (not plain drivers) through ``JobSubmissionClient``."""
    from ray.job_submission import JobSubmissionClient, JobType

    with _only_this_address():
        client = JobSubmissionClient(url, headers=headers)
    return [_job(j) for j in client.list_jobs() if j.type == JobType.SUBMISSION]


def check_dashboard_url(url: str, flag: str) -> str:
    """``url`` without trailing slashes if it is an http(s) URL; else UserError naming ``flag``
    (the Jobs API is the dashboard's, not the GCS's ``host:6379`` or ``ray://``)."""
    if not url.startswith(("http://", "https://")):
        raise UserError(f"{flag} {url}: give the Ray dashboard's URL, e.g. http://127.0.0.1:8265")
    return url.rstrip("/")


@contextmanager
def job_client(url: str, flag: str = "--dashboard-url") -> Iterator[Any]:
    """A ``ray.job_submission.JobSubmissionClient`` for the dashboard at ``url`` (an http(s)
    URL), sending the auth token. Inside the block, the Ray clients' errors (no answer, token
    refused, unexpected answers) become one-line UserErrors naming ``flag`` and ``url``."""
    from ray.job_submission import JobSubmissionClient

    url = check_dashboard_url(url, flag)
    check_reachable(url, flag)
    token = auth_token()
    with _dashboard_errors(url, token, flag):
        with _only_this_address():
            client = JobSubmissionClient(url, headers=_auth_headers(token))
        yield client


def read_cluster(url: str, flag: str = "--dashboard-url") -> ClusterStatus:
    """Alive nodes (head first) and all submitted jobs (newest first) from the dashboard at ``url``.

    Imports Ray. Raises UserError when the dashboard cannot be reached or refuses the token.
    """
    url = url.rstrip("/")
    check_reachable(url, flag)
    token = auth_token()
    headers = _auth_headers(token)
    with _dashboard_errors(url, token, flag):
        nodes = _list_alive_nodes(url, headers)  # first: it has a timeout, the jobs client has none
        jobs = _list_jobs(url, headers)
    jobs.sort(key=lambda j: j["start_time"] or "", reverse=True)
    nodes.sort(key=lambda n: (not n["is_head"], n["node_id"] or ""))
    return ClusterStatus(url, nodes, jobs)



