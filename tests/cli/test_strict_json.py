"""Every ``--format json`` output is standard JSON whatever the files hold (issue 26, kind
11c): NaN and infinities in row files and result files become ``null``, control characters
are escaped, text that is not JSON stays a string, and file names that are not UTF-8 are
written ``\\xNN``. The output is parsed with a parser that refuses NaN and Infinity."""

from __future__ import annotations

import json
import math
import os
from datetime import datetime, timezone
from pathlib import Path

import pytest
from board_files import plain_row
from report_files import trial_config
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.results.leaderboard import write_row
from raycifar.results.sweep_record import SweepRecorder

NAN, INF = float("nan"), float("inf")
ODD = "odd \x00\x1b[31m text\u2028with a line separator"
TRIAL = os.fsdecode(b"caf\xe9")  # a trial folder whose name is not UTF-8


def strict(text: str) -> object:
    return json.loads(text, parse_constant=lambda token: pytest.fail(f"bare {token} in the JSON output"))


@pytest.fixture(scope="module")
def results(tmp_path_factory: pytest.TempPathFactory) -> Path:
    results = tmp_path_factory.mktemp("strict")
    write_row(results, plain_row("nan-row", NAN, val_acc=INF, test_acc_ci_low=-INF, extra_test_acc={"ood": NAN},
                                 model=ODD, config_json="{not json " + ODD))  # fmt: skip
    write_row(results, plain_row("fine-row", 0.5))
    moment = datetime.now(timezone.utc)
    recorder = SweepRecorder.start(results / "sweeps" / "s", "s", "tiny", 2, now=lambda: moment)
    for trial_id, accs in ((TRIAL, [NAN, INF]), ("ok", [0.25, -INF])):
        folder = results / "sweeps" / "s" / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        (folder / "params.json").write_text(json.dumps(trial_config(results, 1000, (8,), 0.1)))
        lines = [{"epoch": e, "val_acc": a, "trial_id": trial_id} for e, a in enumerate(accs, 1)]
        (folder / "result.json").write_bytes(b"".join(os.fsencode(json.dumps(line)) + b"\n" for line in lines))
    recorder.ended("completed")
    return results


def _board(output: object) -> dict:
    return {row["entry_id"]: row for row in output}


CASES = {  # command -> (arguments, check of the parsed output)
    "leaderboard": (
        ("leaderboard",),
        lambda out: (row := _board(out)["nan-row"])["test_acc"] is None and row["val_acc"] is None
        and row["test_acc_ci_low"] is None and row["extra_test_acc"] == {"ood": None} and row["model"] == ODD,
    ),
    "leaderboard show": (
        ("leaderboard", "show", "nan-row"),
        lambda out: out["test_acc"] is None and out["config"] == "{not json " + ODD,
    ),
    "status": (
        ("status",),
        lambda out: {t["trial_id"] for t in out["sweeps"][0]["trials"]} == {"caf\\xe9", "ok"}
        and all(t["val_acc"] is None or math.isfinite(t["val_acc"]) for t in out["sweeps"][0]["trials"]),
    ),
    "status --sweep": (("status", "--sweep", "s"), lambda out: out["sweeps"][0]["name"] == "s"),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES)
def test_json_output_is_standard_json_whatever_the_files_hold(results: Path, case: str) -> None:
    args, check = CASES[case]
    result = CliRunner().invoke(app, [*args, "--results-dir", str(results), "--format", "json"])
    assert result.exit_code == 0, result.output
    assert "Traceback" not in result.output
    assert check(strict(result.stdout)), result.stdout


def test_csv_cells_hold_json_objects_as_standard_json(results: Path) -> None:
    import csv
    import io

    result = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results), "--format", "csv"])
    assert result.exit_code == 0, result.output
    rows = {r["entry_id"]: r for r in csv.DictReader(io.StringIO(result.stdout))}
    assert strict(rows["nan-row"]["extra_test_acc"]) == {"ood": None}
