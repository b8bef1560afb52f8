"""The per-trial files Tune writes in ``sweeps/<name>/trial_<id>/``, read: ``params.json``
(the trial config), ``result.json`` (one JSON result per reported epoch; ``progress.csv``
when it is missing) and ``error.txt`` (an errored trial's traceback).

Tune's private experiment state files are never read. Problems are one
:class:`~raycifar.errors.UserError` line naming the file. Imports neither torch nor Ray.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from raycifar.results.layout import TRAIN_RUNS_DIR, TRIAL_DIR_PREFIX

if TYPE_CHECKING:
    pass
from raycifar.errors import UserError
from raycifar.results.selection import TrialHistory


def read_results(path: Path) -> list[dict]:
    """The results in Tune's ``result.json`` (one JSON object a line).

    A last line without its newline is a result Tune is still writing and is left out;
    any other line that is not a JSON object is damage (UserError naming file and line).
    """
    text = path.read_text()
    lines = text.split("\n")
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            row = None
        if not isinstance(row, dict):
            if number == len(lines):  # no newline after it yet: still being written
                break
            raise UserError(f"{path}: line {number} is not a JSON result")
        rows.append(row)
    return rows


def read_progress(path: Path) -> list[dict]:
    """The results in Tune's ``progress.csv``; a short last row (still being written) is left out."""
    with path.open(newline="") as stream:
        reader = csv.DictReader(stream)
        rows = [row for row in reader if None not in row.values()]
    return rows


def read_params(trial_dir: Path) -> dict:
    """The trial config Tune saved in ``params.json`` ({} when it is not there yet)."""
    path = trial_dir / "params.json"
    if not path.is_file():
        return {}
    try:
        params = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: cannot read the trial config ({err})") from None
    if not isinstance(params, dict):
        raise UserError(f"{path}: not a trial config (a JSON object)")
    return params


@dataclass(frozen=True)
class SweepTrials:
    """A sweep folder's trials: each one's history and its last reported result."""

    sweep_dir: Path
    histories: list[TrialHistory]
    last_results: dict[str, dict]


def local_checkpoint(sweep_dir: Path, trial_id: str, reported: str) -> Path | None:
    """The checkpoint folder a result names, where it is on disk: the reported path, or the
    same checkpoint under this sweep folder's ``train_runs/<trial_id>/`` (a moved folder)."""
    for path in (Path(reported), sweep_dir / TRAIN_RUNS_DIR / trial_id / Path(reported).name):
        if path.is_dir():
            return path
    return None


def read_trials(sweep_dir: Path) -> SweepTrials:
    """Every ``trial_<id>`` folder of ``sweep_dir``, in name order (:class:`UserError` for
    an unreadable ``result.json`` or ``params.json``)."""
    histories, last = [], {}
    for folder in sorted(p for p in sweep_dir.glob(f"{TRIAL_DIR_PREFIX}*") if p.is_dir()):
        trial_id = folder.name.removeprefix(TRIAL_DIR_PREFIX)
        results = read_results(folder / "result.json") if (folder / "result.json").is_file() else []
        config = read_params(folder) or (results[0].get("config") if results else None) or {}
        planned = int((config.get("train") or {}).get("epochs") or 0)
        histories.append(TrialHistory(trial_id, planned, results, failed=(folder / "error.txt").is_file()))
        last[trial_id] = results[-1] if results else {}
    return SweepTrials(sweep_dir, histories, last)
