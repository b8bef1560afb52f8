"""Searchers without Ray: budget guarantee, seeding, conditions, study states, TPE vs random."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import optuna
import pytest
from optuna.study import StudyDirection
from optuna.trial import TrialState

from raycifar.config import TrainConfig
from raycifar.errors import UserError
from raycifar.models.budget import count_params
from raycifar.search.plan import parse_duration, trial_count, with_searcher
from raycifar.search.samplers import grid_space, startup_trials
from raycifar.search.searchers import OVER_BUDGET, TRIAL_ID_ATTR, Search
from raycifar.space.find import load_space
from raycifar.space.sections import SearcherSettings

SEARCHERS = ("random", "tpe", "qmc", "nsga2")

# Fixed widths: 3 of the 10 models fit a 300k budget (the widest is 4.9M).
TIGHT = """
budget: 300000
arch:
  model: {choice: [resnet10, resnet20]}
  base_width: {choice: [8, 16, 32, 48, 64]}
train:
  lr: {loguniform: [0.01, 0.3]}
  epochs: 2
"""

CONDITIONAL = """
budget: 100000
arch:
  model: resnet10
  base_width: fit
train:
  optimizer: {choice: [sgd, adamw]}
  momentum: {choice: [0.8, 0.95], when: {train.optimizer: sgd}}
  nesterov: {choice: [true, false], when: {train.optimizer: sgd}}
  mixup_alpha: {choice: [0.2, 0.4], when: {augment.policy: [autoaugment, randaugment]}}
  epochs: 2
augment:
  policy: {choice: [none, autoaugment, randaugment]}
loader: torchvision
"""

SYNTHETIC = """
budget: 100000
arch:
  model: resnet10
  base_width: fit
train:
  lr: {loguniform: [0.001, 1.0]}
  label_smoothing: {uniform: [0.0, 0.3]}
  weight_decay: {loguniform: [1.0e-5, 1.0e-2]}
  epochs: 4
