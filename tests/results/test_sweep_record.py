"""The sweep record the driver keeps in its sweep folder: atomic writes, the heartbeat, trial entries."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from raycifar.errors import UserError
from raycifar.results.sweep_record import HEARTBEAT_EVERY_S, RECORD_FILE, SweepRecorder, completion_state, read_record

START = datetime(2026, 11, 29, 9, 0, tzinfo=timezone.utc)
CONFIG = {"space": "tiny", "params": 12_345, "model": {"depths": [1, 1]}, "train": {"epochs": 4}}


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.moment = START

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def test_start_writes_the_plan_and_the_driver(tmp_path: Path, clock: Clock) -> None:
    SweepRecorder.start(tmp_path / "s", "s", "tiny", planned_trials=8, now=clock)
    record = read_record(tmp_path / "s")
    assert (record.name, record.space, record.planned_trials) == ("s", "tiny", 8)
    assert (record.driver_pid, record.driver_host) == (os.getpid(), socket.gethostname())
    assert record.started_at == record.heartbeat_at == START
    assert record.trials == {} and record.ended_at is None and record.outcome is None


def test_heartbeat_writes_at_most_every_few_seconds(tmp_path: Path, clock: Clock) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", 2, now=clock)
    clock.advance(HEARTBEAT_EVERY_S / 2)
    assert recorder.heartbeat() is False
    assert read_record(tmp_path).heartbeat_at == START
    clock.advance(HEARTBEAT_EVERY_S)
    assert recorder.heartbeat() is True
    assert read_record(tmp_path).heartbeat_at == START + timedelta(seconds=1.5 * HEARTBEAT_EVERY_S)


def test_trials_are_recorded_from_start_to_end(tmp_path: Path, clock: Clock) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", 2, now=clock)
    recorder.trial_started("a", CONFIG, model="resnet6-w8")
    recorder.trial_started("b", CONFIG)
    clock.advance(30)
    recorder.trial_ended("a", "stopped_early")
    recorder.trial_ended("b", "error", error_file="/r/trial_b/error.txt")
    trials = read_record(tmp_path).trials
    assert list(trials) == ["a", "b"], "start order is kept"
    a, b = trials["a"], trials["b"]
    assert (a.state, a.model, a.params, a.epochs, a.started_at, a.ended_at) == (
        "stopped_early", "resnet6-w8", 12_345, 4, START, START + timedelta(seconds=30)
    )  # fmt: skip
    assert (b.state, b.model, b.error_file) == ("error", None, "/r/trial_b/error.txt")


def test_trial_ended_wants_an_end_state(tmp_path: Path, clock: Clock) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", 1, now=clock)
    with pytest.raises(ValueError, match="'running' is not an end state"):
        recorder.trial_ended("a", "running")


def test_end_and_promotion_are_recorded_and_survive_a_reopen(tmp_path: Path, clock: Clock) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", 1, now=clock)
    clock.advance(60)
    recorder.ended("completed")
    SweepRecorder.reopen(tmp_path, now=clock).promoted("s-ab12")
    record = read_record(tmp_path)
    assert (record.outcome, record.ended_at, record.promoted_entry) == ("completed", START + timedelta(seconds=60), "s-ab12")


def test_staleness_needs_an_old_heartbeat_and_no_end(tmp_path: Path, clock: Clock) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", 1, now=clock)
    record = read_record(tmp_path)
    assert not record.is_stale(START + timedelta(seconds=59), stale_after_s=60)
    assert record.is_stale(START + timedelta(seconds=61), stale_after_s=60)
    recorder.ended("completed")
    assert not read_record(tmp_path).is_stale(START + timedelta(hours=5), stale_after_s=60)


def test_a_failed_write_leaves_the_old_record_and_no_temp_file(
    tmp_path: Path, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", 1, now=clock)
    before = (tmp_path / RECORD_FILE).read_text()

    def refuse(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(OSError, match="disk full"):
        recorder.trial_started("a", CONFIG)
    assert (tmp_path / RECORD_FILE).read_text() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == [RECORD_FILE]


def test_no_record_reads_as_none(tmp_path: Path) -> None:
    assert read_record(tmp_path) is None


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ('{"format": 1, "name": "s", "spa', "not a readable sweep record"),
        (json.dumps({"format": 1, "name": "s"}), "not a readable sweep record (space: Field required)"),
        (json.dumps({"format": 99, "name": "s", "space": "t", "planned_trials": 1, "started_at": START.isoformat(),
                     "driver_pid": 1, "driver_host": "h", "heartbeat_at": START.isoformat()}), "format 99 is newer"),
    ],
)  # fmt: skip
def test_a_damaged_record_is_one_line_naming_the_file(tmp_path: Path, damage: str, message: str) -> None:
    (tmp_path / RECORD_FILE).write_text(damage)
    with pytest.raises(UserError) as raised:
        read_record(tmp_path)
    assert str(raised.value).startswith(f"{tmp_path / RECORD_FILE}: ") and message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_completion_state_compares_epochs_done_with_planned() -> None:
    assert (completion_state(4, 4), completion_state(1, 4)) == ("finished", "stopped_early")


def test_the_module_imports_neither_torch_nor_ray() -> None:
    probe = "import sys, raycifar.results.sweep_record; print(sorted({'torch', 'ray'} & set(sys.modules)))"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert shown.stdout.strip() == "[]"


def test_trials_the_time_budget_stopped_are_ended_with_the_reason(tmp_path: Path, clock: Clock) -> None:
    recorder = SweepRecorder.start(tmp_path, "s", "tiny", None, now=clock)
    for trial_id in ("done", "late"):
        recorder.trial_started(trial_id, CONFIG)
    recorder.trial_ended("done", "finished")
    assert recorder.stop_unended("stopped by the time budget") == ["late"]
    trials = read_record(tmp_path).trials
    assert (trials["late"].state, trials["late"].reason) == ("stopped_early", "stopped by the time budget")
    assert trials["done"].state == "finished" and trials["done"].reason is None
