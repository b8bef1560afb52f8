"""Narrow terminals (issue 26, kind 7): at 80 and 60 columns the tables of ``leaderboard`` and
``status`` never cut an identifier or a number; they drop less important columns (and say
which), or print one ``column: value`` block per row; ``--format json|csv`` is whole at any width."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from board_files import plain_row
from report_files import trial_config
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.cli.common import console
from raycifar.results.leaderboard import write_row
from raycifar.results.sweep_record import SweepRecorder

LONG_SWEEP = "laptop_smoke_cifar10_resnet_with_a_long_name"
IDS = ("laptop_smoke-3f9a", f"{LONG_SWEEP}-beef", "x" * 70 + "-0a1b")  # the last is wider than 60 columns
ACCS = (0.712345, 0.6543, 0.5)


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A leaderboard of three entries and a promoted sweep with three trials, one of them
    still running, written in the results layout."""
    results = tmp_path_factory.mktemp("narrow")
    for entry_id, acc in zip(IDS, ACCS, strict=True):
        write_row(results, plain_row(entry_id, acc, sweep=LONG_SWEEP, model="resnet20-w16-se-long-model-name",
                                     params=12_345_678, test_acc_tta=acc + 0.01))  # fmt: skip
    moment = datetime.now(timezone.utc)
    recorder = SweepRecorder.start(results / "sweeps" / LONG_SWEEP, LONG_SWEEP, "tiny", 3, now=lambda: moment)
    for i, accs in enumerate(([0.31, 0.7712345], [0.6], [0.1234])):
        trial_id = f"trial_with_a_long_id_{i:05d}"
        folder = results / "sweeps" / LONG_SWEEP / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        config = trial_config(results, 1_234_567, (16,), 0.1)
        (folder / "params.json").write_text(json.dumps(config))
        lines = [{"epoch": e, "val_acc": a, "trial_id": trial_id} for e, a in enumerate(accs, 1)]
        (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        recorder.trial_started(trial_id, config, model="resnet")
        if i < 2:
            recorder.trial_ended(trial_id, "finished")
    recorder.ended("completed")
    recorder.promoted(IDS[1])
    return results


def shown(width: int, monkeypatch: pytest.MonkeyPatch, *args: str) -> str:
    monkeypatch.setattr(console, "width", width)
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def _whole(output: str, values: list[str], width: int) -> None:
    assert "…" not in output, output
    for value in values:
        assert value in output, f"{value!r} cut or missing at {width} columns:\n{output}"
    if not any(line.startswith(("entry_id: ", "sweep: ", "trial: ")) for line in output.splitlines()):
        assert max(map(len, output.splitlines())) <= width, output  # a table: it fits


# command -> (the values that must be shown whole: from the JSON output of the same command)
def board_values(results: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    rows = json.loads(shown(200, monkeypatch, "leaderboard", "--results-dir", str(results), "--format", "json"))
    return [r["entry_id"] for r in rows] + [f"{r['test_acc']:.4f}" for r in rows]


def sweep_values(results: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    (sweep,) = json.loads(shown(200, monkeypatch, "status", "--results-dir", str(results), "--format", "json"))[
        "sweeps"
    ]
    return [sweep["name"], sweep["promoted_entry"], f"{sweep['best_val_acc']:.4f}"]


def trial_values(results: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    data = json.loads(
        shown(200, monkeypatch, "status", "--results-dir", str(results), "--sweep", LONG_SWEEP, "--format", "json")
    )
    trials = data["sweeps"][0]["trials"]
    return [t["trial_id"] for t in trials] + [f"{t['best_val_acc']:.4f}" for t in trials]


def entry_values(results: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    row = json.loads(
        shown(200, monkeypatch, "leaderboard", "show", IDS[1], "--results-dir", str(results), "--format", "json")
    )
    return [row["entry_id"], row["sweep"], f"{row['test_acc']:.4f}", f"{row['params']:,}"]


CASES = {
    "leaderboard": (("leaderboard",), board_values),
    "leaderboard show": (("leaderboard", "show", IDS[1]), entry_values),
    "status": (("status",), sweep_values),
    "status --sweep": (("status", "--sweep", LONG_SWEEP), trial_values),
}


@pytest.mark.parametrize("width", [80, 60])
@pytest.mark.parametrize("case", CASES)
def test_ids_and_numbers_are_never_cut(results: Path, monkeypatch: pytest.MonkeyPatch, case: str, width: int) -> None:
    args, values = CASES[case]
    output = shown(width, monkeypatch, *args, "--results-dir", str(results))
    _whole(output, values(results, monkeypatch), width)


def test_a_narrow_leaderboard_drops_the_least_important_columns_and_says_so(
    results: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write = tuple(results.glob("leaderboard/rows/*.parquet"))
    assert len(write) == 3
    wide = shown(200, monkeypatch, "leaderboard", "--results-dir", str(results))
    assert "epochs" in wide and "not shown" not in wide
    top = shown(60, monkeypatch, "leaderboard", "--results-dir", str(results), "--top", "1")
    assert "test_acc" in top and "epochs" not in top.split("not shown")[0]
    assert "not shown in this terminal's width: epochs, tta" in " ".join(top.split())


@pytest.mark.parametrize("output_format", ["json", "csv"])
def test_json_and_csv_are_whole_at_any_width(
    results: Path, monkeypatch: pytest.MonkeyPatch, output_format: str
) -> None:
    def rows(width: int) -> list[dict]:
        text = shown(width, monkeypatch, "leaderboard", "--results-dir", str(results), "--format", output_format)
        return json.loads(text) if output_format == "json" else list(csv.DictReader(io.StringIO(text)))

    assert rows(40) == rows(200) and {r["entry_id"] for r in rows(40)} == set(IDS)


def test_the_terminal_width_comes_from_COLUMNS(results: Path) -> None:
    env = {**os.environ, "COLUMNS": "60"}
    run = subprocess.run([sys.executable, "-m", "raycifar", "leaderboard", "--results-dir", str(results)],
                         capture_output=True, text=True, env=env, timeout=120)  # fmt: skip
    assert run.returncode == 0, run.stderr
    _whole(run.stdout, [*IDS, "0.7123", "0.6543", "0.5000"], 60)
