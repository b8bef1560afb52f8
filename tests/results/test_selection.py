"""The sweep's selection of the best epoch, on fake result grids (no Ray)."""

from __future__ import annotations

from raycifar.results.selection import Candidate, TrialHistory, candidates, good_results, select_best


def epochs(*val_accs: float, trial: str, keep: bool = True) -> list[dict]:
    """Reported results for epochs 1..N with these ``val_acc`` values and checkpoints."""
    return [
        {"epoch": e, "val_acc": v, **({"checkpoint_path": f"/ckpt/{trial}/{e}"} if keep else {})}
        for e, v in enumerate(val_accs, start=1)
    ]


def everything_exists(path: str) -> bool:
    return True


def test_the_best_epoch_over_all_trials_is_selected_not_the_last_or_the_best_trial_mean() -> None:
    grid = [
        TrialHistory("a", 3, epochs(0.50, 0.61, 0.58, trial="a")),  # best epoch 2 of a
        TrialHistory("b", 3, epochs(0.55, 0.60, 0.60, trial="b")),  # best mean, best last epoch
        TrialHistory("c", 3, epochs(0.30, trial="c")),
    ]
    best = select_best(grid, everything_exists).best
    assert best == Candidate("a", 2, 0.61, "/ckpt/a/2")
    # a reference computed another way: the maximum over a flat list of every reported epoch
    flat = [(r["val_acc"], t.trial_id, r["epoch"]) for t in grid for r in t.results]
    assert (best.val_acc, best.trial_id, best.epoch) == max(flat, key=lambda item: item[0])


def test_ties_go_to_the_later_epoch_then_to_the_trial_listed_first() -> None:
    grid = [
        TrialHistory("a", 3, epochs(0.70, 0.70, 0.60, trial="a")),
        TrialHistory("b", 3, epochs(0.60, 0.70, 0.65, trial="b")),
    ]
    ranked = candidates(grid)
    assert [(c.trial_id, c.epoch) for c in ranked[:3]] == [("a", 2), ("b", 2), ("a", 1)]
    assert select_best(grid, everything_exists).best.checkpoint == "/ckpt/a/2"


def test_a_deleted_checkpoint_falls_back_to_the_next_best_epoch() -> None:
    grid = [TrialHistory("a", 2, epochs(0.40, 0.90, trial="a")), TrialHistory("b", 2, epochs(0.80, 0.85, trial="b"))]
    gone = {"/ckpt/a/2"}
    best = select_best(grid, lambda path: path not in gone).best
    assert best == Candidate("b", 2, 0.85, "/ckpt/b/2")


def test_epochs_without_a_checkpoint_or_a_val_acc_are_never_selected() -> None:
    grid = [
        TrialHistory("a", 2, epochs(0.99, 0.98, trial="a", keep=False)),  # reported, checkpoints not kept
        TrialHistory("b", 2, [{"epoch": 1, "checkpoint_path": "/ckpt/b/1"}]),  # no val_acc
        TrialHistory("c", 2, epochs(0.20, trial="c")),
    ]
    assert select_best(grid, everything_exists).best == Candidate("c", 1, 0.20, "/ckpt/c/1")


def test_nothing_to_promote_when_no_trial_left_a_checkpoint() -> None:
    grid = [TrialHistory("a", 2, [], failed=True), TrialHistory("b", 2, epochs(0.5, trial="b"))]
    selection = select_best(grid, lambda path: False)
    assert selection.best is None and selection.trials == 2 and selection.failed == 1


def test_counts_of_stopped_early_and_failed_trials() -> None:
    grid = [
        TrialHistory("full", 4, epochs(0.1, 0.2, 0.3, 0.4, trial="full")),
        TrialHistory("stopped-at-1", 4, epochs(0.1, trial="s1")),
        TrialHistory("stopped-at-2", 4, epochs(0.1, 0.15, trial="s2")),
        TrialHistory("crashed", 4, epochs(0.1, trial="x"), failed=True),  # short, but failed: not "stopped early"
        TrialHistory("never-reported", 4, [], failed=True),
    ]
    selection = select_best(grid, everything_exists)
    assert (selection.trials, selection.stopped_early, selection.failed) == (5, 2, 2)
    assert selection.best.trial_id == "full"


def test_a_trial_that_diverged_is_never_selected_not_even_its_good_epochs() -> None:
    diverged = [
        {"epoch": 1, "val_acc": 0.90, "checkpoint_path": "/ckpt/a/1"},  # a good epoch, the best of all
        {"epoch": 2, "val_acc": 0.95, "checkpoint_path": "/ckpt/a/2", "diverged": True},  # flagged
    ]
    grid = [
        TrialHistory("a", 3, diverged),
        TrialHistory("b", 3, epochs(0.50, 0.60, trial="b")),  # stopped early at 2 of 3
        TrialHistory("c", 3, [{"epoch": 1, "val_acc": 0.80, "checkpoint_path": "/ckpt/c/1"},
                              {"epoch": 2, "val_acc": float("nan"), "checkpoint_path": "/ckpt/c/2"}]),  # fmt: skip
    ]
    selection = select_best(grid, everything_exists)
    assert selection.best == Candidate("b", 2, 0.60, "/ckpt/b/2")
    assert (selection.diverged, selection.stopped_early, selection.failed) == (2, 1, 0)
    assert [(c.trial_id, c.epoch) for c in candidates(grid)] == [("b", 2), ("b", 1)]


def test_a_sweep_whose_only_trial_diverged_has_nothing_to_promote_and_keeps_its_last_good_epoch() -> None:
    results = [*epochs(0.70, trial="a"), {"epoch": 2, "val_acc": float("nan"), "diverged": True}]
    assert select_best([TrialHistory("a", 3, results)], everything_exists).best is None
    assert good_results(results) == results[:1]


def test_a_run_trained_on_its_val_part_keeps_its_last_epoch_whose_checkpoint_is_there() -> None:
    """``raycifar train --train-on train+val`` selects by epoch (its val_acc is no held-out
    score) with the same rule: the latest epoch whose checkpoint is still on disk."""
    run = [TrialHistory("run", 4, epochs(0.50, 0.90, 0.70, 0.60, trial="run"))]
    assert select_best(run, everything_exists, metric="epoch").best == Candidate("run", 4, 0.60, "/ckpt/run/4")
    assert select_best(run, lambda path: path != "/ckpt/run/4", metric="epoch").best.epoch == 3
    assert select_best(run, everything_exists).best.epoch == 2  # by val_acc, the default
