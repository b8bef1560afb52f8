"""The shell text that starts a sweep on a batch system, or resumes it when its folder already
holds it: a KubeRay RayJob retry (a new RayCluster) and a requeued Slurm job run the same
command again, and this turns the second run into ``raycifar sweep --resume``.

The decision is read from the results folder, as ``raycifar status`` reads it:

- no ``sweeps/NAME/resume.json``: the first run, ``raycifar sweep SPACE --name NAME …``;
- ``interrupted`` (the driver was killed, stopped, or its heartbeat is older than 60 s):
  ``raycifar sweep --resume NAME`` (finished trials kept, running ones go on from their
  last checkpoint);
- ``running``/``starting`` (the previous driver's heartbeat is still fresh, e.g. on another
  host): wait, up to :data:`WAIT_STEPS` × :data:`WAIT_STEP_S` seconds;
- ``promoted``: nothing to do (exit 0); ``ended``/``failed``: exit 1 with the reason.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import PurePosixPath

WAIT_STEP_S = 10
WAIT_STEPS = 12  # 2 minutes: twice the heartbeat's staleness limit (STALE_AFTER_S = 60 s)
STATE_OF = 'python -c "import json, sys; print(json.load(sys.stdin)[\\"sweeps\\"][0][\\"state\\"])"'


@dataclass(frozen=True)
class SweepCommand:
    """A sweep to start or resume: its ``name``, its ``results_dir`` (an absolute path where the
    job runs), the Ray ``address`` to join (a word such as ``auto`` or a shell expression such as
    ``$RAY_ADDRESS``, kept unquoted in double quotes), and ``start_args``: the arguments of
    ``raycifar sweep`` for the first run after ``SPACE`` (``[]`` for a resume-only job, whose
    ``space`` is None)."""

    name: str
    results_dir: PurePosixPath
    address: str
    space: str | None
    start_args: tuple[str, ...] = ()


def start_line(command: SweepCommand) -> str:
    """``exec raycifar sweep SPACE --name NAME --address ADDR --results-dir DIR ARGS``."""
    fixed = shlex.join(["--name", command.name])
    tail = shlex.join(["--results-dir", str(command.results_dir), *command.start_args])
    return f'exec raycifar sweep {shlex.quote(command.space or "")} {fixed} --address "{command.address}" {tail}'


def resume_line(command: SweepCommand) -> str:
    """``exec raycifar sweep --resume NAME --address ADDR --results-dir DIR``."""
    return (
        f'exec raycifar sweep --resume {shlex.quote(command.name)} --address "{command.address}" '
        f"--results-dir {shlex.quote(str(command.results_dir))}"
    )


def resume_or_start(command: SweepCommand) -> str:
    """The bash lines (no shebang) that start the sweep or resume it (see the module's rules).
    The last command is ``exec``'d, so the process that runs them becomes the sweep's driver."""
    name, results = shlex.quote(command.name), shlex.quote(str(command.results_dir))
    first = start_line(command) if command.space is not None else (
        f'echo "no sweep {command.name} in {command.results_dir}/sweeps to resume" >&2; exit 2'
    )
    return "\n".join([
        f"results={results}; name={name}",
        'if [ ! -f "$results/sweeps/$name/resume.json" ]; then',
        f"  {first}",
        "fi",
        f"# the folder holds the sweep: resume it once its last driver is gone (up to {WAIT_STEP_S * WAIT_STEPS} s)",
        f"for _ in $(seq {WAIT_STEPS}); do",
        f'  state=$(raycifar status --results-dir "$results" --sweep "$name" --format json | {STATE_OF})',
        '  case "$state" in',
        f"    interrupted) {resume_line(command)} ;;",
        f"    running|starting) sleep {WAIT_STEP_S} ;;",
        '    promoted) echo "sweep $name is already promoted: nothing to do"; exit 0 ;;',
        '    *) echo "sweep $name is $state: nothing to resume (raycifar status --sweep $name)" >&2; exit 1 ;;',
        "  esac",
        "done",
        'echo "sweep $name still has a live driver: not resumed" >&2; exit 1',
    ])  # fmt: skip
