"""Sweeps as Ray jobs: ``raycifar sweep --submit`` sends the sweep driver to a cluster through
its dashboard's Jobs API (``ray.job_submission.JobSubmissionClient``), and ``status``, ``logs``
and ``stop`` find the job again by sweep name.

A submitted sweep is one Ray job whose entrypoint is ``raycifar sweep SPACE --name NAME
--address auto --results-dir DIR [the other options given]`` and whose metadata holds
:data:`SWEEP_KEY` (the sweep's name) and :data:`RESULTS_KEY` (its results folder on the
cluster). The driver runs on the cluster (on the head node), so the sweep goes on when the
submitting machine disconnects. A local space file travels with the job as an environment
variable of its ``runtime_env`` (:data:`SPACE_ENV`; nothing else of the submitting machine is
sent); the entrypoint first writes it to ``<results>/submitted/<name>/<file>`` on the cluster,
where it stays next to the sweep's results. (A ``working_dir`` would be the usual way, but its
folder is deleted while the driver runs in it on the fake multi-node cluster, whose nodes share
one disk: Tune then fails on ``os.getcwd``.)

Stopping: Ray's job supervisor stops a job with SIGTERM and kills it 3 s later; a sweep job
asks (in its ``runtime_env``) for SIGINT, which Ray Tune takes as "stop the trials and
return", and for :data:`STOP_GRACE_S` seconds before the kill. The sweep then ends as
``interrupted`` in its sweep record and promotes nothing.

The sweep's progress is read where its files are: a short job runs ``raycifar status
--format json`` on the cluster and its output comes back through the job's logs, so the
submitting machine needs no access to the results folder.

Ray is imported only inside the functions that talk to a cluster.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from raycifar.errors import UserError
from raycifar.results.layout import SUBMITTED_DIR

SWEEP_KEY = "raycifar_sweep"  # job metadata: the sweep's name
RESULTS_KEY = "raycifar_results_dir"  # job metadata: the sweep's results folder on the cluster
KIND_KEY = "raycifar_job"  # job metadata: "sweep", or "status" for a progress reader
STOP_GRACE_S = 330  # stop: SIGINT, then this long before SIGKILL (W&B online waits up to 300 s)
STOP_ENV = {"RAY_JOB_STOP_SIGNAL": "SIGINT", "RAY_JOB_STOP_WAIT_TIME_S": str(STOP_GRACE_S)}
SPACE_ENV = "RAYCIFAR_SUBMITTED_SPACE"  # a local space file's text, in the job's runtime_env
MAX_SPACE_BYTES = 64 * 1024  # environment variables hold up to 128 KiB on Linux
PROGRESS_TIMEOUT_S = 120.0  # how long status waits for its progress-reading job
POLL_S = 1.0

# Options of ``raycifar sweep`` (by parameter name) that the submitting command uses itself.
LOCAL_ONLY = ("submit", "address", "output_format")
# Options that cannot go with --submit, and why (one line each).
REFUSED: dict[str, str] = {}


@dataclass(frozen=True)
class SweepJob:
    """A sweep to submit: its name, results folder on the cluster, the ``raycifar sweep``
    command's words, and the text of the local space file that travels with it (None for a
    shipped space, given by name)."""

    name: str
    results_dir: str
    argv: tuple[str, ...]
    space_text: str | None = None

    @property
    def entrypoint(self) -> str:
        """The job's shell command: with a local space file, write it on the cluster first."""
        if self.space_text is None:
            return shlex.join(self.argv)
        folder, path = shlex.quote(str(Path(self.argv[2]).parent)), shlex.quote(self.argv[2])
        return f"mkdir -p {folder} && printenv {SPACE_ENV} > {path} && exec {shlex.join(self.argv)}"

    @property
    def runtime_env(self) -> dict[str, Any]:
        """The job's runtime_env: the stop signal and grace, and the space file's text."""
        env = dict(STOP_ENV)
        if self.space_text is not None:
            env[SPACE_ENV] = self.space_text
        return {"env_vars": env}


