"""Bad input and faults, round 2 (issue 26, kinds 4, 5, 6, 9, 10, 11b), over the command line:
each case is one ``error:`` line on stderr with exit code 2, naming the file, key or value,
no traceback, nothing in the results folder changed, within 10 s of the command's own work
(kind 10: its connect timeout plus 5 s).

- 4: names longer than a file name may be (sweep, run, entry, W&B artifact), checked against
  the longest path the results layout derives from them, before anything is written.
- 5, 6: a recorded data folder that is gone: the line names the recorded folder and the one
  option that re-points it; a folder that holds other data is refused; every option a hint
  names is one the command has, and every command line it suggests parses with the CLI.
- 9: nothing to promote: the line says why, by class of trial, with counts.
- 10: an unreachable ``--address`` (sweep, Ray Client, resume, train, status, logs), a port
  that takes the connection but never answers, or answers but not as Ray: one line naming
  the wait and ``RAYCIFAR_CONNECT_TIMEOUT_S`` within the timeout plus 5 s.
- 11b: commands started at the same moment with one sweep name: exactly one claims the
  folder; a sweep being run holds its driver lock against a second command.

The right results of kind 5 (a re-pointed evaluate, an old entry re-pointed on matching data)
and kind 8 (a torn tail of each appended file cut back to its last whole record, nothing
else changed) are checked at the end; the resume that re-points a moved data folder and
repairs a torn journal is ``tests/sweep/test_faults_resume_e2e.py``.
"""

from __future__ import annotations

import json
import multiprocessing
import re
import shlex
import shutil
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import test_bad_input
import typer
from board_files import exported_checkpoint
from cifar_files import write_cifar10
from test_bad_input import GOOD_SPACE, Workspace, check_one_line, run_cli, tree_digest

from raycifar.cli import app
from raycifar.data.fingerprint import data_fingerprint
from raycifar.entries.promote import promote
from raycifar.errors import UserError
from raycifar.results.resume import SavedOptions
from raycifar.results.sweep_record import SweepRecorder

template, workspace = test_bad_input.template, test_bad_input.workspace  # the same fixtures
CONNECT_TIMEOUT_S = 2
SLACK_S = 10.0  # a command's own start (imports, reading the space) on a loaded machine


def free_port() -> int:
    """A loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _entry_on_data(w: Workspace, data: Path, name: str = "moved") -> str:
    """An entry promoted into the case's results folder from a checkpoint trained on ``data``."""
    checkpoint = exported_checkpoint(w.tmp / "checkpoint", data)
    return promote(checkpoint, w.results, sweep=name, trial_id="t0", val_acc=0.5, epochs=1, source_checkpoint="y")["entry_id"]


def _entry_data_gone(w: Workspace) -> str:
    data = w.cifar10("data-before")
    entry = _entry_on_data(w, data)
    shutil.rmtree(data)
    return entry


def _resumable_sweep(w: Workspace, data: Path, name: str = "halted", fingerprint: str | None = None) -> Path:
    """An interrupted sweep (its driver long dead) of the good space, recorded with ``data``
    (and its ``fingerprint``: None, as an older raycifar recorded it)."""
    sweep = w.results / "sweeps" / name
    clock = iter([time.time() - 3600] * 100)
    from datetime import datetime, timezone

    SweepRecorder.start(sweep, name, "space", 2, now=lambda: datetime.fromtimestamp(next(clock), timezone.utc))
    options = SavedOptions(space=str(w.space(GOOD_SPACE)), data_dir=str(data), seed=0, cpus_per_trial=1.0,
                           workers_per_trial=1, wandb="off", data_fingerprint=fingerprint)  # fmt: skip
    (sweep / "resume.json").write_text(options.model_dump_json(indent=1))
    return sweep


def _sweep_data_moved(w: Workspace) -> str:
    """A resumable sweep whose data folder (fingerprint recorded) is gone."""
    data = w.cifar10("gone")
    fingerprint = data_fingerprint(data)
    shutil.rmtree(data)
    return _resumable_sweep(w, data, fingerprint=fingerprint).name


