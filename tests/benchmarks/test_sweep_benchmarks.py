"""The sweep benchmarks' counting (benchmarks/sweep_efficiency.py, benchmarks/soak.py) on
sweep folders written here in the layout a sweep leaves: no Ray, no training."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import REPO

sys.path.insert(0, str(REPO / "benchmarks"))

import laptop_seeds  # noqa: E402
import soak  # noqa: E402
import sweep_efficiency  # noqa: E402
from sweep_runs import read_sweep  # noqa: E402

START = 1_800_000_000  # the sweep record's start, as a POSIX time (2027-01-15T08:00:00Z)


def write_sweep(results: Path, name: str, trials: dict[str, dict], planned: int) -> None:
    """A sweep folder: ``trials`` maps trial id -> {"state", "seed", "lr", "results": [(epoch,
    val_acc, resumed_from_epoch, seconds after START)]}."""
    folder = results / "sweeps" / name
    record = {"name": name, "planned_trials": planned, "started_at": "2027-01-15T08:00:00Z",
              "ended_at": "2027-01-15T08:10:00Z", "trials": {}}  # fmt: skip
    for trial_id, trial in trials.items():
        trial_dir = folder / f"trial_{trial_id}"
        trial_dir.mkdir(parents=True)
        config = {"seed": trial["seed"], "train": {"lr": trial["lr"], "label_smoothing": 0.1}}
        (trial_dir / "params.json").write_text(json.dumps(config))
        lines = [
            json.dumps(
                {"epoch": e, "val_acc": acc, "resumed_from_epoch": start, "timestamp": START + at, "train_seconds": 2.0}
            )  # fmt: skip
            for e, acc, start, at in trial["results"]
        ]
        (trial_dir / "result.json").write_text("".join(line + "\n" for line in lines))
        record["trials"][trial_id] = {"state": trial["state"]}
    (folder / "sweep_record.json").write_text(json.dumps(record))


def test_soak_counts_retries_redone_epochs_orphans_and_lost_trials(tmp_path: Path) -> None:
    write_sweep(tmp_path, "soak", {
        # killed after epoch 2's checkpoint and before its report reached Tune: epoch 2 again
        "a": {"state": "finished", "seed": 0, "lr": 0.1, "results": [(1, .3, 0, 10), (2, .4, 0, 20), (2, .4, 2, 70), (3, .5, 2, 80)]},
        # its epoch 1 before the driver kill (at +100 s), the rest after the resume (at +150 s)
        "b": {"state": "finished", "seed": 1, "lr": 0.2, "results": [(1, .3, 0, 90), (2, .4, 1, 160), (3, .5, 1, 170)]},
        "c": {"state": "lost", "seed": 2, "lr": 0.3, "results": [(1, .2, 0, 95)]},  # unknown to Tune: run again as "e"
        "d": {"state": "error", "seed": 3, "lr": 0.4, "results": [(1, .2, 0, 40)]},
        "e": {"state": "finished", "seed": 2, "lr": 0.3, "results": [(1, .2, 0, 160), (2, .3, 0, 170), (3, .4, 0, 180)]},
    }, planned=4)  # fmt: skip
    counts = soak.summarize(read_sweep(tmp_path, "soak"), killed_at=START + 100, resumed_at=START + 150)
    assert counts["finished"] == 3 and counts["error"] == 1 and counts["lost"] == 1  # d did not finish
    assert counts["retried"] == 2 and counts["restarts_from_checkpoint"] == 2 and counts["carried_over_resume"] == 1
    assert counts["epochs_redone"] == 1 and counts["epochs_reported"] == 12
    assert counts["orphaned_by_driver_kill"] == 1 and counts["epochs_abandoned"] == 1


def test_asha_winner_is_ranked_among_fifo_full_trainings_of_the_same_configs(tmp_path: Path) -> None:
    asha = {"a0": {"state": "finished", "seed": 0, "lr": 0.1, "results": [(1, .5, 0, 10)]},
            "a1": {"state": "finished", "seed": 1, "lr": 0.2, "results": [(1, .6, 0, 10), (2, .7, 0, 20)]},
            "a2": {"state": "stopped_early", "seed": 2, "lr": 0.3, "results": [(1, .4, 0, 10)]}}  # fmt: skip
    fifo = {"f0": {"state": "finished", "seed": 0, "lr": 0.1, "results": [(1, .5, 0, 10), (2, .8, 0, 20)]},
            "f1": {"state": "finished", "seed": 1, "lr": 0.2, "results": [(1, .6, 0, 10), (2, .75, 0, 20)]},
            "f2": {"state": "finished", "seed": 2, "lr": 0.3, "results": [(1, .4, 0, 10), (2, .9, 0, 20)]}}  # fmt: skip
    write_sweep(tmp_path, "asha", asha, planned=3)
    write_sweep(tmp_path, "fifo", fifo, planned=3)
    compared = sweep_efficiency.compare_schedulers(read_sweep(tmp_path, "asha"), read_sweep(tmp_path, "fifo"))
    assert compared["asha_winner_seed"] == 1 and compared["asha_winner_fifo_rank"] == 3
    assert compared["identical_configs"] is True
    assert [(r["asha_epochs"], r["fifo_epochs"]) for r in compared["configs"]] == [(1, 2), (2, 2), (1, 2)]

    fifo["f2"]["lr"] = 0.35  # another draw: the arms did not run the same configs
    write_sweep(tmp_path, "fifo2", fifo, planned=3)
    other = sweep_efficiency.compare_schedulers(read_sweep(tmp_path, "asha"), read_sweep(tmp_path, "fifo2"))
    assert other["identical_configs"] is False


def test_searchers_are_timed_to_the_random_searchs_best(tmp_path: Path) -> None:
    write_sweep(tmp_path, "random", {"r": {"state": "finished", "seed": 0, "lr": 0.1,
                                           "results": [(1, .5, 0, 30), (2, .6, 0, 90)]}}, planned=1)  # fmt: skip
    write_sweep(tmp_path, "tpe", {"t": {"state": "finished", "seed": 0, "lr": 0.1,
                                        "results": [(1, .55, 0, 20), (2, .65, 0, 50)]}}, planned=1)  # fmt: skip
    compared = sweep_efficiency.compare_searchers(read_sweep(tmp_path, "random"), read_sweep(tmp_path, "tpe"))
    assert compared["random"]["to_random_best_s"] == 90 and compared["tpe"]["to_random_best_s"] == 50
    assert compared["tpe"]["best"] == 0.65 and compared["random"]["epochs"] == 2


def test_the_laptop_benchmark_reads_the_closing_line_and_counts_the_overhead(capsys) -> None:  # noqa: ANN001
    line = ("sweep ended by its time budget after 400 s: 6 trials, 2 stopped early by ASHA, 0 failed, 0 diverged, "
            "0 over-budget proposals refused; best val_acc 0.7310 (trial a_00001, epoch 16); cost: 0.2222 CPU "
            "core-hours (700 s training, 60 s evaluation)")  # fmt: skip
    wall, trials, train, evaluation = (int(x) for x in laptop_seeds.CLOSING.search(line).groups())
    assert (wall, trials, train, evaluation) == (400, 6, 700, 60)
    run = {"wall": 400, "command": 410.0, "trials": 6, "work": 760, "test_acc": 0.75}
    assert laptop_seeds.overhead_share(run) == (800 - 760) / 800 and laptop_seeds.per_trial(run) == 40 / 6
    other = {**run, "work": 720, "test_acc": 0.74}
    laptop_seeds.report({"baseline": {0: other}, "this checkout": {0: run}}, "laptop_space", "10m")
    table = capsys.readouterr().out
    assert "seed 0: overhead, % of wall" in table and "5.0" in table and "10.0" in table
    assert "mean test_acc, this checkout - baseline: +1.00 points" in table
