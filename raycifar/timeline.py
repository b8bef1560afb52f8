"""The debug timeline: marks of when a sweep's phases start and end, in every process.

Switched on with ``RAYCIFAR_TIMELINE=1``: each process that takes part in a sweep (the
command, each trial, each Ray Train worker) appends one JSON line per mark to
``sweeps/NAME/timeline.jsonl``::

    {"t": 1796621825.123, "pid": 4242, "event": "trial_ready", "trial": "0367a08a"}

``t`` is the wall-clock time in seconds (all processes of one machine share the clock).
``benchmarks/trial_overhead.py`` turns the marks into its phase table. Off (the default),
:func:`mark` does nothing and costs nothing. Imports nothing of raycifar.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

ENV = "RAYCIFAR_TIMELINE"
FILE = "timeline.jsonl"


def enabled() -> bool:
    """Whether ``RAYCIFAR_TIMELINE`` is set to 1 in this process."""
    return os.environ.get(ENV, "") == "1"


def mark(sweep_dir: Path | str | None, event: str, at: float | None = None, **fields: object) -> None:
    """Append the mark ``event`` (at wall time ``at``, default now) with ``fields`` to
    ``sweep_dir/timeline.jsonl`` when the timeline is on; never raises (a debug aid)."""
    if sweep_dir is None or not enabled():
        return
    line = json.dumps({"t": time.time() if at is None else at, "pid": os.getpid(), "event": event, **fields})
    try:
        with open(Path(sweep_dir) / FILE, "a") as stream:  # one short write: lines from processes do not mix
            stream.write(line + "\n")
    except OSError:
        pass