def _diverged_sweep(w: Workspace) -> tuple[list[str], list[str]]:
    """A sweep whose every trial diverged, failed, stopped before a checkpoint or lost it."""
    sweep = w.results / "sweeps" / "blown"
    runs = sweep / "train_runs"
    trials = {
        "d1": [{"epoch": 1, "val_acc": 0.3, "checkpoint_path": str(runs / "d1" / "c1")}, {"epoch": 2, "val_acc": float("nan"), "diverged": True}],
        "d2": [{"epoch": 1, "val_acc": 0.2, "diverged": True, "checkpoint_path": str(runs / "d2" / "c1")}],
        "gone": [{"epoch": 1, "val_acc": 0.4, "checkpoint_path": str(runs / "gone" / "c1")}],
        "err": None,
        "early": [],
    }
    for trial, results in trials.items():
        folder = sweep / f"trial_{trial}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps({"train": {"epochs": 2}}))
        if results is None:
            (folder / "error.txt").write_text("Traceback ...\n")
            continue
        (folder / "result.json").write_text("".join(json.dumps(r) + "\n" for r in results))
        for result in results:
            if "checkpoint_path" in result and trial != "gone":
                Path(result["checkpoint_path"]).mkdir(parents=True)
    expected = ["5 trials: 2 diverged", "1 had their checkpoints deleted", "1 failed before their first checkpoint",
                "1 stopped before their first checkpoint", str(sweep)]  # fmt: skip
    return ["promote", "blown", "--results-dir", str(w.results)], expected


def _long_sweep_folder(w: Workspace) -> tuple[list[str], list[str]]:
    """A sweep made by an older raycifar with a name that fits a folder, but not its entry's files."""
    name = "n" * 240
    (w.results / "sweeps" / name / "trial_t1").mkdir(parents=True)
    return ["promote", name, "--results-dir", str(w.results)], ["sweep", "(240 characters)", "at most 236 characters"]


def _sweep(w: Workspace, *options: str) -> list[str]:
    return w.sweep(w.space(GOOD_SPACE), *options)


def _train(w: Workspace, *options: str) -> list[str]:
    return ["train", str(w.space(GOOD_SPACE)), "--data-dir", str(w.data), "--results-dir", str(w.results), *options]


Case = Callable[[Workspace], tuple[list[str], list[str]]]

NAME_CASES: dict[str, Case] = {
    "sweep --name of 300 characters": lambda w: (_sweep(w, "--name", "a" * 300), ["--name", "(300 characters)", "too long for a file name", "at most 236 characters"]),
    "sweep --name one over the entry's row file": lambda w: (_sweep(w, "--name", "b" * 237, "--wandb", "off"), ["(237 characters)", "leaderboard/rows", "at most 236 characters"]),
    "sweep --name over W&B's artifact name": lambda w: (_sweep(w, "--name", "c" * 150), ["--name", "W&B model artifact", "at most 122 characters", "--wandb off"]),
    "train --name with seeds": lambda w: (_train(w, "--name", "d" * 240, "--seeds", "2", "--wandb", "off"), ["--name", "(240 characters)", "too long for a file name", "at most 230 characters"]),
    "promote of a sweep whose entry would not fit": _long_sweep_folder,
}

DATA_CASES: dict[str, Case] = {
    "evaluate: recorded data folder gone": lambda w: (
        w.evaluate_entry(_entry_data_gone(w)), ["recorded data folder", str(w.tmp / "data-before"), "--data-dir"]),
    "train --from-entry: recorded data folder gone": lambda w: (
        ["train", "--from-entry", _entry_data_gone(w), "--results-dir", str(w.results)],
        ["recorded data folder", str(w.tmp / "data-before"), "--data-dir"]),
    "evaluate: --data-dir re-points to other data": lambda w: (
        w.evaluate_entry(_entry_data_gone(w), "--data-dir", str(w.cifar10("other", seed=7))),
        ["--data-dir", str(w.tmp / "other"), "not the data entry", "fingerprint"]),
    "report: --data-dir re-points to other data": lambda w: (
        ["report", _entry_data_gone(w), "--results-dir", str(w.results), "-o", str(w.tmp / "r.html"),
         "--data-dir", str(w.cifar10("other", seed=7))],
        ["--data-dir", str(w.tmp / "other"), "not the data entry", "fingerprint"]),
    "resume: recorded data folder gone": lambda w: (
        ["sweep", "--resume", _sweep_data_moved(w), "--results-dir", str(w.results)],
        ["sweep halted", "recorded data folder", str(w.tmp / "gone"), "--data-dir"]),
    "resume: --data-dir with other data": lambda w: (
        ["sweep", "--resume", _sweep_data_moved(w), "--results-dir", str(w.results),
         "--data-dir", str(w.cifar10("other", seed=5))],
        ["--data-dir", str(w.tmp / "other"), "not the data sweep halted was recorded with", "fingerprint"]),
    "sweep: data folder missing": lambda w: (
        w.sweep(w.space(GOOD_SPACE), data=w.tmp / "nowhere"), [str(w.tmp / "nowhere"), "--data-dir", "--download"]),
    "train: data folder missing": lambda w: (
        ["train", str(w.space(GOOD_SPACE)), "--data-dir", str(w.tmp / "nowhere"), "--results-dir", str(w.results)],
        [str(w.tmp / "nowhere"), "--data-dir"]),
    "resume of an ended sweep suggests --num-samples": lambda w: _ended_sweep(w),
}

