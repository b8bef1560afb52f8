"""``raycifar status``: how the sweeps in a results folder are doing, read from files only, so
that it works on any machine that sees the folder, without joining Ray, and after the
cluster is gone:

* ``sweep_record.json`` (:mod:`raycifar.results.sweep_record`), which the sweep driver
  keeps: the plan, each trial's state and model, and a heartbeat. A sweep whose heartbeat is
  older than :data:`~raycifar.results.sweep_record.STALE_AFTER_S` and that never ended was
  interrupted (its driver was killed).
* the per-trial files (:mod:`raycifar.results.trial_files`); the sweep's cost is summed
  from the epochs reported there (:mod:`raycifar.results.cost`).

A sweep folder that cannot be read is reported on its own with the reason; the other sweeps
are still listed. The CLI draws these statuses (:mod:`raycifar.cli.status_view`). Imports
neither Ray nor torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from raycifar.config import DEFAULT_SELECT
from raycifar.errors import UserError
from raycifar.results import layout
from raycifar.results.cost import Cost, results_cost, total
from raycifar.results.layout import TRIAL_DIR_PREFIX
from raycifar.results.resume import OPTIONS_FILE, resume_command
from raycifar.results.schema import EPOCH, VAL_ACC, selected_metric
from raycifar.results.selection import good_results
from raycifar.results.sweep_record import (
    STALE_AFTER_S,
    TERMINAL_STATES,
    SweepRecord,
    TrialEntry,
    iso_time,
    read_record,
    utc_now,
)
from raycifar.results.trial_files import trial_folder, trial_folders

# The record's trial states as status shows them; "interrupted" and "unknown" are status's own.
SHOWN_STATE = {"stopped_early": "stopped early"}


@dataclass(frozen=True)
class TrialStatus:
    """One trial: its state from the sweep record, its progress from Tune's trial files."""

    trial_id: str
    state: str  # pending, running, finished, stopped early, error, diverged, interrupted, unknown
    model: str
    params: int | None
    epoch: int  # epochs reported so far
    epochs: int | None  # epochs planned
    val_acc: float | None  # at the last reported epoch
    best_val_acc: float | None  # over all reported epochs
    error_file: str | None = None
    reason: str | None = None  # why it failed or diverged, one line (from the sweep record)
    cost: Cost | None = field(default_factory=Cost)  # of its reported epochs; None: unknown (older results)
    metric: str = VAL_ACC  # the score its sweep selects on (the space's `select`)
    best_score: float | None = None  # best ``metric`` over its reported epochs (= best_val_acc for val_acc)


@dataclass(frozen=True)
class SweepStatus:
    """One sweep folder: its trials and whether it reached the leaderboard."""

    name: str
    # starting, running, interrupted, ended, failed, promoted; unknown (no sweep record),
    # unreadable (see ``problem``)
    state: str
    updated: str | None  # last sign of life: the driver's heartbeat or end (UTC, ISO 8601)
    promoted_entry: str | None
    trials: list[TrialStatus] = field(default_factory=list)
    planned_trials: int | None = None
    interrupted_at: str | None = None  # when an interrupted sweep last showed life (UTC, ISO 8601)
    problem: str | None = None  # why an unreadable folder could not be read (one line)
    resumable: bool = False  # it keeps the options `raycifar sweep --resume` needs (resume.json)

    @property
    def counts(self) -> dict[str, int]:
        """Number of trials in each state; planned trials not started yet count as pending."""
        counts: dict[str, int] = {}
        for trial in self.trials:
            counts[trial.state] = counts.get(trial.state, 0) + 1
        unstarted = (self.planned_trials or 0) - len(self.trials)
        if unstarted > 0:
            counts["pending"] = counts.get("pending", 0) + unstarted
        return counts

    @property
    def done_trials(self) -> int:
        """Trials that reached an end state (finished, stopped early, error, diverged)."""
        ended = {SHOWN_STATE.get(s, s) for s in TERMINAL_STATES} - {"lost"}
        return sum(t.state in ended for t in self.trials)

    @property
    def cost(self) -> Cost | None:
        """The device time of every epoch its trials reported so far (None: unknown)."""
        return total(t.cost for t in self.trials)

    @property
    def best_val_acc(self) -> float | None:
        scores = [t.best_val_acc for t in self.trials if t.best_val_acc is not None]
        return max(scores, default=None)

    @property
    def metric(self) -> str:
        """The score the sweep selects on (``val_acc`` unless its space says ``select``)."""
        return self.trials[0].metric if self.trials else VAL_ACC

    @property
    def best_score(self) -> float | None:
        """The best value of :attr:`metric` any trial reported (None: none yet)."""
        scores = [t.best_score for t in self.trials if t.best_score is not None]
        return max(scores, default=None)


