"""Tune's searcher (:class:`raycifar.sweep.tune_hooks.StudySearcher`) across a driver's death:
a resumed sweep proposes exactly the trials of its plan that never ran to their end."""

from __future__ import annotations

from pathlib import Path

from ray import tune

from raycifar.search.searchers import Search
from raycifar.space.find import load_space
from raycifar.space.sections import SearcherSettings
from raycifar.sweep.tune_hooks import StudySearcher

PLANNED = 4


def searcher(folder: Path) -> StudySearcher:
    search = Search.on_disk(
        load_space("smoke_space"), SearcherSettings(name="random"), 0, folder, None, folder, PLANNED
    )
    return StudySearcher(search, PLANNED, max_concurrent=PLANNED)


def run_to_end(study_searcher: StudySearcher, trial_id: str) -> None:
    assert isinstance(study_searcher.suggest(trial_id), dict)
    study_searcher.on_trial_complete(trial_id, {"epoch": 2, "val_acc": 0.5})


def proposals_after_resume(folder: Path, saved: Path) -> list[str]:
    """A new driver's searcher, restored from Tune's save, asked until it says it is finished."""
    resumed = searcher(folder)
    resumed.restore(str(saved))
    asked = []
    for n in range(10):
        answer = resumed.suggest(f"new{n}")
        if answer == tune.search.Searcher.FINISHED:
            break
        asked.append(f"new{n}")
        resumed.on_trial_complete(f"new{n}", {"epoch": 2, "val_acc": 0.5})
    return asked


def test_a_trial_that_ran_after_tune_s_last_save_is_not_proposed_again(tmp_path: Path) -> None:
    first = searcher(tmp_path)
    run_to_end(first, "a")
    saved = tmp_path / "searcher-state.json"
    first.save(str(saved))  # Tune saves its state: it knows trial a
    run_to_end(first, "b")  # b starts and ends before Tune's next save; then the driver dies
    assert first.suggest("c") is not None  # c was running when the driver died: lost
    assert proposals_after_resume(tmp_path, saved) == ["new0", "new1"], "4 planned: a and b ran, c is lost"


def test_a_save_from_before_the_count_was_kept_resumes_as_before(tmp_path: Path) -> None:
    first = searcher(tmp_path)
    run_to_end(first, "a")
    saved = tmp_path / "searcher-state.json"
    first.save(str(saved))
    saved.write_text(saved.read_text().replace('"proposed"', '"not-kept"'))
    run_to_end(first, "b")
    assert len(proposals_after_resume(tmp_path, saved)) == PLANNED - 1, "only Tune's trials count, as before"
