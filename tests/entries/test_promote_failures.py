"""Promotion errors after a sweep: a full disk, a file where a folder should be, the
leaderboard lock held by another process. Each is caused for real (CI runs as root, so
permission bits would not stop a write): a patched write raising ENOSPC, a file put in the
way, a held lock. Each must end in one line naming what to do, leave nothing of the attempt
behind, and let ``raycifar promote`` finish the job afterwards. No Ray is started."""

from __future__ import annotations

import errno
import os
import re
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from board_files import plain_row
from filelock import FileLock
from test_from_sweep import write_sweep
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.entries.evaluate import LabelledPredictions
from raycifar.entries.from_sweep import promote_sweep
from raycifar.errors import PromotionFailed, RunFailed
from raycifar.results import leaderboard
from raycifar.results.layout import ENTRIES_DIR, entry_dir
from raycifar.results.leaderboard import LOCK_FILE, read_table, rows_dir, table_path
from raycifar.results.leaderboard_schema import LEGACY_SCHEMA
from raycifar.results.sweep_record import SweepRecorder, read_record
from raycifar.sweep.outcome import SweepOutcome

NO_SPACE = os.strerror(errno.ENOSPC)


def completed_sweep(results: Path, cifar_dir: Path) -> Path:
    """Sweep ``s`` (trials t1, t2, t3 as in test_promote_sweep; best: t1 epoch 2) whose
    record says it ended ``completed``, as the driver leaves it before promoting."""
    sweep = write_sweep(results, cifar_dir)
    SweepRecorder.start(sweep, "s", "tiny", planned_trials=3).ended("completed")
    return sweep


def leftovers(results: Path) -> list[str]:
    """Everything under ``leaderboard/`` but the ``rows`` folder itself: entry folders,
    staging folders, row files and their temp files."""
    board = results / ENTRIES_DIR
    if not board.is_dir():
        return []
    found = [p.name for p in board.iterdir() if p.name != leaderboard.ROWS_DIR]
    rows = rows_dir(results)
    return sorted(found + ([f"rows/{p.name}" for p in rows.iterdir()] if rows.is_dir() else []))


def assert_not_promoted(results: Path, sweep: Path) -> None:
    """Nothing of the attempt is left, and the record says: completed, not promoted."""
    assert leftovers(results) == []
    assert read_table(results) == []
    record = read_record(sweep)
    assert (record.outcome, record.promoted_entry) == ("completed", None)


def assert_promoted_once(results: Path, sweep: Path) -> None:
    """One row, its entry folder, no staging or temp file; the record names the entry."""
    (row,) = read_table(results)
    entry = row["entry_id"]
    assert leftovers(results) == sorted([entry, f"rows/{entry}.parquet"])
    assert (entry_dir(results, entry) / "predictions.npz").is_file()
    assert read_record(sweep).promoted_entry == entry
    assert (row["trial_id"], row["epochs"]) == ("t1", 2)


def promote_on_the_cli(results: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["promote", "s", "--results-dir", str(results)])
    return result.exit_code, result.output


def fake_sweep_run(monkeypatch: pytest.MonkeyPatch, results: Path, cifar_dir: Path) -> Path:
    """Stand in for Ray in :func:`raycifar.pipeline.sweep_job.run_and_promote`: the sweep "runs" by writing
    sweep ``s``'s files and a completed record, and reports t1's epoch 2 as its best."""
    from raycifar.cluster import session as ray_session
    from raycifar.pipeline import sweep_job
    from raycifar.sweep import driver as sweep

    sweep_dir = results / "sweeps" / "s"
    best = sweep_dir / "train_runs" / "t1" / "checkpoint_2"

    def run_sweep(*args: object) -> SweepOutcome:
        completed_sweep(results, cifar_dir)
        return SweepOutcome(
            best_trial_id="t1", best_val_acc=0.7, best_epoch=2, best_checkpoint=str(best), trials=3,
            stopped_early=0, failed=1, diverged=0, wall_seconds=30.0, out_of_time=False, problems=(),
        )  # fmt: skip

    monkeypatch.setattr(sweep, "run_sweep", run_sweep)
    monkeypatch.setattr(sweep_job, "connect_ray", lambda *args: None)
    monkeypatch.setattr(sweep_job, "_plan", lambda *args: SimpleNamespace(search=SimpleNamespace(infeasible=0)))
    monkeypatch.setattr(ray_session, "disconnect", lambda: None)
    return sweep_dir


