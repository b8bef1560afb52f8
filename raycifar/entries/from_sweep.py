"""``raycifar promote SWEEP``: promote the best (or a chosen) trial of a sweep from its files,
without Ray.

It reads what Tune wrote in ``<results>/sweeps/<SWEEP>/trial_<id>/`` (``params.json``,
``result.json``: one JSON result per reported epoch, each with the epoch's
``checkpoint_path``; ``error.txt`` for a trial that failed), as ``raycifar status`` does, and
picks the epoch with :mod:`raycifar.results.selection`'s rules among those whose checkpoint folder
is still on disk. A checkpoint is a plain folder (``model.safetensors``, ``config.json``);
a results folder that was moved is followed to ``train_runs/<trial_id>/<checkpoint>``.

A sweep whose driver is still running is refused (it promotes its best itself when it
ends); a finished, failed or interrupted one is fine. A promotion that cannot be written
(:class:`~raycifar.errors.PromotionFailed`) names the command that finishes it: this one.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

from raycifar.errors import PromotionFailed, UserError
from raycifar.results import layout
from raycifar.results.cost import Cost, results_cost, total
from raycifar.results.leaderboard import read_table
from raycifar.results.names import check_fits
from raycifar.results.resume import load_options
from raycifar.results.schema import CHECKPOINT_PATH
from raycifar.results.selection import Candidate, select_best, why_nothing
from raycifar.results.sweep_record import SweepRecord, SweepRecorder, read_record, utc_now
from raycifar.results.trial_files import SweepTrials, local_checkpoint, read_trials


def sweep_folder(results_dir: Path, sweep: str) -> Path:
    """``<results_dir>/sweeps/<sweep>``; a :class:`UserError` naming the sweeps there if absent."""
    folder = layout.sweep_dir(results_dir, sweep)
    if not folder.is_dir():
        parent = layout.sweeps_dir(results_dir)
        known = sorted(p.name for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
        listed = ", ".join(known[-8:]) if known else "none"
        raise UserError(f"no sweep {sweep!r} in {parent} (sweeps there: {listed})")
    return folder






def refuse_running(sweep_dir: Path, record: SweepRecord | None) -> None:
    """A :class:`UserError` when the sweep's driver is still running."""
    if record is not None and record.driver_alive(utc_now()):
        raise UserError(
            f"sweep {record.name} in {sweep_dir} is still running (heartbeat {record.heartbeat_at:%H:%M:%S} UTC); "
            "it promotes its best trial when it ends: wait, or stop it first"
        )


def choose(trials: SweepTrials, trial_id: str | None) -> Candidate:
    """The best epoch of the sweep, or of trial ``trial_id``, whose checkpoint is on disk."""
    histories = trials.histories
    if trial_id is not None:
        histories = [h for h in histories if h.trial_id == trial_id]
        if not histories:
            known = ", ".join(h.trial_id for h in trials.histories) or "none"
            raise UserError(f"no trial {trial_id!r} in {trials.sweep_dir} (trials: {known})")
    exists = {
        str(r[CHECKPOINT_PATH]): local_checkpoint(trials.sweep_dir, h.trial_id, str(r[CHECKPOINT_PATH])) is not None
        for h in histories
        for r in h.results
        if r.get(CHECKPOINT_PATH)
    }
    best = select_best(histories, lambda path: exists.get(path, False), trials.metric).best
    if best is None:
        which = f"trial {trial_id}" if trial_id else f"sweep {trials.sweep_dir.name}"
        why = why_nothing(histories, lambda path: exists.get(path, False))
        raise UserError(
            f"{trials.sweep_dir}: nothing of {which} can be promoted: {why} (checkpoints are looked for where "
            f"the results name them and under {layout.train_runs_dir(trials.sweep_dir)})"
        )
    return best


@dataclass(frozen=True)
class SweepCosts:
    """What a sweep spent: ``wall_s``, the promoted trial's wall-clock seconds (Tune's
    ``time_total_s`` at its last result), and ``cost``, the sweep's device time summed over
    every trial and reported epoch (:mod:`raycifar.results.cost`; None: unknown, e.g. results of an
    older raycifar)."""

    wall_s: float | None
    cost: Cost | None

    @property
    def row_fields(self) -> dict:
        """The leaderboard columns ``wall_s``, ``device_hours`` and ``device`` (GPU or CPU)."""
        cost = self.cost
        return {
            "wall_s": self.wall_s,
            "device_hours": cost.device_hours if cost is not None else None,
            "device": cost.device if cost is not None else None,
        }

    @property
    def line(self) -> str:
        """``cost: 0.0123 CPU core-hours (812 s training, 95 s evaluation)`` for the sweep's end line."""
        if self.cost is None:
            return "cost: unknown (a trial's results lack train_seconds, eval_seconds or the resources held)"
        return f"cost: {self.cost.describe()}"


def costs(trials: SweepTrials, trial_id: str) -> SweepCosts:
    """The :class:`SweepCosts` of ``trials`` when ``trial_id`` is promoted."""
    wall = trials.last_results.get(trial_id, {}).get("time_total_s")
    spent = total(results_cost(history.results) for history in trials.histories)
    return SweepCosts(float(wall) if wall is not None else None, spent)