PROMOTE_CASES: dict[str, Case] = {"every trial diverged, failed, stopped or lost its checkpoint": _diverged_sweep}


def _ended_sweep(w: Workspace) -> tuple[list[str], list[str]]:
    sweep = _resumable_sweep(w, w.data, "ended")
    SweepRecorder.reopen(sweep).ended("completed")
    return ["sweep", "--resume", "ended", "--results-dir", str(w.results)], ["already ended", "--num-samples"]


def _unreachable(w: Workspace) -> dict[str, list[str]]:
    port = free_port()
    return {
        "sweep": _sweep(w, "--address", f"127.0.0.1:{port}"),
        "sweep via Ray Client": _sweep(w, "--address", f"ray://127.0.0.1:{port}"),
        "train": _train(w, "--address", f"127.0.0.1:{port}"),
        "resume": ["sweep", "--resume", _resumable_sweep(w, w.data).name, "--results-dir", str(w.results), "--address", f"127.0.0.1:{port}"],
        "status (state API)": ["status", "--results-dir", str(w.results), "--address", f"http://127.0.0.1:{port}"],
        "logs (Jobs API)": ["logs", "some-sweep", "--address", f"http://127.0.0.1:{port}"],
    }


CONNECT_CASES = ["sweep", "sweep via Ray Client", "train", "resume", "status (state API)", "logs (Jobs API)"]


def _evaluate_entry(self: Workspace, entry: str, *options: str) -> list[str]:
    return ["evaluate", entry, "--results-dir", str(self.results), *options]


Workspace.evaluate_entry = _evaluate_entry  # type: ignore[attr-defined]


def run_case(w: Workspace, args: list[str], env: dict[str, str] | None = None) -> tuple[object, float, dict]:
    before = tree_digest(w.results)
    tmpdir = w.tmp / "tmpdir"
    tmpdir.mkdir(exist_ok=True)
    started = time.monotonic()
    result = run_cli_env(args, tmpdir, env or {})
    return result, time.monotonic() - started, before


def run_cli_env(args: list[str], tmpdir: Path, env: dict[str, str]):  # noqa: ANN201
    import os

    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        return run_cli(args, tmpdir)
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- the hints: every option named is the command's, every command line suggested parses --------------


def _command(args: list[str]) -> typer.main.click.Command:
    group = typer.main.get_command(app)
    return group.commands[args[0]]


def options_of(command) -> set[str]:  # noqa: ANN001
    return {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}


def check_hints(line: str, args: list[str]) -> None:
    """Every ``--option`` in ``line`` is one ``args``'s command has, and every ``raycifar ...``
    command line it suggests parses with the CLI (placeholders in capitals filled in)."""
    command = _command(args)
    named = set(re.findall(r"(?<![\w-])(--[a-z][a-z0-9-]*)", line))
    commands = typer.main.get_command(app).commands
    suggested = [text for text in re.findall(r"raycifar ([a-z]+(?: [^;,()]+)?)", line) if text.split()[0] in commands]
    for text in suggested:
        words = shlex.split(re.sub(r"\b[A-Z][A-Z_]+\b", "1", text))
        sub = _command(words)
        sub.make_context(words[0], words[1:], resilient_parsing=False)  # raises on an unknown option
        named -= {word.split("=")[0] for word in words if word.startswith("--")}
    unknown = named - options_of(command)
    assert not unknown, f"{line!r} names {unknown}, which `raycifar {args[0]}` does not have"


@pytest.mark.parametrize("case", [*NAME_CASES, *DATA_CASES, *PROMOTE_CASES])
def test_bad_input_is_one_line_exit_2_changing_nothing(case: str, workspace: Workspace) -> None:
    build = {**NAME_CASES, **DATA_CASES, **PROMOTE_CASES}[case]
    args, expected = build(workspace)
    result, seconds, before = run_case(workspace, args)
    line = check_one_line(result, before, workspace.results, expected)
    check_hints(line, args)
    assert seconds < 10 + SLACK_S


