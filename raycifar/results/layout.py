"""The results folder's layout: every path raycifar reads or writes under ``--results-dir``.

::

    <results>/sweeps/<sweep>/                      one Tune experiment folder per sweep
        sweep_record.json, resume.json, scheduler_state.pkl, report.html
        search/study.journal                        the searcher's Optuna study
        trial_<id>/                                 Tune's trial files (params.json, result.json ...)
        train_runs/<trial id>/checkpoint_*/         each trial's Ray Train run and checkpoints
    <results>/runs/<run>/                           ``raycifar train`` runs: checkpoints, metrics.jsonl
    <results>/leaderboard/rows/<entry>.parquet      one leaderboard row per entry
    <results>/leaderboard/<entry>/                  the entry's model files, card and predictions
    <results>/leaderboard/.<entry>.partial/         an entry being written (renamed into place)
    <results>/wandb/                                W&B's offline runs
    <results>/submitted/<sweep>/                    space files sent with ``--submit``

An entry id is ``<sweep or run name>-`` and four hex digits (:func:`entry_id`); files replaced
whole are written under a hidden temporary name first (:func:`temporary_file`).
:func:`sweep_paths` and :func:`run_paths` list the longest path of each kind that raycifar
derives from a sweep's or a run's name, so that a name too long for the file system is refused
before anything is written (:mod:`raycifar.results.names`).

This module only names paths; it reads and writes nothing.
"""

from __future__ import annotations

from pathlib import Path

SWEEPS_DIR = "sweeps"
TRAIN_RUNS_DIR = "train_runs"  # in a sweep folder: the trials' Ray Train runs
RUNS_DIR = "runs"  # raycifar train
ENTRIES_DIR = "leaderboard"
WANDB_DIR = "wandb"
SUBMITTED_DIR = "submitted"
TRIAL_DIR_PREFIX = "trial_"  # Tune trial folders are named trial_<trial id> (raycifar.sweep.trial)
RESULT_FOLDERS = (SWEEPS_DIR, RUNS_DIR, ENTRIES_DIR, WANDB_DIR)  # what raycifar writes under --results-dir
ROWS_DIR = "rows"  # in the leaderboard folder: one row file per entry
ROW_SUFFIX = ".parquet"
ENTRY_ID_DIGITS = 4  # an entry id: the sweep or run name, '-', this many hex digits
TEMP_DIGITS = 8  # a hidden temporary file: .<name>.<this many hex digits>.tmp
TRIAL_ID_CHARS = 8  # Tune's trial ids (e.g. 54c2b94f)
# The longest names Tune and Ray Train give the files of a trial and its checkpoints.
LONGEST_CHECKPOINT = "checkpoint_0000-00-00_00-00-00.000000"
LONGEST_CHECKPOINT_FILE = "model.safetensors"
LONGEST_TUNE_FILE = "basic-variant-state-0000-00-00_00-00-00.json"
DRIVER_LOCK = ".driver.lock"  # in a sweep folder: held by the one raycifar that runs the sweep
ENTRY_DATA_FILE = "data.json"  # in an entry folder: the data folder and fingerprint it was tested on
SWEEP_FILES = ("sweep_record.json", "resume.json", "scheduler_state.pkl", "report.html", "timeline.jsonl")


def sweeps_dir(results_dir: Path) -> Path:
    """``<results>/sweeps``: one folder per sweep."""
    return results_dir / SWEEPS_DIR


def sweep_dir(results_dir: Path, sweep: str) -> Path:
    """``<results>/sweeps/<sweep>``."""
    return sweeps_dir(results_dir) / sweep


def trial_dir(sweep_folder: Path, trial_id: str) -> Path:
    """``<sweep folder>/trial_<trial id>``: Tune's files of one trial."""
    return sweep_folder / f"{TRIAL_DIR_PREFIX}{trial_id}"


def train_runs_dir(sweep_folder: Path) -> Path:
    """``<sweep folder>/train_runs``: the Ray Train runs of the sweep's trials."""
    return sweep_folder / TRAIN_RUNS_DIR


def run_dir(results_dir: Path, name: str) -> Path:
    """``<results>/runs/<name>``: a ``raycifar train`` run's checkpoints and metrics."""
    return results_dir / RUNS_DIR / name


def entries_dir(results_dir: Path) -> Path:
    """``<results>/leaderboard``: the entries' folders and the row files."""
    return results_dir / ENTRIES_DIR


def entry_dir(results_dir: Path, entry_id: str) -> Path:
    """``<results>/leaderboard/<entry id>``: an entry's exported files."""
    return entries_dir(results_dir) / entry_id


def wandb_dir(results_dir: Path) -> Path:
    """``<results>/wandb``: W&B's run folders."""
    return results_dir / WANDB_DIR


def entry_id(name: str, digits: str) -> str:
    """``<name>-<digits>``: the id of an entry promoted from sweep or run ``name``."""
    return f"{name}-{digits}"


def entry_staging_dir(results_dir: Path, entry: str) -> Path:
    """``<results>/leaderboard/.<entry id>.partial``: an entry's folder while it is written."""
    return entries_dir(results_dir) / f".{entry}.partial"


def row_file(results_dir: Path, entry: str) -> Path:
    """``<results>/leaderboard/rows/<entry id>.parquet``: the entry's leaderboard row."""
    return entries_dir(results_dir) / ROWS_DIR / f"{entry}{ROW_SUFFIX}"


def row_temporary(results_dir: Path, entry: str, digits: str) -> Path:
    """``<results>/leaderboard/rows/.<entry id>.<digits>.tmp``: a row file being written."""
    return entries_dir(results_dir) / ROWS_DIR / f".{entry}.{digits}.tmp"


def temporary_file(path: Path, digits: str) -> Path:
    """``.<name>.<digits>.tmp`` beside ``path``: a file that replaces ``path`` when written whole."""
    return path.with_name(f".{path.name}.{digits}.tmp")


def entry_paths(results_dir: Path, name: str) -> list[Path]:
    """The longest paths of an entry promoted from sweep or run ``name`` (its id's digits all 'f')."""
    entry = entry_id(name, "f" * ENTRY_ID_DIGITS)
    return [
        entry_staging_dir(results_dir, entry) / LONGEST_CHECKPOINT_FILE,
        entry_dir(results_dir, entry) / LONGEST_CHECKPOINT_FILE,
        row_file(results_dir, entry),
        row_temporary(results_dir, entry, "f" * TEMP_DIGITS),
    ]


def sweep_paths(results_dir: Path, name: str) -> list[Path]:
    """The longest path of each kind that sweep ``name`` leads raycifar (and Tune) to write:
    its folder's files, a trial folder, a checkpoint file, its report, and its entry's files."""
    sweep = sweep_dir(results_dir, name)
    trial = "f" * TRIAL_ID_CHARS
    longest_file = max(SWEEP_FILES, key=len)
    return [
        temporary_file(sweep / longest_file, "f" * TEMP_DIGITS),
        sweep / LONGEST_TUNE_FILE,
        trial_dir(sweep, trial) / "progress.csv",
        train_runs_dir(sweep) / trial / LONGEST_CHECKPOINT / LONGEST_CHECKPOINT_FILE,
        *entry_paths(results_dir, name),
    ]


def run_paths(results_dir: Path, name: str) -> list[Path]:
    """The longest path of each kind that ``raycifar train --name name`` writes: the run's
    checkpoint files and metrics, and its entry's files."""
    run = run_dir(results_dir, name)
    return [run / LONGEST_CHECKPOINT / LONGEST_CHECKPOINT_FILE, run / "metrics.jsonl", *entry_paths(results_dir, name)]