@dataclass(frozen=True)
class _History:
    """What a trial reported: the last epoch and val_acc, and the best val_acc."""

    epoch: int = 0
    val_acc: float | None = None
    best_val_acc: float | None = None
    diverged: bool = False
    cost: Cost | None = field(default_factory=Cost)  # of every reported epoch, diverged ones too
    best_score: float | None = None  # of the selected metric


def _best(rows: list[dict], metric: str) -> float | None:
    return max((float(r[metric]) for r in rows if r.get(metric) not in (None, "")), default=None)


def _history(rows: list[dict], metric: str = VAL_ACC) -> _History:
    """The trial's last good epoch and scores (``metric``: the sweep's selected one): a diverged
    epoch (and any after it) is left out (but its time is in the cost)."""
    cost = results_cost(rows)
    good = good_results(rows)
    diverged, rows = len(good) < len(rows), good
    epochs = [int(float(r[EPOCH])) for r in rows if r.get(EPOCH) not in (None, "")]
    last = rows[-1] if rows else {}
    last_acc = last.get(VAL_ACC)
    return _History(
        epoch=max(epochs, default=0),
        val_acc=None if last_acc in (None, "") else float(last_acc),
        best_val_acc=_best(rows, VAL_ACC),
        diverged=diverged,
        cost=cost,
        best_score=_best(rows, metric),
    )



def _model_from_config(config: dict) -> str:
    """The model name of a trial the sweep record does not name (sweeps of older raycifars).

    """
    model = config.get("model")
    if not isinstance(model, dict):
        return "?"
    from pydantic import ValidationError

    from raycifar.config import ModelConfig
    from raycifar.models.registry import model_name

    try:
        return model_name(ModelConfig.model_validate(model))
    except ValidationError:
        return "?"


def _trial_state(entry: TrialEntry | None, history: _History, epochs: int | None, errored: bool, live: bool) -> str:
    """The state shown for one trial.

    With a record entry, the record says; a trial that was running when its driver died
    is ``interrupted``. Without one (a trial Tune started just now, or a sweep of an older
    raycifar), the trial files say what they can.
    """
    if entry is not None:
        if entry.state == "running" and not live:
            return "interrupted"
        return SHOWN_STATE.get(entry.state, entry.state)
    if errored:
        return "error"
    if history.diverged:
        return "diverged"
    if epochs and history.epoch >= epochs:
        return "finished"
    return "pending" if live else "unknown"


def _trial_ids(sweep_dir: Path, record: SweepRecord | None) -> list[str]:
    """The record's trials in start order, then trial folders the record does not list."""
    ids = list(record.trials) if record else []
    extra = [folder.trial_id for folder in trial_folders(sweep_dir)]
    return ids + [i for i in extra if i not in ids]


def _read_trial(sweep_dir: Path, trial_id: str, record: SweepRecord | None, live: bool) -> TrialStatus:
    folder = trial_folder(sweep_dir, trial_id)
    entry = record.trials.get(trial_id) if record else None
    results = folder.results()
    config = folder.config(results)
    metric = selected_metric(config.get("select", DEFAULT_SELECT))
    history = _history(results, metric)
    epochs = entry.epochs if entry and entry.epochs is not None else (config.get("train") or {}).get("epochs")
    error_file = (entry.error_file if entry else None) or (str(folder.error_file) if folder.error_file else None)
    if entry is not None and entry.state != "error":  # Tune keeps the error.txt of a trial it restarted
        error_file = None
    return TrialStatus(
        trial_id=trial_id,
        state=_trial_state(entry, history, epochs, error_file is not None, live),
        model=entry.model if entry and entry.model else _model_from_config(config),
        params=entry.params if entry and entry.params is not None else config.get("params"),
        epoch=history.epoch,
        epochs=epochs,
        val_acc=history.val_acc,
        best_val_acc=history.best_val_acc,
        error_file=error_file,
        reason=entry.reason if entry else None,
        cost=history.cost,
        metric=metric,
        best_score=history.best_score,
    )


def _is_live(record: SweepRecord | None, now: datetime, stale_after_s: float) -> bool:
    """Whether the sweep's driver is still running (:meth:`SweepRecord.driver_alive`)."""
    return record is not None and record.driver_alive(now, stale_after_s)


def _sweep_state(record: SweepRecord | None, trials: list[TrialStatus], promoted: str | None, live: bool) -> str:
    if promoted and (record is None or record.ended_at is not None):  # an extension runs it again
        return "promoted"
    if record is None:
        ended = {SHOWN_STATE.get(s, s) for s in TERMINAL_STATES}
        return "ended" if trials and all(t.state in ended for t in trials) else "unknown"
    if live:
        return "running" if record.trials else "starting"
    return {"completed": "ended", "failed": "failed"}.get(record.outcome or "", "interrupted")


