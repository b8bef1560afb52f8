"""``raycifar sweep --resume`` without Ray: which sweeps can be resumed, options that may not
change, the scheduler's rung records kept across a restore, and what ``raycifar status``
says about an interrupted sweep (``--watch`` included). The SIGKILL-and-resume run is in
test_sweep_resume_e2e.py."""

from __future__ import annotations

import pickle
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_status import running_sweep, start_record, status, write_trial
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.cli.status_view import watch_sweeps
from raycifar.errors import UserError
from raycifar.results.resume import SavedOptions, check_resumable, refuse_changes, save_options
from raycifar.results.status import read_sweeps
from raycifar.results.sweep_record import SweepRecorder, write_record

SAVED = SavedOptions(
    space="/spaces/tiny_space.yaml", data_dir="/data/cifar", seed=1, num_samples=3, cpus_per_trial=1.0,
    workers_per_trial=1, wandb="off",
)  # fmt: skip


NAME = "running-sweep"  # test_status.running_sweep's


def interrupted_sweep(results: Path) -> Path:
    """A sweep whose driver died 10 minutes ago with 3 of 5 trials ended, and its options."""
    folder = running_sweep(results, age_s=600)
    save_options(folder, SAVED)
    return folder


def test_an_interrupted_sweep_can_be_resumed_and_its_ended_trials_are_kept(tmp_path: Path) -> None:
    interrupted_sweep(tmp_path)
    found = check_resumable(tmp_path, NAME)
    assert found.options == SAVED and found.record.planned_trials == 5
    assert found.completed == {"t1", "t2"}, "finished and stopped early: never run again; errored t4 runs again"


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        ("none", "--resume s: no such sweep in {sweeps} (known: other)"),
        ("ended", "--resume s: the sweep already ended (completed, 0 of 2 trials finished); nothing to resume "
                  "(add trials with --resume s --num-samples N)"),
        ("live", "--resume s: the sweep is still running"),
        ("no options", "resume.json: missing; sweep running-sweep was started by an older raycifar and cannot be resumed"),
    ],
)
def test_what_cannot_be_resumed_is_one_line(tmp_path: Path, setup: str, message: str) -> None:
    start_record(tmp_path, "other", planned=1)
    if setup == "ended":
        start_record(tmp_path, "s", planned=2).ended("completed")
    elif setup == "live":
        start_record(tmp_path, "s", planned=2)  # this process, fresh heartbeat
    elif setup == "no options":
        running_sweep(tmp_path, age_s=600)
    with pytest.raises(UserError) as caught:
        check_resumable(tmp_path, NAME if setup == "no options" else "s")
    assert message.format(sweeps=tmp_path / "sweeps") in str(caught.value) and "\n" not in str(caught.value)


def test_only_an_ended_sweep_can_be_extended_and_an_extension_can_itself_be_resumed(tmp_path: Path) -> None:
    folder = interrupted_sweep(tmp_path)
    with pytest.raises(UserError, match=rf"^--num-samples 4: sweep {NAME} did not end \(3 trials finished\).*resume it first"):
        check_resumable(tmp_path, NAME, extend=4)
    recorder = SweepRecorder.reopen(folder)
    recorder.ended("completed")
    recorder.promoted("entry-1")
    found = check_resumable(tmp_path, NAME, extend=4)
    assert found.ended and found.completed == {"t1", "t2"}
    recorder.resumed(planned_trials=7)  # the extension's driver ...
    recorder.record.heartbeat_at -= timedelta(minutes=10)  # ... died 10 minutes ago
    write_record(folder, recorder.record)
    found = check_resumable(tmp_path, NAME)  # promoted before, but the extension did not end: resumable
    assert not found.ended and found.record.planned_trials == 7
    assert read_sweeps(tmp_path)[0].state == "interrupted"


def test_a_changed_option_is_refused_and_the_same_ones_pass() -> None:
    refuse_changes("s", SAVED, {"seed": 1, "cpus_per_trial": 1, "data_dir": Path("/data/cifar"), "space": "tiny_space"})
    refuse_changes("s", SAVED, {"address": "127.0.0.1:6379", "dashboard": False, "max_concurrent_trials": 8})
    with pytest.raises(UserError, match=r"^--seed 2: sweep s was started with 1, and a resumed sweep keeps its options \(drop --seed\)$"):
        refuse_changes("s", SAVED, {"seed": 2})
    with pytest.raises(UserError, match=r"^--max-epochs 4: sweep s was started with \(default\)"):
        refuse_changes("s", SAVED, {"max_epochs": 4})
    with pytest.raises(UserError, match=r"^SPACE resnet_space: sweep s was started with /spaces/tiny_space.yaml"):
        refuse_changes("s", SAVED, {"space": "resnet_space"})


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


def test_the_cli_refuses_a_resume_before_ray_starts(tmp_path: Path) -> None:
    interrupted_sweep(tmp_path)
    code, output = cli("sweep", "--resume", NAME, "--results-dir", str(tmp_path), "--workers-per-trial", "2")
    assert code == 2 and f"--workers-per-trial 2: sweep {NAME} was started with 1" in output and output.count("\n") == 1
    code, output = cli("sweep", "--resume", NAME, "--results-dir", str(tmp_path), "--name", "t")
    assert code == 2 and "--name: not with --resume" in output
    code, output = cli("sweep", "--resume", "nope", "--results-dir", str(tmp_path))
    assert code == 2 and "--resume nope: no such sweep" in output and output.count("\n") == 1
    code, output = cli("sweep", "--results-dir", str(tmp_path))
    assert code == 2 and "give a SPACE" in output