@pytest.mark.parametrize("case", CONNECT_CASES)
def test_an_unreachable_address_is_one_line_within_the_timeout(case: str, workspace: Workspace) -> None:
    args = _unreachable(workspace)[case]
    env = {"RAYCIFAR_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S)}
    result, seconds, before = run_case(workspace, args, env)
    line = check_one_line(result, before, workspace.results, ["--address", "127.0.0.1:", "RAYCIFAR_CONNECT_TIMEOUT_S"])
    check_hints(line, args)
    assert seconds < CONNECT_TIMEOUT_S + 5 + SLACK_S


def test_a_bad_connect_timeout_is_one_line(workspace: Workspace) -> None:
    args = _sweep(workspace, "--address", f"127.0.0.1:{free_port()}")
    result, _, before = run_case(workspace, args, {"RAYCIFAR_CONNECT_TIMEOUT_S": "soon"})
    check_one_line(result, before, workspace.results, ["RAYCIFAR_CONNECT_TIMEOUT_S='soon'", "seconds"])


def test_a_silent_address_times_out_as_told(workspace: Workspace) -> None:
    """A port that takes the connection but never answers (a listener that never accepts):
    one line within the timeout plus 5 s, nothing written."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        port = server.getsockname()[1]
        args = _sweep(workspace, "--address", f"127.0.0.1:{port}")
        result, seconds, before = run_case(workspace, args, {"RAYCIFAR_CONNECT_TIMEOUT_S": str(CONNECT_TIMEOUT_S)})
    expected = [f"--address 127.0.0.1:{port}: the cluster did not answer within {CONNECT_TIMEOUT_S} s", "RAYCIFAR_CONNECT_TIMEOUT_S"]
    check_one_line(result, before, workspace.results, expected)
    assert seconds < CONNECT_TIMEOUT_S + 5 + SLACK_S


def test_an_address_that_answers_but_not_as_ray_is_one_line(tmp_path: Path) -> None:
    import threading

    from raycifar.cluster.session import check_reachable

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        port = server.getsockname()[1]

        def answer() -> None:
            for _ in range(2):
                connection, _ = server.accept()
                with connection:
                    connection.sendall(b"SSH-2.0-OpenSSH_9.6\r\n" + bytes(16))

        threading.Thread(target=answer, daemon=True).start()
        with pytest.raises(UserError, match=rf"--address 127.0.0.1:{port}: something answers .* but not as a Ray cluster"):
            check_reachable(f"127.0.0.1:{port}")
        with pytest.raises(UserError, match=rf"--address http://127.0.0.1:{port}: something answers .* but not as a Ray dashboard"):
            check_reachable(f"http://127.0.0.1:{port}")


# --- 11b: one sweep folder per command ------------------------------------------------------------------


def _claim(results: str, barrier, queue) -> None:  # noqa: ANN001
    from raycifar.pipeline.preflight import claim_sweep_dir

    barrier.wait()
    try:
        claim_sweep_dir(Path(results), "same")
        queue.put("claimed")
    except UserError as err:
        queue.put(str(err))


def test_commands_started_at_once_never_share_a_sweep_folder(tmp_path: Path) -> None:
    context = multiprocessing.get_context("fork")
    barrier, queue = context.Barrier(6), context.Queue()
    processes = [context.Process(target=_claim, args=(str(tmp_path / "results"), barrier, queue)) for _ in range(6)]
    for process in processes:
        process.start()
    answers = [queue.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert answers.count("claimed") == 1, answers
    assert all("a sweep named 'same' already exists" in a for a in answers if a != "claimed")


def test_a_sweep_held_by_one_command_is_refused_to_another(tmp_path: Path) -> None:
    from raycifar.pipeline.preflight import holding_sweep

    folder = tmp_path / "sweeps" / "held"
    folder.mkdir(parents=True)
    context = multiprocessing.get_context("fork")
    with holding_sweep(folder):
        child = context.Process(target=_hold, args=(str(folder),))
        child.start()
        child.join(timeout=60)
        assert child.exitcode == 3  # refused while held
    child = context.Process(target=_hold, args=(str(folder),))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 0  # free again


def _hold(folder: str) -> None:
    import sys

    from raycifar.pipeline.preflight import holding_sweep

    try:
        with holding_sweep(Path(folder)):
            pass
    except UserError as err:
        sys.exit(3 if "being run by another raycifar" in str(err) else 4)


# --- 5: the re-pointed evaluate gives the recorded result -------------------------------------------------


def test_evaluate_re_points_a_moved_data_folder_by_its_fingerprint(workspace: Workspace) -> None:
    w = workspace
    data = w.cifar10("data-before")
    entry = _entry_on_data(w, data)
    recorded = json.loads(next((w.results / "leaderboard").glob(f"{entry}/data.json")).read_text())
    moved = w.tmp / "data-after"
    shutil.move(data, moved)
    result = run_cli(w.evaluate_entry(entry, "--data-dir", str(moved), "--format", "json"), w.tmp)
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["matches_recorded"] and scores["n"] == 50
    (line,) = result.stderr.splitlines()
    assert f"entry {entry}: data folder {data} re-pointed to {moved}" in line
    assert f"same fingerprint {recorded['fingerprint']}" in line


def test_an_entry_recorded_before_fingerprints_is_re_pointed_on_matching_data(workspace: Workspace) -> None:
    w = workspace
    data = w.cifar10("data-before")
    entry = _entry_on_data(w, data)
    data_file = w.results / "leaderboard" / entry / "data.json"
    fingerprint = json.loads(data_file.read_text())["fingerprint"]
    data_file.unlink()  # as an entry of an older raycifar has it
    moved = w.tmp / "data-after"
    shutil.move(data, moved)
    result = run_cli(w.evaluate_entry(entry, "--data-dir", str(moved), "--format", "json"), w.tmp)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["matches_recorded"]
    (line,) = result.stderr.splitlines()
    assert "could not be verified" in line and f"its fingerprint {fingerprint} is recorded now" in line
    assert json.loads(data_file.read_text()) == {"data_dir": str(moved), "fingerprint": fingerprint}
    other = write_cifar10(w.tmp / "other", train_batches=1, per_batch=100, test=50, seed=3)
    refused = run_cli(w.evaluate_entry(entry, "--data-dir", str(other)), w.tmp)  # now checked by the fingerprint
    assert refused.returncode == 2 and "not the data entry" in refused.stderr


# --- 8: torn tails cut back to the last whole record, nothing else changed -----------------------------

WHOLE_JSON = b'{"op_code": 0, "study": "s"}\n{"op_code": 4, "trial_id": 0}\n'
TEARS = {  # case -> (file in the sweep folder, whole records, torn tail)
    "journal cut mid-record": ("search/study.journal", WHOLE_JSON, b'{"op_code": 8, "trial_id": 0, "user_a'),
    "journal cut, then a newline": ("search/study.journal", WHOLE_JSON, b'{"op_code": 8, "tri\n'),
    "result.json cut mid-epoch": ("trial_t1/result.json", b'{"epoch": 1, "val_acc": 0.5}\n', b'{"epoch": 2, "val_acc": 0.'),
    "progress.csv cut mid-row": ("trial_t1/progress.csv", b"epoch,val_acc\n1,0.5\n", b"2,0.6"),
    "timeline.jsonl cut": ("timeline.jsonl", b'{"mark": "ray_up"}\n', b'{"mark": "sw'),
}


@pytest.mark.parametrize("case", list(TEARS))
def test_a_torn_tail_is_cut_to_the_last_whole_record_and_nothing_else_changes(case: str, tmp_path: Path) -> None:
    from raycifar.results.torn import find_torn, repair

    name, whole, torn = TEARS[case]
    sweep = tmp_path / "sweeps" / "s"
    (sweep / "search").mkdir(parents=True)
    (sweep / "trial_t1").mkdir()
    (sweep / "trial_t2").mkdir()
    (sweep / "trial_t2" / "result.json").write_bytes(b'{"epoch": 1, "val_acc": 0.4}\n')  # whole: left alone
    (sweep / name).write_bytes(whole + torn)
    before = tree_digest(tmp_path)
    (found,) = find_torn(sweep)
    assert tree_digest(tmp_path) == before  # finding reads only
    records = len(whole.splitlines())
    assert found.line().startswith(f"{sweep / name}: its last record was cut short")
    assert f"dropped its {len(torn)} bytes" in found.line() and f"kept the {records} whole records" in found.line()
    repair(found)
    assert (sweep / name).read_bytes() == whole
    after = tree_digest(tmp_path)
    changed = {path for path in before if before[path] != after.get(path)}
    assert changed == {str((sweep / name).relative_to(tmp_path))}
    assert find_torn(sweep) == []


def test_a_damaged_record_before_the_last_is_refused_not_cut(tmp_path: Path) -> None:
    from raycifar.results.torn import find_torn

    journal = tmp_path / "search" / "study.journal"
    journal.parent.mkdir(parents=True)
    journal.write_bytes(b'{"op_code": 0}\n{"op_co{"op_code": 1}\n{"op_code": 2}\n')
    with pytest.raises(UserError, match=rf"{journal}: line 2 is not a whole record"):
        find_torn(tmp_path)