"""


def space_of(tmp_path: Path, text: str, name: str = "space.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return load_space(str(path))


def search_of(tmp_path: Path, text: str, searcher: str, seed: int = 0) -> Search:
    return Search.in_memory(space_of(tmp_path, text), searcher, seed, tmp_path)


@pytest.mark.parametrize("searcher", SEARCHERS)
def test_no_searcher_hands_out_an_over_budget_config(tmp_path: Path, searcher: str) -> None:
    search = search_of(tmp_path, TIGHT, searcher)
    proposals = [search.propose() for _ in range(12)]
    for proposal in proposals:  # counted again from the model, not from the proposal's own field
        assert count_params(proposal.config.model) <= 300000
    refused = [t for t in search.study.trials if t.constraints.get(OVER_BUDGET, 0) > 0]
    assert search.infeasible == len(refused) > 0  # every refusal was told to the study as infeasible
    assert all(t.state == TrialState.COMPLETE and t.user_attrs["params"] > 300000 for t in refused)


def test_tpe_learns_the_budget_boundary(tmp_path: Path) -> None:
    """After its random start, TPE proposes fewer infeasible points than random search."""
    refused = {}
    for searcher in ("random", "tpe"):
        search = search_of(tmp_path, TIGHT, searcher, seed=3)
        for _ in range(30):
            proposal = search.propose()
            search.report(proposal.number, 2, 0.5)
            search.finish(proposal.number, 2)
        refused[searcher] = search.infeasible
    assert refused["tpe"] < refused["random"]


@pytest.mark.parametrize("searcher", (*SEARCHERS, "grid"))
def test_the_same_seed_proposes_the_same_first_configs(tmp_path: Path, searcher: str) -> None:
    text = TIGHT if searcher != "grid" else TIGHT.replace("{loguniform: [0.01, 0.3]}", "{choice: [0.01, 0.1]}")

    def first(seed: int) -> list:
        search = search_of(tmp_path, text, searcher, seed)
        return [search.propose().config for _ in range(3)]

    assert first(5) == first(5)
    assert first(5) != first(6)


@pytest.mark.parametrize("searcher", (*SEARCHERS, "grid"))
def test_inactive_dimensions_are_absent_and_take_the_neutral_value(tmp_path: Path, searcher: str) -> None:
    search = search_of(tmp_path, CONDITIONAL, searcher, seed=1)
    proposals = [search.propose() for _ in range(16)]
    optimizers = {p.config.train.optimizer for p in proposals}
    assert optimizers == {"sgd", "adamw"}  # both branches were drawn
    for proposal in proposals:
        record, train = proposal.search, proposal.config.train
        optuna_params = search.study.trials[proposal.number].params
        assert set(record) == set(optuna_params)  # the search record is what the searcher chose
        if train.optimizer == "adamw":
            assert "train.momentum" not in record and "train.nesterov" not in record
            assert (train.momentum, train.nesterov) == (TrainConfig().momentum, TrainConfig().nesterov)
        else:
            assert record["train.momentum"] == train.momentum and record["train.nesterov"] == train.nesterov
        if proposal.config.augment.policy == "none":
            assert "train.mixup_alpha" not in record and train.mixup_alpha == 0.0
        else:
            assert train.mixup_alpha == record["train.mixup_alpha"] in (0.2, 0.4)


def test_results_flow_into_the_study_by_epoch(tmp_path: Path) -> None:
    search = search_of(tmp_path, TIGHT, "tpe")
    done, stopped, crashed = (search.propose() for _ in range(3))
    for epoch, acc in ((1, 0.3), (2, 0.5)):
        search.report(done.number, epoch, acc)
    search.report(done.number, 2, 0.9)  # an epoch reported again after a restore keeps its first value
    search.report(stopped.number, 1, 0.2)
    search.name_trial(done.number, "abc_00000")
    assert search.finish(done.number, 2) == "complete"
    assert search.finish(stopped.number, 1) == "pruned"
    assert search.finish(crashed.number, 0, failed=True) == "failed"
    assert search.finish(done.number, 2) is None  # ended already
    trials = search.study.trials
    assert trials[done.number].intermediate_values == {1: 0.3, 2: 0.5}
    assert trials[done.number].value == 0.5 and trials[done.number].user_attrs[TRIAL_ID_ATTR] == "abc_00000"
    assert [trials[p.number].state for p in (stopped, crashed)] == [TrialState.PRUNED, TrialState.FAIL]


def test_nsga2_returns_the_pareto_set_of_accuracy_and_size(tmp_path: Path) -> None:
    search = search_of(tmp_path, TIGHT.replace("budget: 300000", "budget: 2000000"), "nsga2")
    scored = []
    for index in range(6):
        proposal = search.propose()
        accuracy = 0.1 * (index % 3) + proposal.config.params / 1e6
        search.name_trial(proposal.number, f"t{index}")
        search.report(proposal.number, 2, accuracy)
        search.finish(proposal.number, 2)
        scored.append((f"t{index}", accuracy, proposal.config.params))
    expected = [
        name for name, acc, size in scored
        if not any(a >= acc and s <= size and (a, s) != (acc, size) for _, a, s in scored)
    ]  # fmt: skip
    assert sorted(row["trial_id"] for row in search.pareto()) == sorted(expected)


def test_nsga2_with_shift_objectives_keeps_the_pareto_set_of_clean_and_shifted_accuracy(tmp_path: Path) -> None:
    text = "select: mean\nsearcher: {name: nsga2, objectives: shift}\n" + TIGHT.replace("300000", "2000000")
    space = space_of(tmp_path, text)
    search = Search.on_disk(space, space.spec.searcher, 0, tmp_path, None, tmp_path / "sweep", 6)
    assert search.study.directions == [StudyDirection.MAXIMIZE, StudyDirection.MAXIMIZE]
    told = {}
    for index in range(6):
        proposal = search.propose()
        search.name_trial(proposal.number, f"t{index}")
        # Two epochs: clean accuracy rises with the index, shifted accuracy falls; the second
        # epoch is better by the mean for even indices only.
        epochs = {
            1: (0.40 + 0.03 * index, 0.50 - 0.02 * index),
            2: (0.40 + 0.04 * index, 0.50 - 0.05 * index + 0.1 * (index % 2 == 0)),
        }
        for epoch, (clean, shift) in epochs.items():
            result = {"val_acc": clean, "val_acc_shift": shift, "val_acc_mean": (clean + shift) / 2}
            search.report(proposal.number, epoch, result["val_acc_mean"], result)
        assert search.finish(proposal.number, 2) == "complete"
        told[f"t{index}"] = max(epochs.values(), key=lambda pair: sum(pair))  # the best epoch by the mean
    ran = [trial for trial in search.study.trials if TRIAL_ID_ATTR in trial.user_attrs]
    assert len(ran) == 6 and all(tuple(t.values) == pytest.approx(told[t.user_attrs[TRIAL_ID_ATTR]]) for t in ran)
    front = {
        name for name, (clean, shift) in told.items()
        if not any(c >= clean and s >= shift and (c, s) != (clean, shift) for c, s in told.values())
    }  # fmt: skip
    rows = search.pareto()
    assert {row["trial_id"] for row in rows} == front and len(front) >= 2
    assert [row["val_acc"] for row in rows] == sorted(row["val_acc"] for row in rows)
    assert all((row["val_acc"], row["val_acc_shift"]) == pytest.approx(told[row["trial_id"]]) for row in rows)


def _synthetic_score(config) -> float:
    """A smooth objective of the trial config with its optimum inside the space."""
    train = config.train
    return math.exp(-((math.log10(train.lr) + 1.0) ** 2) - ((train.label_smoothing - 0.1) / 0.1) ** 2
                    - ((math.log10(train.weight_decay) + 3.5) / 1.5) ** 2)  # fmt: skip


def _best_after(tmp_path: Path, searcher: str, seed: int, trials: int) -> float:
    search = search_of(tmp_path, SYNTHETIC, searcher, seed)
    best = 0.0
    for _ in range(trials):
        proposal = search.propose()
        score = _synthetic_score(proposal.config)
        search.report(proposal.number, 4, score)
        search.finish(proposal.number, 4)
        best = max(best, score)
    return best


def test_tpe_beats_random_search_at_equal_trials(tmp_path: Path) -> None:
    seeds = range(5)
    tpe = [_best_after(tmp_path, "tpe", seed, 30) for seed in seeds]
    random = [_best_after(tmp_path, "random", seed, 30) for seed in seeds]
    assert statistics.mean(tpe) > statistics.mean(random)
    assert sum(t > r for t, r in zip(tpe, random, strict=True)) >= 4


def test_tpe_starts_with_a_third_of_a_small_sweep_at_random() -> None:
    assert [startup_trials(n) for n in (4, 8, 12, 30, 100)] == [2, 2, 4, 10, 10]
    assert startup_trials(None) == 10


def test_the_study_of_a_sweep_is_a_journal_file_optuna_opens(tmp_path: Path) -> None:
    space = space_of(tmp_path, TIGHT)
    search = Search.on_disk(space, SearcherSettings(name="tpe"), 0, tmp_path, None, tmp_path / "sweep", 4)
    proposal = search.propose()
    search.report(proposal.number, 1, 0.4)
    search.finish(proposal.number, 1)  # stopped after 1 of its 2 epochs
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "sweep" / "search" / "study.journal"))
    )
    study = optuna.load_study(study_name="sweep", storage=storage)
    assert study.trials[proposal.number].state == TrialState.PRUNED
    assert study.trials[proposal.number].intermediate_values == {1: 0.4}
    again = Search.on_disk(space, SearcherSettings(name="tpe"), 0, tmp_path, None, tmp_path / "sweep", 4)
    assert again.proposed == 1 and again.propose().config.seed == 1  # the next proposal index continues


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (CONDITIONAL.replace("{train.optimizer: sgd}}\n  nesterov", "{train.optimiser: sgd}}\n  nesterov"),
         r"train.momentum: when: train.optimiser is not a key of this space \(did you mean train.optimizer\?\)"),
        (CONDITIONAL.replace("{train.optimizer: sgd}}\n  nesterov", "{train.optimizer: sdg}}\n  nesterov"),
         r"train.momentum: when: train.optimizer can never be 'sdg' \(it is choice \[\"sgd\", \"adamw\"\]\)"),
        (CONDITIONAL.replace("{train.optimizer: sgd}}\n  nesterov", "{optimizer: sgd}}\n  nesterov"),
         r"when: 'optimizer': name the key it depends on as section.key"),
        (CONDITIONAL.replace("{choice: [sgd, adamw]}", "{choice: [sgd, adamw], when: {train.momentum: 0.8}}"),
         r"form a cycle"),
        (CONDITIONAL.replace("{choice: [sgd, adamw]}", "{choice: [sgd, adamw], when: {train.optimizer: sgd}}"),
         r"train.optimizer: when: a key cannot depend on itself"),
        (CONDITIONAL.replace("  momentum: {choice: [0.8, 0.95], when:", "  momentum: {when:"),
         r"train.momentum: when: a condition belongs to a sampler"),
        (CONDITIONAL.replace("  epochs: 2", "  epochs: 2\n  lr: {uniform: [0.1, 0.2], when: {train.epochs: 3}}"),
         r"train.lr: when: train.epochs can never be 3 \(it is 2\)"),
        (TIGHT + "searcher: {name: random, n_startup_trials: 3}\n",
         r"searcher: n_startup_trials is a setting of the tpe searcher, not of random"),
        (TIGHT + "searcher: annealing\n", r"searcher.name: .*'random', 'grid', 'tpe', 'qmc' or 'nsga2'"),
        (TIGHT + "searcher: {name: tpe, objectives: shift}\n",
         r"searcher: objectives is a setting of the nsga2 searcher, not of tpe"),
        (TIGHT + "select: mean\nsearcher: {name: nsga2, objectives: shift, cost: macs}\n",
         r"searcher: cost sets the size objective, and objectives: shift has none"),
        (TIGHT + "searcher: {name: nsga2, objectives: shift}\n",
         r"searcher.objectives: shift weighs val_acc against val_acc_shift, which only a space with select: mean"),
    ],
)  # fmt: skip
def test_bad_conditions_and_searcher_settings_are_one_line(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        space_of(tmp_path, text)
    assert "\n" not in str(caught.value) and "space.yaml" in str(caught.value)


def test_grid_runs_choices_only_and_counts_the_grid(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"space.yaml: train.lr: the grid searcher runs choice dimensions only"):
        grid_space(space_of(tmp_path, TIGHT))
    space = with_searcher(space_of(tmp_path, TIGHT.replace("{loguniform: [0.01, 0.3]}", "{choice: [0.01, 0.1]}")), "grid")
    assert grid_space(space) == {
        "arch.model": ["resnet10", "resnet20"], "arch.base_width": [8, 16, 32, 48, 64], "train.lr": [0.01, 0.1]
    }  # fmt: skip
    assert trial_count(space, None, None, None).trials == 20  # the whole grid, whatever num_samples says
    assert trial_count(space, 5, None, None).trials == 5
    assert trial_count(space, None, 3, None).trials == 3


def test_unlimited_trials_need_a_time_budget_or_a_cap(tmp_path: Path) -> None:
    space = space_of(tmp_path, TIGHT + "num_samples: unlimited\n")
    with pytest.raises(UserError, match=r"num_samples: unlimited runs until a time budget ends the sweep"):
        trial_count(space, None, None, None)
    assert trial_count(space, None, None, 600.0).trials is None
    assert trial_count(space, None, 7, None).trials == 7
    assert trial_count(space, 9, 4, None).trials == 4


@pytest.mark.parametrize(
    ("text", "seconds"), [("30s", 30), ("10m", 600), ("2h", 7200), ("1h30m", 5400), ("90", 90), ("1.5m", 90)]
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["ten minutes", "10x", "0s", "-5", "", "inf", "nan"])
def test_bad_durations_are_one_line(text: str) -> None:
    with pytest.raises(UserError, match=rf"--time-budget {text!r}: "):
        parse_duration(text)


def test_proposals_the_time_budget_stopped_are_ended_as_pruned(tmp_path: Path) -> None:
    search = search_of(tmp_path, TIGHT, "tpe")
    done, late, unstarted = search.propose(), search.propose(), search.propose()
    search.report(done.number, 2, 0.5)
    search.finish(done.number, 2)
    search.report(late.number, 1, 0.3)
    search.end_running()
    states = {t.number: t.state for t in search.study.trials}
    assert states[done.number] == TrialState.COMPLETE
    assert states[late.number] == states[unstarted.number] == TrialState.PRUNED


def test_a_trial_ended_without_its_last_result_is_judged_by_the_epochs_it_reported(tmp_path: Path) -> None:
    """HyperBand can end a paused trial, and Tune then hands the searcher no last result
    (epoch 0): the study says complete or pruned as the sweep record does, from the epochs reported."""
    search = search_of(tmp_path, TIGHT, "tpe")
    trained, stopped = search.propose(), search.propose()
    for epoch, acc in ((1, 0.3), (2, 0.5)):
        search.report(trained.number, epoch, acc)
    search.report(stopped.number, 1, 0.2)
    assert search.finish(trained.number, 0) == "complete"
    assert search.finish(stopped.number, 0) == "pruned"
    assert search.study.trials[trained.number].value == 0.5


@pytest.mark.parametrize("searcher", ["random", "tpe", "qmc", "nsga2"])
def test_a_sweeps_search_survives_tunes_pickle_with_its_study(tmp_path: Path, searcher: str) -> None:
    """Tune pickles the searcher into the sweep's tuner.pkl. The study is reopened from its
    journal on unpickling (Optuna 5.1's NSGA-II sampler holds a thread lock that cannot be
    pickled), with every trial and proposal count it had."""
    from ray import cloudpickle

    space = load_space("smoke_space")
    search = Search.on_disk(space, SearcherSettings(name=searcher), 0, tmp_path, None, tmp_path, 4)
    first = search.propose()
    search.report(first.number, 1, 0.25)
    back = cloudpickle.loads(cloudpickle.dumps(search))
    assert back.study is not search.study
    assert [t.state for t in back.study.get_trials()] == [t.state for t in search.study.get_trials()]
    assert (back.proposed, back.infeasible) == (search.proposed, search.infeasible)
    assert back.study.get_trials()[first.number].intermediate_values == search.study.get_trials()[first.number].intermediate_values
    back.finish(first.number, 1)
    assert back.study.get_trials()[first.number].state != TrialState.RUNNING
