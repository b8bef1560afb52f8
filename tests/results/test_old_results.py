"""A results folder written by raycifar before its packages (commit 0715e07, in
``../shared/fixtures/results-0715e07``) is read, promoted, reported and resumed by today's
code: status, leaderboard, evaluate, promote, report, and ``--resume`` of its interrupted
sweep (whose Tune state pickled the old class paths).

The fixture is copied to a temporary folder first; it is never written, nor regenerated.
Its sweeps recorded the data folder ``/tmp/rc-fixture/data/cifar10``, the space file
``/tmp/rc-fixture/micro.yaml`` and, in their pickled Tune state, the results folder
``/tmp/rc-fixture/results``: these paths are made to point at the shared CIFAR-10 subset, at
``micro_space.yaml`` and at a copy while the tests run (a link, and copies).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from conftest import REPO, SHARED_CIFAR10

FIXTURE = REPO.parent / "shared" / "fixtures" / "results-0715e07"
RECORDED = Path("/tmp/rc-fixture")
RECORDED_DATA, RECORDED_SPACE = RECORDED / "data" / "cifar10", RECORDED / "micro.yaml"
RECORDED_RESULTS = RECORDED / "results"
MICRO_SPACE = Path(__file__).with_name("micro_space.yaml")

pytestmark = pytest.mark.skipif(not FIXTURE.is_dir(), reason=f"the old-results fixture is not at {FIXTURE}")


@pytest.fixture
def old_results(tmp_path: Path) -> Path:
    """A copy of the fixture's results folder."""
    copy = tmp_path / "results"
    shutil.copytree(FIXTURE, copy, symlinks=True)
    return copy


@pytest.fixture
def recorded_paths() -> Iterator[None]:
    """The data folder and space file the fixture recorded, pointed at the shared subset and
    at micro_space.yaml; what was created is removed afterwards."""
    if not SHARED_CIFAR10.is_dir():
        pytest.skip(f"the real CIFAR-10 subset is not at {SHARED_CIFAR10}")
    created = []
    RECORDED_DATA.parent.mkdir(parents=True, exist_ok=True)
    if not RECORDED_DATA.exists():
        RECORDED_DATA.symlink_to(SHARED_CIFAR10.resolve(), target_is_directory=True)
        created.append(RECORDED_DATA)
    if not RECORDED_SPACE.exists():
        shutil.copy(MICRO_SPACE, RECORDED_SPACE)
        created.append(RECORDED_SPACE)
    yield
    for path in created:
        path.unlink(missing_ok=True)


@pytest.fixture
def recorded_results(recorded_paths: None) -> Iterator[Path]:
    """A copy of the fixture at the results folder path its sweeps pickled (Tune's restored
    callbacks find their driver by that path), removed afterwards."""
    if RECORDED_RESULTS.exists() or RECORDED_RESULTS.is_symlink():
        pytest.skip(f"{RECORDED_RESULTS} is in use")
    shutil.copytree(FIXTURE, RECORDED_RESULTS, symlinks=True)
    yield RECORDED_RESULTS
    shutil.rmtree(RECORDED_RESULTS, ignore_errors=True)


def row_files(results: Path) -> dict[str, dict]:
    """The leaderboard rows as pyarrow reads the row files, by entry id."""
    rows = [r for f in sorted((results / "leaderboard" / "rows").glob("*.parquet")) for r in pq.read_table(f).to_pylist()]
    return {row["entry_id"]: row for row in rows}


def best_val_acc(sweep_dir: Path) -> float:
    """The best val_acc any trial of the sweep reported, read from its result.json files."""
    scores = [
        json.loads(line)["val_acc"]
        for result in sweep_dir.glob("trial_*/result.json")
        for line in result.read_text().splitlines()
        if line.strip()
    ]
    return max(scores)


