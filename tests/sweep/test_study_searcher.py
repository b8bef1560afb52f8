"""Tune's searcher (:class:`raycifar.sweep.tune_hooks.StudySearcher`) across a driver's death:
a resumed sweep proposes exactly the trials of its plan that the sweep record does not show
ended, no more (a trial that ran to its end after Tune's last save) and no fewer (a trial the
study heard end of, but whose end the record never got)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from ray import tune

from raycifar.results.sweep_record import SweepRecorder
from raycifar.search.searchers import Search
from raycifar.space.find import load_space
from raycifar.space.sections import SearcherSettings
from raycifar.sweep.tune_hooks import LIVE_DRIVERS, DriverState, StudySearcher

PLANNED = 4


@pytest.fixture
def sweep(tmp_path: Path) -> Iterator[tuple[Path, SweepRecorder]]:
    """A sweep folder, its record, and the resuming driver registered for it."""
    recorder = SweepRecorder.start(tmp_path, "s", "smoke_space", PLANNED)
    LIVE_DRIVERS[str(tmp_path)] = DriverState(
        sink=None, recorder=recorder, completed=frozenset(), max_concurrent=PLANNED
    )
    yield tmp_path, recorder
    LIVE_DRIVERS.pop(str(tmp_path), None)


def searcher(folder: Path) -> StudySearcher:
    search = Search.on_disk(
        load_space("smoke_space"), SearcherSettings(name="random"), 0, folder, None, folder, PLANNED
    )
    return StudySearcher(search, PLANNED, max_concurrent=PLANNED, key=str(folder))


def run_to_end(study_searcher: StudySearcher, recorder: SweepRecorder | None, trial_id: str) -> None:
    """Trial ``trial_id`` proposed, started and ended; the record hears of its end unless ``recorder`` is None."""
    config = study_searcher.suggest(trial_id)
    assert isinstance(config, dict)
    if recorder is not None:
        recorder.trial_started(trial_id, config)
    study_searcher.on_trial_complete(trial_id, {"epoch": 2, "val_acc": 0.5})
    if recorder is not None:
        recorder.trial_ended(trial_id, "finished")


def proposals_after_resume(folder: Path, saved: Path) -> list[str]:
    """A new driver's searcher, restored from Tune's save, asked until it says it is finished."""
    resumed = searcher(folder)
    resumed.restore(str(saved))
    asked = []
    for n in range(10):
        if resumed.suggest(f"new{n}") == tune.search.Searcher.FINISHED:
            break
        asked.append(f"new{n}")
        resumed.on_trial_complete(f"new{n}", {"epoch": 2, "val_acc": 0.5})
    return asked


def test_a_trial_that_ran_after_tune_s_last_save_is_not_proposed_again(sweep: tuple[Path, SweepRecorder]) -> None:
    folder, recorder = sweep
    first = searcher(folder)
    run_to_end(first, recorder, "a")
    saved = folder / "searcher-state.json"
    first.save(str(saved))  # Tune saves its state: it knows trial a
    run_to_end(first, recorder, "b")  # b starts and ends before Tune's next save; then the driver dies
    assert first.suggest("c") is not None  # c was running when the driver died: lost
    assert proposals_after_resume(folder, saved) == ["new0", "new1"], "4 planned: a and b ran, c is lost"


def test_a_trial_whose_end_the_record_missed_is_proposed_again(sweep: tuple[Path, SweepRecorder]) -> None:
    """The driver died between telling the study and writing the record: the record (lost)
    decides, so the plan's count of ended trials still comes out right."""
    folder, recorder = sweep
    first = searcher(folder)
    run_to_end(first, recorder, "a")
    saved = folder / "searcher-state.json"
    first.save(str(saved))
    run_to_end(first, None, "b")
    assert proposals_after_resume(folder, saved) == ["new0", "new1", "new2"], "only a ended in the record"


def test_a_save_from_before_the_count_was_kept_resumes_as_before(sweep: tuple[Path, SweepRecorder]) -> None:
    folder, recorder = sweep
    first = searcher(folder)
    run_to_end(first, recorder, "a")
    saved = folder / "searcher-state.json"
    first.save(str(saved))
    saved.write_text(saved.read_text().replace('"proposed"', '"not-kept"'))
    run_to_end(first, recorder, "b")
    assert len(proposals_after_resume(folder, saved)) == PLANNED - 1, "only Tune's trials count, as before"
