"""`select: val_acc | val_acc_shift | mean`: the selected score drives the searcher, the
scheduler, checkpoint retention and promotion (fake results; the end-to-end sweep is slow)."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import yaml
from test_selection import everything_exists

from raycifar.errors import UserError
from raycifar.results.schema import selected_metric
from raycifar.results.selection import TrialHistory, select_best
from raycifar.search.searchers import TRIAL_ID_ATTR, Search
from raycifar.space.file import load_space_file
from raycifar.space.find import load_space
from raycifar.space.sections import SearcherSettings
from raycifar.sweep.tune_hooks import StudySearcher
from raycifar.train.checkpoints import METRICS_FILE, CheckpointFolder
from raycifar.train.run import selection_metric

SPACE = """
description: select test
budget: 100000
select: {select}
arch: {{depths: [1, 1], base_width: {{choice: [8, 12]}}}}
train: {{lr: {{loguniform: [0.05, 0.2]}}, batch_size: 64, epochs: 3}}
"""


def space_file(tmp_path: Path, select: str) -> Path:
    path = tmp_path / f"{select}.yaml"
    path.write_text(SPACE.format(select=select))
    return path


def scored(trial: str, *rows: tuple[float, float]) -> TrialHistory:
    """A trial whose epochs report (val_acc, val_acc_shift) pairs, each with a checkpoint."""
    results = [
        {"epoch": e, "val_acc": clean, "val_acc_shift": shift, "val_acc_mean": (clean + shift) / 2,
         "checkpoint_path": f"/ckpt/{trial}/{e}"}
        for e, (clean, shift) in enumerate(rows, start=1)
    ]  # fmt: skip
    return TrialHistory(trial, len(rows), results)


GRID = [
    scored("a", (0.80, 0.40), (0.82, 0.41)),  # best clean
    scored("b", (0.72, 0.68), (0.72, 0.60)),  # best shifted (epoch 1) and best mean (epoch 1)
    scored("c", (0.76, 0.62), (0.79, 0.50)),
]


@pytest.mark.parametrize(
    ("select", "expected"), [("val_acc", ("a", 2)), ("val_acc_shift", ("b", 1)), ("mean", ("b", 1))]
)
def test_promotion_picks_the_best_epoch_by_the_selected_score(select: str, expected: tuple[str, int]) -> None:
    metric = selected_metric(select)
    best = select_best(GRID, everything_exists, metric).best
    assert (best.trial_id, best.epoch) == expected
    # a reference computed another way: the maximum over every reported epoch of that score
    flat = [(r[metric], t.trial_id, r["epoch"]) for t in GRID for r in t.results]
    assert best.score in (None, max(flat)[0]) and (best.trial_id, best.epoch) == max(flat)[1:]
    assert best.val_acc == next(r["val_acc"] for t in GRID for r in t.results if (t.trial_id, r["epoch"]) == expected)


def test_checkpoints_are_kept_by_the_selected_score(tmp_path: Path) -> None:
    folder = CheckpointFolder(tmp_path, selection_metric({"select": "mean"}))
    # epochs 1-5: val_acc rises while the mean peaks at epochs 2 and 3
    for epoch, (clean, mean) in enumerate([(0.5, 0.45), (0.6, 0.58), (0.7, 0.57), (0.8, 0.4), (0.9, 0.3)], start=1):
        staging = folder.staging()
        (staging / METRICS_FILE).write_text(json.dumps({"epoch": epoch, "val_acc": clean, "val_acc_mean": mean}))
        folder.commit(staging)
    assert [saved.epoch for saved in folder.saved()] == [2, 3, 5], "the two best by val_acc_mean, and the latest"
    assert selection_metric({"select": "mean"}) == "val_acc_mean"
    assert selection_metric({"select": "val_acc_shift"}) == "val_acc_shift"
    assert selection_metric({}) == "val_acc"
    assert selection_metric({"select": "mean", "train_on": "train+val"}) == "epoch"


@pytest.mark.parametrize("searcher", ["random", "tpe", "nsga2"])
def test_the_searcher_is_told_the_selected_score(tmp_path: Path, searcher: str) -> None:
    search = Search.on_disk(
        load_space(str(space_file(tmp_path, "mean"))), SearcherSettings(name=searcher), 0, tmp_path, None, tmp_path, 2
    )
    assert search.metric == "val_acc_mean" and search.objectives[0] == "val_acc_mean"
    tune_searcher = StudySearcher(search, 2, max_concurrent=2)
    assert tune_searcher.metric == "val_acc_mean"
    assert isinstance(tune_searcher.suggest("t1"), dict)
    for epoch, (clean, shift) in enumerate([(0.9, 0.1), (0.8, 0.4), (0.7, 0.3)], start=1):
        tune_searcher.on_trial_result("t1", {"epoch": epoch, "val_acc": clean, "val_acc_mean": (clean + shift) / 2})
    tune_searcher.on_trial_complete("t1", {"epoch": 3, "val_acc": 0.7, "val_acc_mean": 0.5})
    (told,) = search.study.get_trials()
    assert told.values[0] == pytest.approx(0.6), "the best val_acc_mean (epoch 2), not the best val_acc (0.9)"


def test_nsga2_is_told_clean_and_shifted_accuracy_through_the_tune_searcher(tmp_path: Path) -> None:
    space = load_space(str(space_file(tmp_path, "mean")))
    search = Search.on_disk(space, SearcherSettings(name="nsga2", objectives="shift"), 0, tmp_path, None, tmp_path, 2)
    assert search.metric == "val_acc_mean" and search.objectives == ["val_acc", "val_acc_shift"]
    tune_searcher = StudySearcher(search, 2, max_concurrent=2)
    assert isinstance(tune_searcher.suggest("t1"), dict)
    for epoch, (clean, shift) in enumerate([(0.9, 0.1), (0.8, 0.4), (0.7, 0.3)], start=1):
        result = {"epoch": epoch, "val_acc": clean, "val_acc_shift": shift, "val_acc_mean": (clean + shift) / 2}
        tune_searcher.on_trial_result("t1", result)
    tune_searcher.on_trial_complete("t1", {"epoch": 3, "val_acc": 0.7, "val_acc_shift": 0.3, "val_acc_mean": 0.5})
    (told,) = search.study.get_trials()
    assert told.values == [0.8, 0.4], "epoch 2's pair: the best val_acc_mean, not the best val_acc (0.9)"


def test_the_space_takes_select_and_refuses_other_values(tmp_path: Path) -> None:
    assert load_space_file(space_file(tmp_path, "val_acc_shift")).select == "val_acc_shift"
    assert load_space_file(space_file(tmp_path, "val_acc")).select == "val_acc"
    path = space_file(tmp_path, "test_acc")
    with pytest.raises(UserError) as err:
        load_space_file(path)
    assert str(path) in str(err.value) and "select" in str(err.value) and "\n" not in str(err.value)


@pytest.mark.slow
@pytest.mark.usefixtures("short_tmpdir")
def test_a_sweep_selecting_on_the_mean_runs_every_part_on_it(tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar) -> None:
    path = space_file(tmp_path, "mean")
    spec = yaml.safe_load(path.read_text())
    spec["scheduler"] = {"name": "asha", "grace_period": 1, "reduction_factor": 2}
    spec["searcher"] = {"name": "nsga2", "objectives": "shift"}  # clean and shifted val_acc as two objectives
    path.write_text(yaml.safe_dump(spec))
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(path), "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--num-samples", "3", "--seed", "2", "--wandb", "off", "--address", ray_address,
                     "--max-concurrent-trials", "2", cwd=tmp_path, timeout=600)  # fmt: skip
    assert "best val_acc_mean" in sweep.stdout
    (sweep_dir,) = (results / "sweeps").iterdir()
    trials = {p.parent.name: [json.loads(line) for line in p.read_text().splitlines()] for p in sweep_dir.glob("trial_*/result.json")}
    reported = [r for rows in trials.values() for r in rows]
    # every epoch reports both scores and their mean
    assert all(r["val_acc_mean"] == pytest.approx((r["val_acc"] + r["val_acc_shift"]) / 2) for r in reported)
    # promotion: the best epoch by val_acc_mean
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    best = max(reported, key=lambda r: (r["val_acc_mean"], r["epoch"]))
    assert (row["trial_id"], row["epochs"], row["val_acc"]) == (best["trial_id"], best["epoch"], best["val_acc"])
    # status: the trials' best by the selected score
    status = json.loads(raycifar("status", "--results-dir", str(results), "--sweep", sweep_dir.name, "--format", "json",
                                 cwd=tmp_path).stdout)  # fmt: skip
    (shown,) = status["sweeps"]
    assert shown["metric"] == "val_acc_mean" and shown["best_score"] == max(r["val_acc_mean"] for r in reported)
    for trial in shown["trials"]:
        assert trial["best_score"] == max(r["val_acc_mean"] for r in reported if r["trial_id"] == trial["trial_id"])
    # the searcher (NSGA-II, objectives: shift): each complete trial was told the clean and the
    # shifted accuracy of its best epoch by val_acc_mean, and the record keeps the Pareto set
    import optuna

    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(sweep_dir / "search" / "study.journal")))
    study = optuna.load_study(study_name=optuna.get_all_study_names(storage)[0], storage=storage)
    by_id = {t.user_attrs.get(TRIAL_ID_ATTR): t for t in study.get_trials() if t.values}
    assert by_id, "no complete trial in the study"
    best_by_trial = {}
    for trial_id, told in by_id.items():
        best = max((r for r in reported if r["trial_id"] == trial_id), key=lambda r: (r["val_acc_mean"], r["epoch"]))
        best_by_trial[trial_id] = (best["val_acc"], best["val_acc_shift"])
        assert tuple(told.values) == best_by_trial[trial_id]
    pareto = json.loads((sweep_dir / "sweep_record.json").read_text())["pareto"]
    front = {t for t, (c, s) in best_by_trial.items()
             if not any(c2 >= c and s2 >= s and (c2, s2) != (c, s) for c2, s2 in best_by_trial.values())}  # fmt: skip
    assert {p["trial_id"] for p in pareto} == front
    assert all((p["val_acc"], p["val_acc_shift"]) == best_by_trial[p["trial_id"]] for p in pareto)
    # the scheduler: ASHA recorded each trial's val_acc_mean at its rungs
    state = pickle.loads((sweep_dir / "scheduler_state.pkl").read_bytes())
    assert state["_metric"] == "val_acc_mean"
    score = {(r["trial_id"], r["epoch"]): r["val_acc_mean"] for r in reported}
    recorded = [(trial_id, milestone, value) for bracket in state["_brackets"] for milestone, values in bracket._rungs
                for trial_id, value in values.items()]  # fmt: skip
    assert recorded and all(score[(trial_id, milestone)] == value for trial_id, milestone, value in recorded)


@pytest.mark.parametrize("name", ["asha", "hyperband", "median", "pbt", "fifo"])
def test_every_scheduler_takes_the_selected_metric_from_the_sweep(name: str) -> None:
    # the driver gives Tune the selected metric (TuneConfig(metric=search.metric)); Tune hands
    # it to the scheduler, which refuses it (False) when it was built with a metric of its own
    from raycifar.space.dimension import Dimension
    from raycifar.space.sections import SchedulerSettings
    from raycifar.sweep.schedulers import make_scheduler

    scheduler = make_scheduler(SchedulerSettings(name=name), 4, {"lr": Dimension("loguniform", (0.01, 0.1))})
    assert scheduler.set_search_properties("val_acc_mean", "max")
    assert getattr(scheduler, "_metric", "val_acc_mean") == "val_acc_mean"