def _legacy_updated(sweep_dir: Path) -> str | None:
    """Without a record: when a trial last wrote a result (or the folder changed)."""
    stamps = [p.stat().st_mtime for p in sweep_dir.glob(f"{TRIAL_DIR_PREFIX}*/result.json")]
    stamp = max(stamps, default=sweep_dir.stat().st_mtime)
    return iso_time(datetime.fromtimestamp(stamp, timezone.utc))


def read_sweep(
    sweep_dir: Path, promoted: dict[str, str], now: datetime | None = None, stale_after_s: float = STALE_AFTER_S
) -> SweepStatus:
    """The status of the sweep in ``sweep_dir``; ``promoted`` maps sweep names to entry ids.

    Raises UserError (one line naming the file) when a file of the sweep is damaged.
    """
    now = now or utc_now()
    record = read_record(sweep_dir)
    live = _is_live(record, now, stale_after_s)
    trials = [_read_trial(sweep_dir, trial_id, record, live) for trial_id in _trial_ids(sweep_dir, record)]
    entry = (record.promoted_entry if record else None) or promoted.get(sweep_dir.name)
    state = _sweep_state(record, trials, entry, live)
    if record is None:
        return SweepStatus(sweep_dir.name, state, _legacy_updated(sweep_dir), entry, trials)
    last_sign = record.ended_at or record.heartbeat_at
    return SweepStatus(
        name=sweep_dir.name,
        state=state,
        updated=iso_time(last_sign),
        promoted_entry=entry,
        trials=trials,
        planned_trials=record.planned_trials,
        interrupted_at=iso_time(last_sign) if state == "interrupted" else None,
        resumable=(sweep_dir / OPTIONS_FILE).is_file(),
    )


def _unreadable(sweep_dir: Path, problem: str) -> SweepStatus:
    return SweepStatus(sweep_dir.name, "unreadable", None, None, problem=problem)


def promoted_sweeps(results_dir: Path) -> dict[str, str]:
    """Sweep name -> leaderboard entry id, from the leaderboard table ({} when there is none)."""
    from raycifar.results.leaderboard import read_table

    return {row["sweep"]: row["entry_id"] for row in read_table(results_dir) if row["sweep"]}


def read_sweeps(
    results_dir: Path, sweep: str | None = None, now: datetime | None = None, stale_after_s: float = STALE_AFTER_S
) -> list[SweepStatus]:
    """Every sweep in ``results_dir`` (newest first), or only the one named ``sweep``.

    A damaged sweep folder comes back with state ``unreadable`` and the reason in
    ``problem``, unless it is the one ``sweep`` names: then UserError.
    """
    sweeps_dir = layout.sweeps_dir(results_dir)
    folders = [p for p in sweeps_dir.iterdir() if p.is_dir()] if sweeps_dir.is_dir() else []
    if sweep is not None:
        known = ", ".join(sorted(p.name for p in folders)) or "none"
        folders = [p for p in folders if p.name == sweep]
        if not folders:
            raise UserError(f"--sweep {sweep}: no such sweep in {sweeps_dir} (known: {known})")
    promoted = promoted_sweeps(results_dir)
    folders.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    found = []
    for folder in folders:
        try:
            found.append(read_sweep(folder, promoted, now, stale_after_s))
        except UserError as err:
            if sweep is not None:
                raise
            found.append(_unreadable(folder, str(err)))
    return found


def resume_hint(sweep: SweepStatus, results_dir: Path | None = None) -> str | None:
    """The command that resumes an interrupted sweep (None: the sweep is not interrupted,
    or was started by a raycifar that did not keep its options)."""
    if sweep.state != "interrupted" or not sweep.resumable:
        return None
    return resume_command(sweep.name, results_dir)


def describe_state(sweep: SweepStatus) -> str:
    """The state cell of the sweeps table: the state, spelled out for an interrupted sweep
    (``interrupted at 09:41, 3 of 8 trials finished``; ``HH:MM`` in UTC, like the table's
    ``updated`` column)."""
    if sweep.state != "interrupted" or sweep.interrupted_at is None:
        return sweep.state
    at = datetime.fromisoformat(sweep.interrupted_at).strftime("%H:%M")
    planned = sweep.planned_trials if sweep.planned_trials is not None else len(sweep.trials)
    return f"interrupted at {at}, {sweep.done_trials} of {planned} trials finished"


def resume_line(sweep: SweepStatus, results_dir: Path | None = None) -> str | None:
    """The line under the sweeps table for an interrupted sweep that can be resumed:
    ``NAME interrupted at 09:41, 3 of 8 trials finished: resume with `raycifar sweep --resume NAME```."""
    hint = resume_hint(sweep, results_dir)
    return f"{sweep.name} {describe_state(sweep)}: resume with `{hint}`" if hint else None






LIVE_STATES = frozenset({"starting", "running"})