def promoted_row(results_dir: Path, checkpoint: str) -> dict | None:
    """The leaderboard row already promoted from ``checkpoint``, if any."""
    return next((row for row in read_table(results_dir) if row["source_checkpoint"] == checkpoint), None)


def refuse_duplicate(results_dir: Path, checkpoint: str) -> None:
    """A :class:`UserError` when ``checkpoint`` is already on the leaderboard."""
    row = promoted_row(results_dir, checkpoint)
    if row is not None:
        raise UserError(f"{checkpoint}: already on the leaderboard as entry {row['entry_id']}")


def promote_command_line(
    results_dir: Path, sweep: str, trial_id: str | None = None, extra_tests: Mapping[str, Path] | None = None,
    corrupted: Path | None = None, robustness: bool | None = None,
) -> str:
    """The ``raycifar promote`` command line that promotes ``sweep`` (or its trial ``trial_id``)."""
    words = ["raycifar", "promote", sweep, "--results-dir", str(results_dir)]
    words += ["--trial", trial_id] if trial_id else []
    words += [f"--extra-test={name}={folder}" for name, folder in (extra_tests or {}).items()]
    words += ["--corrupted", str(corrupted)] if corrupted is not None else []
    words += [] if robustness is None else ["--robustness" if robustness else "--no-robustness"]
    return shlex.join(words)


def promote_sweep(
    results_dir: Path,
    sweep: str,
    trial_id: str | None = None,
    extra_tests: Mapping[str, Path] | None = None,
    corrupted: Path | None = None,
    robustness: bool | None = None,
    tell: Callable[[str], None] | None = None,
) -> tuple[dict, Candidate]:
    """Promote the best epoch of ``sweep`` (or of its trial ``trial_id``); returns the new
    leaderboard row and the epoch promoted. Records the entry in the sweep record when the
    sweep's own best was promoted. ``corrupted``, ``robustness``, ``tell``: the corrupted
    test set, as :func:`raycifar.entries.promote.promote` takes them (the default rule's
    wall time is the sweep record's, start to end).

    Raises :class:`PromotionFailed` (naming this command) when the entry cannot be written;
    the sweep record then still shows the sweep as not promoted.
    """
    from raycifar.entries.promote import check_extra_tests

    extra = check_extra_tests(extra_tests or {})
    robust = {"corrupted": corrupted, "robustness": robustness}
    try:
        return _promote_sweep(results_dir, sweep, trial_id, extra, tell=tell, **robust)
    except PromotionFailed as err:
        raise err.finish_with(f"sweep {sweep}", promote_command_line(results_dir, sweep, trial_id, extra, **robust)) from None


def _promote_sweep(
    results_dir: Path, sweep: str, trial_id: str | None, extra: dict[str, Path], **robustness: object
) -> tuple[dict, Candidate]:
    from raycifar.entries.promote import promote, writing

    sweep_dir = sweep_folder(results_dir, sweep)
    check_fits(sweep, "sweep", layout.entry_paths(results_dir, sweep))
    record = read_record(sweep_dir)
    refuse_running(sweep_dir, record)
    trials = read_trials(sweep_dir)
    chosen = choose(trials, trial_id)
    with writing(sweep, results_dir):  # reading the leaderboard may wait for its lock
        refuse_duplicate(results_dir, chosen.checkpoint)
    row = promote(
        local_checkpoint(sweep_dir, chosen.trial_id, chosen.checkpoint), results_dir, sweep=sweep,
        trial_id=chosen.trial_id, val_acc=chosen.val_acc, epochs=chosen.epoch, source_checkpoint=chosen.checkpoint,
        extra_tests=extra, **costs(trials, chosen.trial_id).row_fields, sweep_wall_s=sweep_wall_s(record),
        data_dir=sweep_data_dir(sweep_dir), **robustness,
    )  # fmt: skip
    if record is not None and record.promoted_entry is None and chosen == choose(trials, None):
        SweepRecorder.reopen(sweep_dir).promoted(row["entry_id"])
    return row, chosen


def sweep_data_dir(sweep_dir: Path) -> Path | None:
    """The sweep's data folder as its ``resume.json`` has it now (a resume may have re-pointed
    it after the data moved); None for a sweep without one."""
    try:
        return Path(load_options(sweep_dir).data_dir)
    except UserError:
        return None


def sweep_wall_s(record: SweepRecord | None) -> float | None:
    """The sweep's wall-clock seconds, start to end (to its last heartbeat if it never
    ended), from its record; None without one."""
    if record is None or record.started_at is None:
        return None
    end = record.ended_at or record.heartbeat_at
    return (end - record.started_at).total_seconds() if end is not None else None


def sweep_costs(sweep_dir: Path, trial_id: str) -> SweepCosts:
    """:func:`costs` of a sweep that just ended, both unknown when its trial files cannot be
    read: a promotion after a long sweep must not fail over its bookkeeping."""
    try:
        return costs(read_trials(sweep_dir), trial_id)
    except UserError:
        return SweepCosts(None, None)
