"""The sweep record: a small JSON file the sweep driver keeps in its own sweep folder.

``<results>/sweeps/<name>/sweep_record.json`` says what the driver planned and what it has
seen so far, in raycifar's own words, so that ``raycifar status`` never has to read Ray
Tune's private state files::

    {"format": 1, "name": "...", "space": "...", "planned_trials": 8,
     "started_at": "2026-11-29T09:18:02+00:00", "driver_pid": 4242, "driver_host": "head",
     "heartbeat_at": "...", "ended_at": null, "outcome": null, "promoted_entry": null,
     "trials": {"715e1ac7": {"state": "running", "model": "resnet8-w12", "params": 45847,
                             "epochs": 2, "started_at": "...", "ended_at": null,
                             "error_file": null, "reason": null}}}

Only the driver writes it (one writer, no lock), always whole (:mod:`raycifar.results.atomic`),
so a reader sees the old or the new record, never half of one. The driver refreshes ``heartbeat_at`` every few seconds while it lives; a record
that has not ``ended`` and whose heartbeat is old belongs to a driver that was killed.

This module imports neither torch nor Ray: ``raycifar status`` reads it on any machine.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from raycifar.errors import UserError
from raycifar.results.atomic import replace_text
from raycifar.results.schema import TERMINAL_STATES, TrialState

RECORD_FILE = "sweep_record.json"
RECORD_FORMAT = 1
HEARTBEAT_EVERY_S = 5.0  # heartbeat() writes at most this often
STALE_AFTER_S = 60.0  # a heartbeat older than this, on a record not ended: the driver is gone

SweepEnd = Literal["completed", "interrupted", "failed"]


def utc_now() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(timezone.utc)


def iso_time(moment: datetime | None) -> str | None:
    return moment.astimezone(timezone.utc).isoformat(timespec="seconds") if moment else None


class TrialEntry(BaseModel):
    """One trial as the driver last saw it."""

    model_config = ConfigDict(extra="ignore")

    state: TrialState
    model: str | None = None  # readable model name, e.g. "seresnet8-w12-se4"
    params: int | None = None  # parameter count
    epochs: int | None = None  # planned epochs
    started_at: datetime | None = None
    ended_at: datetime | None = None
    error_file: str | None = None  # Tune's error.txt for an errored trial
    search: dict | None = None  # the search record: the sampled keys that applied, by section.key
    reason: str | None = None  # why an errored or diverged trial ended, in one line


class SweepRecord(BaseModel):
    """Everything in ``sweep_record.json``; trials keyed by Tune trial id, in start order."""

    model_config = ConfigDict(extra="ignore")

    format: int = RECORD_FORMAT
    name: str
    space: str
    planned_trials: int | None  # None: until the time budget ends the sweep
    started_at: datetime
    driver_pid: int
    driver_host: str
    heartbeat_at: datetime
    ended_at: datetime | None = None
    outcome: SweepEnd | None = None
    promoted_entry: str | None = None
    scheduler: dict | None = None  # the scheduler's settings (e.g. ASHA's grace_period, reduction_factor)
    searcher: str | None = None  # random, grid, tpe, qmc or nsga2 (raycifar.search.searchers)
    pareto: list[dict] = []  # nsga2: the trials no other beats on both val_acc and size
    resumed_at: list[datetime] = []  # each `raycifar sweep --resume` of this sweep
    trials: dict[str, TrialEntry] = {}

    def done_trials(self) -> int:
        """Trials that ended (finished, stopped early, error, diverged); lost ones are not counted."""
        return sum(t.state in TERMINAL_STATES and t.state != "lost" for t in self.trials.values())

    def is_stale(self, now: datetime, stale_after_s: float = STALE_AFTER_S) -> bool:
        """True when the sweep has not ended and its heartbeat is older than ``stale_after_s``.

        ``now`` is compared with the driver's clock: keep the machines' clocks in sync.
        """
        return self.ended_at is None and (now - self.heartbeat_at).total_seconds() > stale_after_s

    def driver_alive(self, now: datetime, stale_after_s: float = STALE_AFTER_S) -> bool:
        """The one rule for "is the sweep's driver still running?": the sweep has not ended,
        its heartbeat is fresh (:meth:`is_stale`), and its process is not known to be gone
        (:meth:`driver_gone`). ``status``, ``--resume`` and ``promote`` all ask this."""
        return self.ended_at is None and not self.is_stale(now, stale_after_s) and not self.driver_gone()

    def driver_gone(self) -> bool:
        """True when the driver ran on this machine and its process no longer exists (on
        another machine, or when the process is another user's, it cannot be told: False)."""
        if self.driver_host != socket.gethostname():
            return False
        try:
            os.kill(self.driver_pid, 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False


def record_path(sweep_dir: Path) -> Path:
    return sweep_dir / RECORD_FILE


def write_record(sweep_dir: Path, record: SweepRecord) -> None:
    """Replace ``sweep_dir/sweep_record.json`` with ``record`` atomically (temp file + rename)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    replace_text(record_path(sweep_dir), record.model_dump_json(indent=1))


def read_record(sweep_dir: Path) -> SweepRecord | None:
    """The record in ``sweep_dir``, or None when the folder has none (an older raycifar's sweep).

    Raises UserError (one line naming the file) when the file is unreadable, not JSON, or
    not a sweep record this raycifar understands.
    """
    path = record_path(sweep_dir)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise UserError(f"{path}: cannot read the sweep record ({err.strerror or err})") from None
    try:
        record = SweepRecord.model_validate_json(text)
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        if first["type"] == "json_invalid":  # half-written or not JSON
            problem = "not complete JSON: half-written, truncated or edited"
        else:
            problem = f"{where + ': ' if where else ''}{first['msg']}"
        raise UserError(f"{path}: not a readable sweep record ({problem})") from None
    if record.format > RECORD_FORMAT:
        raise UserError(
            f"{path}: sweep record format {record.format} is newer than this raycifar reads ({RECORD_FORMAT})"
        )
    return record


def completion_state(epochs_done: int, epochs_planned: int) -> TrialState:
    """The state of a trial that ended without error: finished, or stopped early by the scheduler."""
    return "finished" if epochs_done >= epochs_planned else "stopped_early"


class SweepRecorder:
    """The driver's handle on its sweep record: every call updates the record and rewrites it.

    Typical use (from the sweep driver and its Tune callback)::

        recorder = SweepRecorder.start(sweep_dir, name, space, planned_trials=8)
        recorder.trial_started(trial_id, config, model="resnet8-w12")   # on_trial_start
        recorder.heartbeat()                                           # on_step_end, cheap
        recorder.trial_ended(trial_id, "stopped_early")                # on_trial_complete
        recorder.trial_ended(trial_id, "error", error_file=path)       # on_trial_error
        recorder.ended("completed")                                    # after Tuner.fit()
        recorder.promoted(entry_id)                                    # after promotion

    ``now`` supplies the clock (tests pass a fake one).
    """

    def __init__(self, sweep_dir: Path, record: SweepRecord, now: Callable[[], datetime] = utc_now) -> None:
        self.sweep_dir, self.record, self.now = sweep_dir, record, now

    @classmethod
    def start(
        cls,
        sweep_dir: Path,
        name: str,
        space: str,
        planned_trials: int | None,
        now: Callable[[], datetime] = utc_now,
        scheduler: dict | None = None,
        searcher: str | None = None,
    ) -> SweepRecorder:
        """Write a fresh record for a sweep that starts now in this process (``scheduler``:
        its settings, kept so that reports need not find the space file again)."""
        moment = now()
        record = SweepRecord(
            name=name,
            space=space,
            planned_trials=planned_trials,
            started_at=moment,
            driver_pid=os.getpid(),
            driver_host=socket.gethostname(),
            heartbeat_at=moment,
            scheduler=scheduler,
            searcher=searcher,
        )
        recorder = cls(sweep_dir, record, now)
        recorder._save()
        return recorder

    @classmethod
    def reopen(cls, sweep_dir: Path, now: Callable[[], datetime] = utc_now) -> SweepRecorder:
        """The recorder of the sweep whose record is in ``sweep_dir`` (e.g. to record its promotion).

        Raises UserError when there is no readable record there.
        """
        record = read_record(sweep_dir)
        if record is None:
            raise UserError(f"{record_path(sweep_dir)}: no sweep record")
        return cls(sweep_dir, record, now)

    def _save(self) -> None:
        self.record.heartbeat_at = self.now()
        write_record(self.sweep_dir, self.record)

    def heartbeat(self, force: bool = False) -> bool:
        """Refresh ``heartbeat_at``; writes only if the last write is ``HEARTBEAT_EVERY_S`` old
        (or ``force``), so it is safe to call on every Tune step. Returns whether it wrote."""
        if not force and (self.now() - self.record.heartbeat_at).total_seconds() < HEARTBEAT_EVERY_S:
            return False
        self._save()
        return True

    def trial_started(self, trial_id: str, config: dict, model: str | None = None, search: dict | None = None) -> None:
        """Trial ``trial_id`` is running ``config`` (a TrialConfig as a dict); ``model`` is its
        readable name (the record does not compute it: that needs the model registry);
        ``search`` its search record."""
        train = config.get("train") or {}
        previous = self.record.trials.get(trial_id)
        self.record.trials[trial_id] = TrialEntry(
            state="running",
            model=model,
            params=config.get("params"),
            epochs=train.get("epochs"),
            started_at=previous.started_at if previous and previous.started_at else self.now(),
            search=search if search is not None else (previous.search if previous else None),
        )
        self._save()

    def trial_ended(
        self, trial_id: str, state: TrialState, error_file: str | None = None, reason: str | None = None
    ) -> None:
        """Trial ``trial_id`` stopped in ``state`` (finished, stopped_early, error or diverged);
        ``reason``: why, in one line, for an error or a divergence."""
        if state not in TERMINAL_STATES:
            raise ValueError(f"trial_ended: {state!r} is not an end state ({', '.join(sorted(TERMINAL_STATES))})")
        entry = self.record.trials.get(trial_id) or TrialEntry(state=state)
        entry.state, entry.ended_at, entry.error_file, entry.reason = state, self.now(), error_file, reason
        self.record.trials[trial_id] = entry
        self._save()

    def resumed(self, planned_trials: int | None = None) -> None:
        """This process continues the sweep (``--resume``): it becomes the driver, not ended;
        ``planned_trials``: the sweep's new trial count (an extension), else unchanged."""
        self.record.driver_pid, self.record.driver_host = os.getpid(), socket.gethostname()
        self.record.ended_at, self.record.outcome = None, None
        if planned_trials is not None:
            self.record.planned_trials = planned_trials
        self.record.resumed_at.append(self.now())
        self._save()

    def mark_lost(self, known: set[str]) -> list[str]:
        """After a resume: trials still ``running`` or ``pending`` here that Tune does not
        know (``known``: Tune's trial ids) become ``lost``. Returns their ids."""
        lost = [tid for tid, t in self.record.trials.items() if t.state in ("running", "pending") and tid not in known]
        for trial_id in lost:
            self.record.trials[trial_id].state = "lost"
            self.record.trials[trial_id].ended_at = self.now()
        if lost:
            self._save()
        return lost

    def stop_unended(self, reason: str) -> list[str]:
        """Trials still ``running`` or ``pending`` become ``stopped_early`` with ``reason``
        (the time budget stopped them); returns their ids."""
        stopped = [tid for tid, t in self.record.trials.items() if t.state in ("running", "pending")]
        for trial_id in stopped:
            entry = self.record.trials[trial_id]
            entry.state, entry.ended_at, entry.reason = "stopped_early", self.now(), reason
        if stopped:
            self._save()
        return stopped

    def ended(self, outcome: SweepEnd, pareto: list[dict] | None = None) -> None:
        """The sweep is over: ``completed`` (all trials ran, or its time budget ended it),
        ``interrupted`` or ``failed``; ``pareto``: the nsga2 searcher's Pareto set."""
        self.record.outcome, self.record.ended_at = outcome, self.now()
        self.record.pareto = pareto or []
        self._save()

    def promoted(self, entry_id: str) -> None:
        """The sweep's best checkpoint became leaderboard entry ``entry_id``."""
        self.record.promoted_entry = entry_id
        self._save()
