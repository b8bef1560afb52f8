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

from raycifar.config import DEFAULT_SELECT
from raycifar.errors import UserError
from raycifar.results.layout import TRIAL_DIR_PREFIX, train_runs_dir
from raycifar.results.schema import selected_metric
from raycifar.results.selection import TrialHistory
from raycifar.results.sweep_record import read_record


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
    select: str = DEFAULT_SELECT  # the space's `select` (every trial config of a sweep has the same)

    @property
    def metric(self) -> str:
        """The reported metric the sweep maximised (:func:`raycifar.results.schema.selected_metric`)."""
        return selected_metric(self.select)


def local_checkpoint(sweep_dir: Path, trial_id: str, reported: str) -> Path | None:
    """The checkpoint folder a result names, where it is on disk: the reported path, or the
    same checkpoint under this sweep folder's ``train_runs/<trial_id>/`` (a moved folder)."""
    for path in (Path(reported), train_runs_dir(sweep_dir) / trial_id / Path(reported).name):
        if path.is_dir():
            return path
    return None


@dataclass(frozen=True)
class TrialFolder:
    """One ``trial_<id>`` folder and what Tune wrote there: the one reader of trial folders
    (status, promotion, the report and the sweep's own outcome use it). Each file is read
    when asked for; problems are one :class:`UserError` line naming the file."""

    path: Path

    @property
    def trial_id(self) -> str:
        return self.path.name.removeprefix(TRIAL_DIR_PREFIX)

    def results(self) -> list[dict]:
        """The reported epochs, in order: ``result.json``, else ``progress.csv`` (values as
        text), else none yet."""
        result, progress = self.path / "result.json", self.path / "progress.csv"
        try:
            if result.is_file():
                return read_results(result)
            if progress.is_file():
                return read_progress(progress)
        except (OSError, UnicodeDecodeError, ValueError, TypeError, csv.Error) as err:
            source = result if result.is_file() else progress
            raise UserError(f"{source}: cannot read the trial's results ({err})") from None
        return []

    def config(self, results: list[dict] | None = None) -> dict:
        """The trial config: ``params.json``, else the ``config`` of its first result, else {}."""
        return read_params(self.path) or (results[0].get("config") if results else None) or {}

    @property
    def error_file(self) -> Path | None:
        """Tune's ``error.txt`` of a trial that errored (None otherwise)."""
        path = self.path / "error.txt"
        return path if path.is_file() else None


def planned_epochs(config: dict) -> int:
    """The epochs a trial config plans (0 when it does not say)."""
    return int((config.get("train") or {}).get("epochs") or 0)


def trial_folders(sweep_dir: Path) -> list[TrialFolder]:
    """Every ``trial_<id>`` folder of a sweep, in name order."""
    return [TrialFolder(p) for p in sorted(sweep_dir.glob(f"{TRIAL_DIR_PREFIX}*")) if p.is_dir()]


def trial_folder(sweep_dir: Path, trial_id: str) -> TrialFolder:
    """The folder of trial ``trial_id`` (it may not exist yet)."""
    return TrialFolder(sweep_dir / f"{TRIAL_DIR_PREFIX}{trial_id}")


def read_trials(sweep_dir: Path) -> SweepTrials:
    """Every trial of ``sweep_dir`` as a :class:`TrialHistory`, with its last reported result.

    Whether a trial failed is the sweep record's word: Tune leaves the ``error.txt`` of a
    trial it restarted and that then finished. Only a trial the record does not know (a
    sweep of an older raycifar) failed by its ``error.txt``."""
    record = read_record(sweep_dir)
    histories, last, select = [], {}, DEFAULT_SELECT
    for folder in trial_folders(sweep_dir):
        results = folder.results()
        config = folder.config(results)
        planned = planned_epochs(config)
        select = config.get("select", select)
        entry = record.trials.get(folder.trial_id) if record else None
        failed = entry.state == "error" if entry is not None else folder.error_file is not None
        histories.append(TrialHistory(folder.trial_id, planned, results, failed=failed))
        last[folder.trial_id] = results[-1] if results else {}
    return SweepTrials(sweep_dir, histories, last, select)