def test_status_reads_every_old_sweep(old_results: Path, raycifar) -> None:
    shown = json.loads(raycifar("status", "--results-dir", str(old_results), "--format", "json", cwd=old_results).stdout)
    sweeps = {s["name"]: s for s in shown["sweeps"]}
    assert set(sweeps) == {"finished", "interrupted", "resumed"}
    assert (sweeps["finished"]["state"], sweeps["finished"]["promoted_entry"]) == ("promoted", "finished-a671")
    assert (sweeps["resumed"]["state"], sweeps["resumed"]["promoted_entry"]) == ("promoted", "resumed-533f")
    assert sweeps["interrupted"]["state"] == "interrupted" and sweeps["interrupted"]["resumable"]
    assert sweeps["interrupted"]["counts"] == {"finished": 2, "pending": 1}
    assert sweeps["finished"]["counts"] == {"finished": 4}  # 3, then extended by 1
    for name, sweep in sweeps.items():
        assert sweep["best_val_acc"] == pytest.approx(best_val_acc(old_results / "sweeps" / name))
    table = raycifar("status", "--results-dir", str(old_results), cwd=old_results).stdout
    assert "interrupted at 05:39, 2 of 3 trials finished" in table
    assert "raycifar sweep --resume interrupted" in table


def test_the_leaderboard_lists_the_old_rows(old_results: Path, raycifar) -> None:
    listed = json.loads(raycifar("leaderboard", "--results-dir", str(old_results), "--format", "json", cwd=old_results).stdout)
    files = row_files(old_results)
    assert {row["entry_id"] for row in listed} == set(files) == {"finished-a671", "resumed-533f"}
    for row in listed:
        assert row["test_acc"] == files[row["entry_id"]]["test_acc"]
        assert row["val_acc"] == files[row["entry_id"]]["val_acc"]


def test_evaluate_gives_the_promoted_test_accuracy_again(old_results: Path, recorded_paths: None, raycifar) -> None:
    for entry in ("finished-a671", "resumed-533f"):
        scored = json.loads(
            raycifar("evaluate", entry, "--results-dir", str(old_results), "--format", "json", cwd=old_results).stdout
        )
        assert scored["test_acc"] == row_files(old_results)[entry]["test_acc"]


def test_promote_takes_the_best_epoch_of_the_interrupted_sweep(
    old_results: Path, recorded_paths: None, raycifar
) -> None:
    before = set(row_files(old_results))
    raycifar("promote", "interrupted", "--results-dir", str(old_results), cwd=old_results)
    rows = row_files(old_results)
    (new,) = set(rows) - before
    assert rows[new]["sweep"] == "interrupted"
    assert rows[new]["val_acc"] == pytest.approx(best_val_acc(old_results / "sweeps" / "interrupted"))
    assert (old_results / "leaderboard" / new / "model.safetensors").is_file()


def test_report_of_an_old_sweep(old_results: Path, recorded_paths: None, raycifar) -> None:
    page_file = old_results / "finished.html"
    raycifar("report", "finished", "--results-dir", str(old_results), "-o", str(page_file), cwd=old_results, timeout=300)
    page = page_file.read_text()
    for section in ("Learning curves", "Promoted model", "finished-a671"):
        assert section in page


@pytest.mark.slow
def test_the_interrupted_old_sweep_resumes_to_the_end(recorded_results: Path, ray_address: str, raycifar) -> None:
    old_results = recorded_results
    sweep_dir = old_results / "sweeps" / "interrupted"
    finished = {t: (sweep_dir / f"trial_{t}" / "result.json").read_text() for t in ("54c2b94f", "c4f6bc33")}
    resumed = raycifar("sweep", "--resume", "interrupted", "--results-dir", str(old_results), "--address", ray_address,
                       cwd=old_results, timeout=600)  # fmt: skip
    assert "promoted to the leaderboard" in resumed.stdout, resumed.stdout[-2000:]
    record = json.loads((sweep_dir / "sweep_record.json").read_text())
    assert record["outcome"] == "completed" and len(record["trials"]) == 3
    assert all(t["state"] == "finished" for t in record["trials"].values()), record["trials"]
    for trial, text in finished.items():  # the trials that had ended are kept as they were, not run again
        assert (sweep_dir / f"trial_{trial}" / "result.json").read_text() == text
    rows = row_files(old_results)
    assert record["promoted_entry"] in rows and rows[record["promoted_entry"]]["sweep"] == "interrupted"
    assert rows[record["promoted_entry"]]["val_acc"] == pytest.approx(best_val_acc(sweep_dir))