def _cluster_path(option: str, words: list[str] | None) -> str | None:
    """The value of a path option that names a folder on the cluster: it must be absolute."""
    if not words:
        return None
    value = words[-1]
    if not value.startswith("/"):
        raise UserError(
            f"{option} {value}: with --submit this is a folder on the cluster; give it as an absolute "
            "path on the cluster's shared storage, e.g. /shared/rc"
        )
    return value


def sweep_job(space: str | None, options: dict[str, list[str]], now: datetime | None = None) -> SweepJob:
    """The job that runs ``raycifar sweep SPACE`` (or, ``space`` None, ``raycifar sweep
    --resume NAME``, whose options are in the sweep's folder on the cluster) with ``options``
    on a cluster.

    ``options``: the sweep options given on the command line, by parameter name, as their
    command-line words in order (``{"num_samples": ["--num-samples", "8"], "download":
    ["--download"]}``). The space is validated here (it may be a local file). Raises
    UserError for an option in :data:`REFUSED`, a missing or relative ``--results-dir``, a
    relative ``--data-dir``, or a bad space or ``--name``.
    """
    from raycifar.pipeline.preflight import check_name
    from raycifar.space.find import load_space

    for key in options:
        if key in REFUSED:
            raise UserError(REFUSED[key])
    results_dir = _cluster_path("--results-dir", options.get("results_dir"))
    if results_dir is None:
        raise UserError("--submit needs --results-dir: a folder on the cluster's shared storage, e.g. /shared/rc")
    _cluster_path("--data-dir", options.get("data_dir"))
    _cluster_path("--corrupted", options.get("corrupted"))
    if "resume" in options:
        return _resume_job(space, options, results_dir)
    if space is None:
        raise UserError("--submit needs a SPACE (a shipped space name or a YAML file), or --resume NAME")
    loaded = load_space(space)
    given_name = (options.get("name") or [None])[-1]
    name = check_name(given_name or f"{loaded.name}-{(now or datetime.now()):%Y%m%d-%H%M%S}")
    space_text, space_word = _space_to_send(space, loaded.path, results_dir, name)
    passed = [word for key, words in options.items() if key not in (*LOCAL_ONLY, "name", "results_dir") for word in words]
    argv = (
        "raycifar", "sweep", space_word, "--name", name, "--address", "auto", "--results-dir", results_dir, *passed,
    )  # fmt: skip
    return SweepJob(name, results_dir, argv, space_text)


def _resume_job(space: str | None, options: dict[str, list[str]], results_dir: str) -> SweepJob:
    """The job that runs ``raycifar sweep --resume NAME`` on the cluster (its head restarted,
    or an ended sweep getting ``--num-samples`` more trials): the sweep's own folder on the
    shared storage holds its options and space."""
    from raycifar.pipeline.preflight import check_name

    if space is not None:
        raise UserError(f"{space}: give a SPACE or --resume NAME, not both (a resumed sweep keeps its space)")
    if "name" in options:
        raise UserError("--name: not with --resume (the sweep keeps its name)")
    name = check_name(options["resume"][-1])
    passed = [word for key, words in options.items() if key not in (*LOCAL_ONLY, "results_dir") for word in words]
    argv = ("raycifar", "sweep", "--address", "auto", "--results-dir", results_dir, *passed)
    return SweepJob(name, results_dir, argv, None)


def _space_to_send(space: str, path: Path, results_dir: str, name: str) -> tuple[str | None, str]:
    """(the text to send, the SPACE word of the job's command): a shipped space goes by name;
    a local file's text goes along and is written to ``<results>/submitted/<name>/<file name>``."""
    if not Path(space).expanduser().is_file():
        return None, space
    text = path.read_text()
    if len(text.encode()) > MAX_SPACE_BYTES:
        raise UserError(f"{path}: {len(text.encode()):,} bytes; a submitted space file holds at most {MAX_SPACE_BYTES:,}")
    return text, f"{results_dir.rstrip('/')}/{SUBMITTED_DIR}/{name}/{path.name}"