# ---------------------------------------------------------------------- scheduler state


def _asha_with_records(path: Path):
    """A fresh ASHA and the sweep's scheduler-state callback, as a new sweep builds them."""
    from ray.tune.schedulers import ASHAScheduler

    from raycifar.sweep.tune_hooks import SchedulerState

    asha = ASHAScheduler(time_attr="epoch", max_t=4, grace_period=1, reduction_factor=2)
    asha.set_search_properties("val_acc", "max")
    return asha, SchedulerState(asha, path)


def _rungs(asha) -> dict:
    return {milestone: dict(recorded) for milestone, recorded in asha._brackets[0]._rungs}


def test_rung_records_survive_a_restore_of_the_tuner(tmp_path: Path) -> None:
    asha, keeper = _asha_with_records(tmp_path / "scheduler_state.pkl")
    pickled_at_start = pickle.dumps((asha, keeper))  # Tuner pickles scheduler and callbacks when it starts
    for trial_id, scores in {"a": [0.3, 0.5], "b": [0.4]}.items():
        trial = SimpleNamespace(trial_id=trial_id)
        asha.on_trial_add(None, trial)
        for epoch, score in enumerate(scores, start=1):
            asha.on_trial_result(None, trial, {"epoch": epoch, "val_acc": score})
            keeper.on_trial_result(0, [], trial, {})
    before = _rungs(asha)
    assert before[1] == {"a": 0.3, "b": 0.4} and before[2] == {"a": 0.5}

    restored, restored_keeper = pickle.loads(pickled_at_start)  # what Tuner.restore unpickles: no records
    assert restored_keeper.scheduler is restored and _rungs(restored)[1] == {}
    restored.set_search_properties("val_acc", "max")  # Tune does this before it restores callback state
    restored_keeper.set_state(restored_keeper.get_state())
    assert _rungs(restored) == before
    late = SimpleNamespace(trial_id="c")
    restored.on_trial_add(None, late)
    assert restored.on_trial_result(None, late, {"epoch": 1, "val_acc": 0.1}) == "STOP", "judged on the old records"


# ---------------------------------------------------------------------- status


def test_status_tells_how_to_resume_an_interrupted_sweep(tmp_path: Path) -> None:
    interrupted_sweep(tmp_path)
    (sweep,) = read_sweeps(tmp_path)
    at = datetime.fromisoformat(sweep.interrupted_at).astimezone(timezone.utc).strftime("%H:%M")
    code, output = status("--results-dir", str(tmp_path))
    expected = (
        f"{NAME} interrupted at {at}, 3 of 5 trials finished: resume with "
        f"`raycifar sweep --resume {NAME} --results-dir {tmp_path}`"
    )
    assert code == 0 and expected in output, output


def test_status_gives_no_resume_command_for_a_sweep_that_cannot_be_resumed(tmp_path: Path) -> None:
    running_sweep(tmp_path, age_s=600)  # no resume.json: an older raycifar's sweep
    code, output = status("--results-dir", str(tmp_path))
    assert code == 0 and "3 of 5 trials finished" in output and "--resume" not in output


def test_watch_redraws_until_the_sweep_ends(tmp_path: Path) -> None:
    from rich.console import Console

    recorder = start_record(tmp_path, "s", planned=2)  # this process: a live driver
    recorder.trial_started("t1", {"train": {"epochs": 2}}, model="m")
    write_trial(tmp_path / "sweeps" / "s", "t1", 2, [0.3])
    seen: list[str] = []

    def sleep(seconds: float) -> None:
        seen.append(read_sweeps(tmp_path)[0].state)
        write_trial(tmp_path / "sweeps" / "s", "t2", 2, [0.6, 0.7]) if len(seen) == 1 else recorder.ended("completed")

    console = Console(record=True, width=200)
    last = watch_sweeps(console, tmp_path, "s", every_s=0.0, sleep=sleep)
    assert seen == ["running", "running"] and last[0].state == "ended"
    assert "0.7000" in console.export_text(), "the trials of the sweep, as they were last read"


PBT_SPACE = """
budget: 100000
arch: {model: resnet20, depths: [1, 1], base_width: 8}
train: {lr: {loguniform: [0.02, 0.2]}, batch_size: 64, epochs: 2, schedule: onecycle}
scheduler: {name: pbt, perturbation_interval: 1}
"""


def test_a_pbt_sweep_cannot_be_extended_and_nothing_is_written(tmp_path: Path) -> None:
    space, data = tmp_path / "pbt.yaml", tmp_path / "data"
    space.write_text(PBT_SPACE)
    data.mkdir()
    folder = interrupted_sweep(tmp_path)
    save_options(folder, SAVED.model_copy(update={"space": str(space), "data_dir": str(data)}))
    SweepRecorder.reopen(folder).ended("completed")
    before = {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()}
    code, output = cli("sweep", "--resume", NAME, "--results-dir", str(tmp_path), "--num-samples", "2")
    assert code == 2 and output.count("\n") == 1, output
    assert f"--num-samples 2: sweep {NAME} ran PBT, whose population is fixed; start a new sweep instead" in output
    assert {p: p.read_bytes() for p in folder.rglob("*") if p.is_file()} == before
