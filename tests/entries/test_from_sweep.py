"""``raycifar promote SWEEP``: a sweep folder built by hand as Tune and Ray Train leave it
(trial folders with params.json and result.json lines, checkpoint folders under
train_runs/), promoted without Ray."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from board_files import exported_checkpoint
from cifar_files import write_image_folder
from loader_refs import hand_counted_accuracy
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data import ImageSet, read_part
from raycifar.entries.from_sweep import promote_sweep, sweep_costs
from raycifar.errors import UserError
from raycifar.results.layout import entry_dir
from raycifar.results.leaderboard import read_table
from raycifar.results.sweep_record import SweepRecorder, read_record

# trial -> [(epoch, val_acc, checkpoint kept?, time_total_s, train_seconds, eval_seconds)];
# 2 workers of 2 CPUs each everywhere
TRIALS = {
    "t1": [(1, 0.5, True, 10.0, 8.0, 1.0), (2, 0.7, True, 20.0, 8.0, 2.0)],
    "t2": [(1, 0.8, False, 5.0, 4.0, 1.0), (2, 0.6, True, 12.0, 6.0, 1.0)],  # its best checkpoint was deleted
}
# (8 + 1 + 8 + 2 + 4 + 1 + 6 + 1) s = 31 s × 2 workers × 2 CPUs = 124 CPU core-seconds
SWEEP_CORE_HOURS = 124 / 3600


def write_sweep(results: Path, cifar_dir: Path, reported_root: Path | None = None, costed: bool = True) -> Path:
    """Sweep ``s``: trials t1 and t2 as in TRIALS, and t3 that failed before reporting.
    Results name checkpoints under ``reported_root`` (default: where they are); without
    ``costed``, they lack the epoch times and resources, as an older raycifar's do."""
    sweep = results / "sweeps" / "s"
    for seed, (trial_id, epochs) in enumerate(TRIALS.items()):
        folder = sweep / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"train": {"epochs": 2}}))
        lines = []
        for epoch, val_acc, kept, seconds, train_s, eval_s in epochs:
            checkpoint = sweep / "train_runs" / trial_id / f"checkpoint_{epoch}"
            if kept:
                exported_checkpoint(checkpoint, cifar_dir, seed=10 * seed + epoch)
            reported = (reported_root or results) / checkpoint.relative_to(results)
            cost = {"train_seconds": train_s, "eval_seconds": eval_s, "device": "cpu", "worker_cpus": 2.0,
                    "worker_gpus": 0.0} if costed else {}  # fmt: skip
            lines.append({"epoch": epoch, "val_acc": val_acc, "checkpoint_path": str(reported), "trial_id": trial_id,
                          "time_total_s": seconds, "world_size": 2, **cost})  # fmt: skip
        (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
    (sweep / "trial_t3").mkdir()
    (sweep / "trial_t3" / "error.txt").write_text("Traceback ...\n")
    return sweep


def interrupted_record(sweep: Path) -> SweepRecorder:
    recorder = SweepRecorder.start(sweep, "s", "tiny", planned_trials=3)
    recorder.record.driver_pid = 2**22 + 17  # no such process: the driver was killed
    recorder.heartbeat(force=True)
    return recorder


def same_weights(entry: Path, checkpoint: Path) -> bool:
    return (entry / "model.safetensors").read_bytes() == (checkpoint / "model.safetensors").read_bytes()


def test_the_best_epoch_with_a_checkpoint_on_disk_is_promoted(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    sweep = write_sweep(results, cifar_dir)
    interrupted_record(sweep)
    row, chosen = promote_sweep(results, "s")
    assert (chosen.trial_id, chosen.epoch, row["val_acc"], row["epochs"]) == ("t1", 2, 0.7, 2)
    assert same_weights(entry_dir(results, row["entry_id"]), sweep / "train_runs" / "t1" / "checkpoint_2")
    assert row["source_checkpoint"] == str(sweep / "train_runs" / "t1" / "checkpoint_2")
    assert row["wall_s"] == 20.0, "the promoted trial's own wall-clock time"
    assert (row["device_hours"], row["device"]) == (pytest.approx(SWEEP_CORE_HOURS), "CPU"), "the whole sweep's"
    stored = read_table(results)[0]
    assert (stored["device_hours"], stored["device"]) == (pytest.approx(SWEEP_CORE_HOURS), "CPU")
    assert read_record(sweep).promoted_entry == row["entry_id"], "status shows the sweep as promoted"
    assert [r["entry_id"] for r in read_table(results)] == [row["entry_id"]]
    with pytest.raises(UserError, match=r"checkpoint_2: already on the leaderboard as entry " + row["entry_id"]):
        promote_sweep(results, "s")


def test_the_sweeps_end_line_states_its_cost(tmp_path: Path, cifar_dir: Path) -> None:
    sweep = write_sweep(tmp_path / "results", cifar_dir)
    # 124 core-s = 0.03444 h; 26 s training, 5 s evaluation
    assert sweep_costs(sweep, "t1").line == "cost: 0.0344 CPU core-hours (26 s training, 5 s evaluation)"


def test_a_sweep_of_an_older_raycifar_is_promoted_with_its_cost_unknown(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    write_sweep(results, cifar_dir, costed=False)
    row, _ = promote_sweep(results, "s")
    assert (row["wall_s"], row["device_hours"], row["device"]) == (20.0, None, None)
    assert sweep_costs(results / "sweeps" / "s", "t1").line.startswith("cost: unknown (")


def test_any_trial_can_be_promoted(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    sweep = write_sweep(results, cifar_dir)
    row, chosen = promote_sweep(results, "s", trial_id="t2")
    assert (chosen.trial_id, chosen.epoch, row["val_acc"], row["wall_s"]) == ("t2", 2, 0.6, 12.0)
    assert same_weights(entry_dir(results, row["entry_id"]), sweep / "train_runs" / "t2" / "checkpoint_2")
    with pytest.raises(UserError, match=r"no trial 't9' in .*sweeps/s \(trials: t1, t2, t3\)"):
        promote_sweep(results, "s", trial_id="t9")
    with pytest.raises(UserError, match=r"nothing of trial t3 can be promoted: 1 trial: 1 failed before their first checkpoint"):
        promote_sweep(results, "s", trial_id="t3")


def test_a_moved_results_folder_still_finds_its_checkpoints(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "moved"
    sweep = write_sweep(results, cifar_dir, reported_root=Path("/gone/results"))
    row, chosen = promote_sweep(results, "s")
    assert (chosen.trial_id, chosen.epoch) == ("t1", 2)
    assert same_weights(entry_dir(results, row["entry_id"]), sweep / "train_runs" / "t1" / "checkpoint_2")


def test_a_running_sweep_is_refused(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    sweep = write_sweep(results, cifar_dir)
    SweepRecorder.start(sweep, "s", "tiny", planned_trials=3)  # this process, heartbeat now
    with pytest.raises(UserError, match=r"sweep s in .* is still running"):
        promote_sweep(results, "s")
    assert read_table(results) == []


def test_an_unknown_sweep_names_the_sweeps_there(tmp_path: Path, cifar_dir: Path) -> None:
    write_sweep(tmp_path, cifar_dir)
    with pytest.raises(UserError, match=r"no sweep 'x' in .*sweeps \(sweeps there: s\)"):
        promote_sweep(tmp_path, "x")


def test_the_cli_promotes_with_an_extra_test_set(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    write_sweep(results, cifar_dir)
    test = read_part(cifar_dir, "test")
    ood = write_image_folder(tmp_path / "ood", test.images[:40], test.labels[:40].tolist())
    result = CliRunner().invoke(
        app, ["promote", "s", "--results-dir", str(results), "--extra-test", f"ood={ood}", "--format", "json"]
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)
    first_40 = ImageSet(test.images[:40], test.labels[:40])
    assert row["extra_test_acc"] == {"ood": hand_counted_accuracy(entry_dir(results, row["entry_id"]), first_40)}
    assert read_table(results)[0]["extra_test_acc"] == row["extra_test_acc"]


@pytest.mark.parametrize(
    ("value", "message"),
    [("ood", r"--extra-test 'ood': write NAME=DIR"), ("o d=/x", r"--extra-test o d=/x: name it with letters"),
     ("ood=/no/such/folder", r"--extra-test ood=/no/such/folder: no such folder")],
)  # fmt: skip
def test_bad_extra_tests_are_one_line_errors(tmp_path: Path, cifar_dir: Path, value: str, message: str) -> None:
    write_sweep(tmp_path, cifar_dir)
    result = CliRunner().invoke(app, ["promote", "s", "--results-dir", str(tmp_path), "--extra-test", value])
    assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
    assert re.search(message, result.output), result.output
    assert not (tmp_path / "leaderboard").exists() or read_table(tmp_path) == []
    assert os.path.isdir(tmp_path / "sweeps" / "s")