# --- talking to the cluster ---------------------------------------------------------------


def sweep_jobs(client: Any) -> list[Any]:
    """The cluster's raycifar sweep jobs (``JobDetails``), newest first."""
    from ray.job_submission import JobType

    jobs = [
        j for j in client.list_jobs()
        if j.type == JobType.SUBMISSION and (j.metadata or {}).get(KIND_KEY) == "sweep" and SWEEP_KEY in j.metadata
    ]  # fmt: skip
    return sorted(jobs, key=lambda j: j.start_time or 0, reverse=True)


def find_sweep_job(client: Any, name: str, url: str) -> Any:
    """The newest job of sweep ``name``; UserError naming the submitted sweeps when there is none."""
    jobs = sweep_jobs(client)
    for job in jobs:
        if job.metadata[SWEEP_KEY] == name:
            return job
    known = ", ".join(dict.fromkeys(j.metadata[SWEEP_KEY] for j in jobs)) or "none"
    raise UserError(f"no sweep named {name!r} was submitted to {url} (submitted sweeps: {known})")


def _status(job: Any) -> str:
    return str(getattr(job.status, "value", job.status))


def submit_sweep(url: str, job: SweepJob, flag: str = "--address") -> str:
    """Submit ``job`` to the cluster whose dashboard is at ``url``; returns the submission id.

    Raises UserError when the dashboard cannot be reached or refuses the token, or when a
    job of the same sweep name is still pending or running there.
    """
    from raycifar.cluster.dashboard import job_client

    with job_client(url, flag) as client:
        for other in sweep_jobs(client):
            if other.metadata[SWEEP_KEY] == job.name and not other.status.is_terminal():
                raise UserError(
                    f"--name {job.name}: a sweep of that name is {_status(other).lower()} on {url} "
                    f"(job {other.submission_id}): choose another --name"
                )
        return client.submit_job(
            entrypoint=job.entrypoint,
            submission_id=f"raycifar-{job.name}-{secrets.token_hex(3)}",
            metadata={KIND_KEY: "sweep", SWEEP_KEY: job.name, RESULTS_KEY: job.results_dir},
            runtime_env=job.runtime_env,
        )


async def _tail(client: Any, submission_id: str, write: Callable[[str], None]) -> None:
    async for chunk in client.tail_job_logs(submission_id):
        write(chunk)


def job_logs(url: str, name: str, write: Callable[[str], None], follow: bool = True, flag: str = "--address") -> str:
    """Write sweep ``name``'s job output with ``write``: all of it so far, then (``follow``)
    what comes until the job ends. Returns the job's status (e.g. ``SUCCEEDED``).

    Raises UserError for an unknown name or an unreachable dashboard.
    """
    from raycifar.cluster.dashboard import job_client

    with job_client(url, flag) as client:
        job = find_sweep_job(client, name, url)
        if follow:
            try:
                asyncio.run(_tail(client, job.submission_id, write))
            except OSError as err:  # aiohttp's connection errors are OSErrors
                raise UserError(f"{flag} {url}: lost the connection while following the logs ({type(err).__name__})") from None
        else:
            write(client.get_job_logs(job.submission_id))
        return str(client.get_job_status(job.submission_id).value)


