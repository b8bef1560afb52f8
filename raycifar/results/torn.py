"""Torn tails: the files a sweep appends to, checked before a resumed run appends again.

A kill or a full disk in the middle of a write leaves a file's last record cut short. An
append onto it would glue the next record to the partial one, and the file would be
unreadable from then on (the study journal even for optuna-dashboard). So before a resume
runs, each appended file of the sweep is checked (:func:`find_torn`) and a torn tail is cut
back to the last whole record (:func:`repair`), never extended; one line says what was
dropped. Files replaced whole (``sweep_record.json``, ``resume.json``) cannot be torn (see
:mod:`raycifar.results.atomic`); one that does not parse is refused where it is read.

Appended files (records are lines): ``search/study.journal`` (Optuna's journal, JSON),
``timeline.jsonl``, and each trial's ``result.json`` (JSON) and ``progress.csv`` (CSV).
A record that does not parse before the last one is damage, not a torn tail: it is a
:class:`~raycifar.errors.UserError` naming the file and line, and nothing is changed.

Imports neither torch nor Ray.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from raycifar.errors import UserError
from raycifar.results.layout import TRIAL_DIR_PREFIX

SWEEP_JSON_LINES = ("search/study.journal", "timeline.jsonl")
TRIAL_FILES = {"result.json": True, "progress.csv": False}  # file -> its records are JSON


@dataclass(frozen=True)
class TornTail:
    """A file whose last record is cut short: ``keep`` bytes are whole records (``records``
    of them), ``dropped`` is what follows."""

    path: Path
    keep: int
    records: int
    dropped: bytes

    def line(self) -> str:
        """What :func:`repair` does, in one line."""
        shown = self.dropped[:60].decode("utf-8", "replace") + ("…" if len(self.dropped) > 60 else "")
        return (
            f"{self.path}: its last record was cut short (a kill or a full disk mid-write); dropped its "
            f"{len(self.dropped)} bytes {shown!r}, kept the {self.records} whole records before it"
        )


def _parses(line: bytes, as_json: bool) -> bool:
    if not as_json:
        return True
    try:
        json.loads(line)
    except ValueError:
        return False
    return True


def torn_tail(path: Path, as_json: bool = True) -> TornTail | None:
    """The torn tail of ``path`` (records are lines; JSON when ``as_json``), None when it
    ends with a whole record or does not exist. Raises :class:`UserError` for a record
    before the last one that does not parse."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UserError(f"{path}: cannot read it ({err.strerror or err})") from None
    keep = data.rfind(b"\n") + 1  # a tail without its newline was never finished
    lines = data[:keep].splitlines()
    if lines and lines[-1].strip() and not _parses(lines[-1], as_json):  # torn, then a newline appended
        keep = data.rfind(b"\n", 0, keep - 1) + 1
        lines = lines[:-1]
    for number, line in enumerate(lines, 1):
        if line.strip() and not _parses(line, as_json):
            raise UserError(f"{path}: line {number} is not a whole record (damaged, not torn at the end); move the file away to go on")
    if keep == len(data):
        return None
    return TornTail(path, keep, sum(1 for line in lines if line.strip()), data[keep:])


def find_torn(sweep_dir: Path) -> list[TornTail]:
    """Every torn tail among the sweep's appended files (see the module doc); reads only."""
    found = [torn_tail(sweep_dir / name) for name in SWEEP_JSON_LINES]
    for trial in sorted(sweep_dir.glob(f"{TRIAL_DIR_PREFIX}*")):
        found += [torn_tail(trial / name, as_json) for name, as_json in TRIAL_FILES.items()]
    return [torn for torn in found if torn is not None]


def repair(torn: TornTail) -> None:
    """Cut ``torn.path`` back to its whole records (only if it is still as found)."""
    if torn.path.stat().st_size != torn.keep + len(torn.dropped):
        raise UserError(f"{torn.path}: changed while raycifar checked it; is another raycifar running this sweep?")
    os.truncate(torn.path, torn.keep)
