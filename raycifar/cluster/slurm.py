"""``raycifar slurm``: a Slurm batch script that runs a sweep (or a resume, or ``raycifar train``)
on its own Ray across the allocation, and survives the time limit and preemption.

What the script does, in order (the text of each part is in :mod:`raycifar.cluster.slurm_parts`):

1. Job space: a short folder ``${TMPDIR:-/tmp}/rc<jobid>`` (Ray's socket paths must stay under
   107 bytes) for Ray's temp, spill and log files and a fresh auth token (token auth on).
2. Ports: a window of :data:`WINDOW` ports derived from the job id, moved on until every
   port in it is free on this node; Ray's fixed ports and its worker ports all come from it.
3. Ray: a head on the batch node (``ray start --head --block``) and, with several nodes, one
   worker per other node through ``srun``; ``RAY_ADDRESS`` is this job's head for every process.
4. The sweep, started or resumed (:mod:`raycifar.cluster.entrypoint`); a requeued job
   (``SLURM_RESTART_COUNT``, or the folder's state) resumes it.
5. ``--signal=B:USR1@LEAD``: on the warning, SIGINT stops the sweep cleanly (resumable), Ray
   stops, and ``scontrol requeue`` puts the job back in the queue.
6. Cleanup: every process of this job (found by ``SLURM_JOB_ID`` in its environment, so never
   another user's or another job's) is stopped, and the job space is removed.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from raycifar.cluster import slurm_parts
from raycifar.cluster.entrypoint import SweepCommand, resume_or_start
from raycifar.errors import UserError

WINDOW = 100  # ports per job: 10 fixed Ray ports, then worker ports
FIRST_PORT, LAST_PORT = 10000, 32699  # below Linux's ephemeral ports (32768-60999): no OS-chosen port lands in it
TIME_RE = re.compile(r"(\d+-)?\d+(:\d{1,2}){0,2}")  # Slurm's --time: MM, MM:SS, HH:MM:SS, D-HH[:MM[:SS]]
MEM_RE = re.compile(r"\d+[KMGT]?")


@dataclass(frozen=True)
class SlurmJob:
    """What ``raycifar slurm`` was asked for. ``mode`` is ``sweep`` (``target`` = SPACE),
    ``resume`` (``name`` only) or ``train`` (``target`` = CONFIG); ``args`` go to that
    ``raycifar`` command. ``mem`` is per node in Slurm's units (``16G``); ``signal_lead_s``:
    seconds before the time limit at which the sweep is stopped and the job requeued."""

    mode: str
    name: str
    results_dir: PurePosixPath
    target: str | None = None
    args: tuple[str, ...] = ()
    nodes: int = 1
    gpus_per_node: int = 0
    cpus_per_node: int = 4
    mem: str = "16G"
    time: str = "1:00:00"
    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    signal_lead_s: int = 300
    venv: str | None = None
    output: str | None = None  # default: raycifar-<name>-%j.out where sbatch runs


def check(job: SlurmJob) -> None:
    """UserError (one line naming the option) for values sbatch would refuse or the job could not use."""
    if not TIME_RE.fullmatch(job.time):
        raise UserError(f"--time {job.time!r}: expected Slurm's form, e.g. 30, 2:00:00 or 1-12:00:00")
    if not MEM_RE.fullmatch(job.mem):
        raise UserError(f"--mem {job.mem!r}: expected a size per node such as 16G or 64000M")
    if not job.results_dir.is_absolute():
        raise UserError(f"--results-dir {job.results_dir}: must be an absolute path that every node sees")
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", job.name):
        raise UserError(f"--name {job.name!r}: letters, digits, '.', '_' and '-' only")


def script(job: SlurmJob) -> str:
    """The whole batch script (``check`` first)."""
    check(job)
    return "\n".join([
        "#!/bin/bash", *directives(job),
        f"# Written by raycifar slurm: {_describe(job)}. Submit with: sbatch THIS_FILE",
        "set -uo pipefail", "set -m  # the driver in its own process group: SIGINT reaches it",
        *([f"source {shlex.quote(job.venv)}/bin/activate"] if job.venv else []),
        f"results={shlex.quote(str(job.results_dir))}; name={shlex.quote(job.name)}", "",
        *(part.strip("\n") + "\n" for part in (
            slurm_parts.JOB_SPACE, slurm_parts.ports(WINDOW, FIRST_PORT, LAST_PORT), slurm_parts.CLEANUP,
            slurm_parts.start_ray(job.gpus_per_node), slurm_parts.run_driver(_driver(job)),
        )),
    ])  # fmt: skip


def directives(job: SlurmJob) -> list[str]:
    """The ``#SBATCH`` lines."""
    output = job.output or f"raycifar-{job.name}-%j.out"  # in the folder sbatch runs in
    lines = [
        f"--job-name=raycifar-{job.name}", f"--nodes={job.nodes}", "--ntasks-per-node=1",
        f"--cpus-per-task={job.cpus_per_node}", f"--mem={job.mem}", f"--time={job.time}",
        "--requeue", f"--signal=B:USR1@{job.signal_lead_s}", "--open-mode=append", f"--output={output}",
    ]  # fmt: skip
    if job.gpus_per_node:
        lines.insert(3, f"--gpus-per-node={job.gpus_per_node}")
    lines += [f"--{key}={value}" for key, value in (("partition", job.partition), ("account", job.account), ("qos", job.qos)) if value]
    return [f"#SBATCH {line}" for line in lines]


def _describe(job: SlurmJob) -> str:
    what = {"sweep": f"sweep {job.target}", "resume": "resume", "train": f"train {job.target}"}[job.mode]
    return f"{what} as {job.name}, results in {job.results_dir}"


def _driver(job: SlurmJob) -> str:
    """The lines that run raycifar's driver (the last is ``exec``'d)."""
    if job.mode == "train":
        words = ["raycifar", "train", job.target or "", "--name", job.name, "--results-dir", str(job.results_dir), *job.args]
        return f'exec {shlex.join(words)} --address "$RAY_ADDRESS"'
    space = job.target if job.mode == "sweep" else None
    return resume_or_start(SweepCommand(job.name, job.results_dir, "$RAY_ADDRESS", space, job.args))


def slurm_jobs(results_dir: Path) -> dict[str, dict[str, str]]:
    """The last Slurm job of each sweep run by a ``raycifar slurm`` script in ``results_dir``
    (``slurm/NAME.jobs``, a line per run: job id, restart count, host, UTC start):
    ``{name: {"job": id, "run": count, "host": host, "started": time}}``."""
    found = {}
    for path in sorted((results_dir / "slurm").glob("*.jobs")):
        lines = [line.split() for line in path.read_text(errors="replace").splitlines() if len(line.split()) == 4]
        if lines:
            found[path.stem] = dict(zip(("job", "run", "host", "started"), lines[-1], strict=True))
    return found