def test_a_full_disk_after_the_sweep_is_one_line_and_raycifar_promote_finishes_it(
    tmp_path: Path, cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from raycifar.display import Quiet
    from raycifar.pipeline import sweep_job as pipeline

    results = tmp_path / "results"
    sweep_dir = fake_sweep_run(monkeypatch, results, cifar_dir)
    real_write = pq.write_table

    def full_disk(table: pa.Table, where: object, **kwargs: object) -> None:
        where.write(b"PAR1 half a row")  # the disk fills up part way through the row file
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(pq, "write_table", full_disk)
    request = pipeline.SweepRequest(space="tiny", data_dir=cifar_dir, results_dir=results, wandb="off")
    space = SimpleNamespace(spec=SimpleNamespace(scheduler=SimpleNamespace(name="fifo"), dataset="cifar10", label_mode="fine"))
    with pytest.raises(PromotionFailed) as caught:
        pipeline.run_and_promote(request, "s", space, 3, 2, 0.0, Quiet())
    (row_file,) = re.findall(r"writing (\S+);", str(caught.value))
    assert str(caught.value) == (
        f"promotion of sweep s failed: no space left on device writing {row_file}; free space, "
        f"then run: raycifar promote s --results-dir {results}"
    )
    assert re.fullmatch(rf"{re.escape(str(rows_dir(results)))}/s-[0-9a-f]{{4}}\.parquet", row_file)
    assert isinstance(caught.value, RunFailed), "the CLI exits 1"
    assert_not_promoted(results, sweep_dir)

    monkeypatch.setattr(pq, "write_table", real_write)  # space freed
    code, output = promote_on_the_cli(results)
    assert code == 0, output
    assert_promoted_once(results, sweep_dir)


def test_a_full_disk_while_staging_the_entry_leaves_no_folder(
    tmp_path: Path, cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    sweep = completed_sweep(results, cifar_dir)
    real_save = LabelledPredictions.save

    def full_disk(self: LabelledPredictions, path: Path) -> None:
        Path(path).write_bytes(b"PK\x03\x04 half an archive")
        raise OSError(errno.ENOSPC, NO_SPACE)

    monkeypatch.setattr(LabelledPredictions, "save", full_disk)
    code, output = promote_on_the_cli(results)
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert re.fullmatch(
        rf"error: promotion of sweep s failed: no space left on device writing "
        rf"{re.escape(str(results / ENTRIES_DIR))}/s-[0-9a-f]{{4}}/predictions\.npz; free space, "
        rf"then run: raycifar promote s --results-dir {re.escape(str(results))}",
        " ".join(output.split()),
    ), output
    assert_not_promoted(results, sweep)

    monkeypatch.setattr(LabelledPredictions, "save", real_save)
    assert promote_on_the_cli(results)[0] == 0
    assert_promoted_once(results, sweep)


def test_a_file_where_the_rows_folder_should_be_is_named(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    sweep = completed_sweep(results, cifar_dir)
    blocker = rows_dir(results)
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    code, output = promote_on_the_cli(results)
    assert code == 1 and len(output.strip().splitlines()) == 1, output
    assert " ".join(output.split()) == (
        f"error: promotion of sweep s failed: {blocker} is a file where a folder is expected; move it away, "
        f"then run: raycifar promote s --results-dir {results}"
    )
    assert sorted(p.name for p in blocker.parent.iterdir()) == ["rows"], "the entry folder was removed again"
    assert blocker.read_text() == "not a folder", "what was there before is left alone"
    assert read_record(sweep).promoted_entry is None

    blocker.rename(tmp_path / "moved-away")
    assert promote_on_the_cli(results)[0] == 0
    assert_promoted_once(results, sweep)


def test_a_held_leaderboard_lock_times_out_into_one_line(
    tmp_path: Path, cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    sweep = completed_sweep(results, cifar_dir)
    old = plain_row("old-1", 0.6)
    pq.write_table(  # an older raycifar's single-file table: importing it takes the lock
        pa.Table.from_pylist([{name: old.get(name) for name in LEGACY_SCHEMA.names}], schema=LEGACY_SCHEMA),
        table_path(results),
    )  # fmt: skip
    monkeypatch.setattr(leaderboard, "LOCK_TIMEOUT_S", 0.2)
    lock = results / LOCK_FILE
    with FileLock(lock):  # another raycifar process holds it
        with pytest.raises(PromotionFailed) as caught:
            promote_sweep(results, "s")
    assert str(caught.value) == (
        f"promotion of sweep s failed: the leaderboard lock {lock} stayed held by another raycifar process "
        "for 0.2 s; wait until that process has finished (delete the lock file only if no raycifar is running), "
        f"then run: raycifar promote s --results-dir {results}"
    )
    assert leftovers(results) == [] and table_path(results).is_file()
    assert read_record(sweep).promoted_entry is None

    row, _ = promote_sweep(results, "s")
    assert sorted(r["entry_id"] for r in read_table(results)) == sorted(["old-1", row["entry_id"]])
    assert read_record(sweep).promoted_entry == row["entry_id"]


def test_a_trial_promotion_names_its_own_command(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    completed_sweep(results, cifar_dir)
    (results / ENTRIES_DIR).write_text("not a folder")
    result = CliRunner().invoke(app, ["promote", "s", "--results-dir", str(results), "--trial", "t2"])
    assert result.exit_code == 1, result.output
    assert " ".join(result.output.split()).endswith(
        f"{results / ENTRIES_DIR} is a file where a folder is expected; move it away, "
        f"then run: raycifar promote s --results-dir {results} --trial t2"
    )
