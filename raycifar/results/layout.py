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
    <results>/wandb/                                W&B's offline runs
    <results>/submitted/<sweep>/                    space files sent with ``--submit``

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