def _wait_until_ended(client: Any, submission_id: str, timeout_s: float) -> str:
    """The job's status once it is terminal, or its status after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        status = client.get_job_status(submission_id)
        if status.is_terminal() or time.monotonic() >= deadline:
            return str(status.value)
        time.sleep(POLL_S)


def stop_sweep(url: str, name: str, wait_s: float = STOP_GRACE_S + 30, flag: str = "--address") -> tuple[str, bool]:
    """Stop sweep ``name``'s job (SIGINT: its trials stop, nothing is promoted, the results so
    far stay) and wait up to ``wait_s`` for it to end. Returns (the job's status, whether this
    call stopped it: False when it had already ended).
    """
    from raycifar.cluster.dashboard import job_client

    with job_client(url, flag) as client:
        job = find_sweep_job(client, name, url)
        if job.status.is_terminal():
            return _status(job), False
        client.stop_job(job.submission_id)
        return _wait_until_ended(client, job.submission_id, wait_s), True


# --- status of submitted sweeps -----------------------------------------------------------


@dataclass(frozen=True)
class SubmittedSweep:
    """A sweep job as the Jobs API knows it, and the sweep's own status from its results
    folder on the cluster (``raycifar status --format json``'s entry; None if not read)."""

    name: str
    submission_id: str
    job_status: str
    results_dir: str
    start_time: int | None  # ms since the epoch, as Ray gives it
    end_time: int | None
    sweep: dict | None = None


def parse_status_output(logs: str) -> list[dict]:
    """The ``sweeps`` of the ``raycifar status --format json`` output inside a job's logs (the
    JSON object that starts on a line of its own; other lines around it are ignored).

    Raises ValueError when there is no such object.
    """
    start = logs.find("{\n")
    while start != -1:
        if start == 0 or logs[start - 1] == "\n":
            report, _ = json.JSONDecoder().raw_decode(logs, start)
            return list(report["sweeps"])
        start = logs.find("{\n", start + 1)
    raise ValueError("no JSON status in the job's output")


def _read_progress(client: Any, results_dir: str, timeout_s: float) -> tuple[dict[str, dict], str | None]:
    """The sweeps of ``results_dir`` by name, read on the cluster by a short status job that is
    deleted afterwards; and a one-line note when they could not be read."""
    argv = ["raycifar", "status", "--results-dir", results_dir, "--format", "json"]
    submission_id = client.submit_job(
        entrypoint=shlex.join(argv), submission_id=f"raycifar-status-{secrets.token_hex(4)}",
        metadata={KIND_KEY: "status"}, runtime_env={"env_vars": {"RAY_API_SERVER_ADDRESS": ""}},
    )  # fmt: skip
    status = _wait_until_ended(client, submission_id, timeout_s)
    if status not in ("SUCCEEDED", "FAILED", "STOPPED"):
        client.stop_job(submission_id)
        return {}, f"the sweeps in {results_dir} could not be read: the status job took over {timeout_s:.0f} s"
    logs = client.get_job_logs(submission_id)
    client.delete_job(submission_id)
    try:
        sweeps = parse_status_output(logs) if status == "SUCCEEDED" else None
    except (ValueError, KeyError, TypeError):
        sweeps = None
    if sweeps is None:
        last = next((line for line in reversed(logs.strip().splitlines()) if line.strip()), "no output")
        return {}, f"the sweeps in {results_dir} could not be read on the cluster ({status}: {last.strip()[:200]})"
    return {s["name"]: s for s in sweeps}, None


def submitted_sweeps(
    url: str, flag: str = "--address", progress: bool = True, timeout_s: float = PROGRESS_TIMEOUT_S
) -> tuple[list[SubmittedSweep], list[str]]:
    """Every sweep submitted to the cluster at ``url`` (newest first) with its job's status and,
    with ``progress``, its sweep status read on the cluster (one short job per results folder).
    Also returns one-line notes on what could not be read.
    """
    from raycifar.cluster.dashboard import job_client

    with job_client(url, flag) as client:
        jobs = sweep_jobs(client)
        found, notes = {}, []
        for results_dir in dict.fromkeys(j.metadata.get(RESULTS_KEY, "") for j in jobs) if progress else ():
            if results_dir:
                sweeps, note = _read_progress(client, results_dir, timeout_s)
                found[results_dir] = sweeps
                notes += [note] if note else []
    shown, seen = [], set()
    for j in jobs:  # newest first: the sweep's folder belongs to its newest job
        name, results_dir = j.metadata[SWEEP_KEY], j.metadata.get(RESULTS_KEY, "")
        sweep = None if (name, results_dir) in seen else found.get(results_dir, {}).get(name)
        seen.add((name, results_dir))
        shown.append(SubmittedSweep(name, j.submission_id, _status(j), results_dir, j.start_time, j.end_time, sweep))
    return shown, notes
