"""Promotion and the leaderboard's storage: one Parquet row file per entry, read as one
dataset by pyarrow, pandas and DuckDB; concurrent promotions; damaged files; the import of
the single-file table of older raycifars (no Ray needed)."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from board_files import exported_checkpoint, plain_row, promote_in_child
from loader_refs import hand_counted_accuracy

from raycifar.data import read_part
from raycifar.entries.evaluate import evaluate_on_test
from raycifar.entries.metrics import load_predictions, wilson_interval
from raycifar.entries.promote import promote
from raycifar.errors import UserError
from raycifar.results.layout import entry_dir
from raycifar.results.leaderboard import find_entry, read_table, row_path, rows_dir, table_path, write_row
from raycifar.results.leaderboard_schema import COLUMNS, LEGACY_SCHEMA, SCHEMA


def promote_once(checkpoint: Path, results: Path, sweep: str = "s1", **extra: object) -> dict:
    return promote(checkpoint, results, sweep=sweep, trial_id="t1", val_acc=0.5, epochs=1, source_checkpoint="x", **extra)


def test_promote_writes_an_entry_folder_and_one_row_file(tmp_path: Path, cifar_dir: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", cifar_dir)
    results = tmp_path / "results"
    first = promote_once(checkpoint, results, "s1")
    second = promote_once(checkpoint, results, "s2")
    assert [r["entry_id"] for r in read_table(results)] == [first["entry_id"], second["entry_id"]]
    assert sorted(p.name for p in rows_dir(results).iterdir()) == sorted(
        [f"{first['entry_id']}.parquet", f"{second['entry_id']}.parquet"]
    ), "one file per entry, nothing else in the rows folder"
    assert pq.read_table(row_path(results, first["entry_id"])).schema.equals(SCHEMA)
    folder = results / "leaderboard" / first["entry_id"]
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.json", "data.json", "model.safetensors", "predictions.npz"]
    assert evaluate_on_test(folder, cifar_dir)["test_acc"] == first["test_acc"]
    assert first["test_acc"] == hand_counted_accuracy(folder, read_part(cifar_dir, "test"))
    assert find_entry(results, second["entry_id"])["sweep"] == "s2"
    assert not table_path(results).exists()


def test_the_row_holds_the_new_columns(tmp_path: Path, cifar_dir: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", cifar_dir)
    row = promote_once(checkpoint, tmp_path / "res", wall_s=90.0, device_hours=0.05, device="GPU")
    stored = find_entry(tmp_path / "res", row["entry_id"])
    correct = round(stored["test_acc"] * 200)
    assert stored["schema_version"] == 5 and stored["test_images"] == 200
    assert (stored["test_acc_ci_low"], stored["test_acc_ci_high"]) == wilson_interval(correct, 200)
    assert stored["macs"] == 32 * 32 * (3 * 8 * 9 + 8 * 8 * 9 * 2) + 8 * 10  # stem conv + one basic block + head
    assert (stored["label_mode"], stored["test_acc_tta"], stored["extra_test_acc"]) == ("fine", None, None)
    assert (stored["wall_s"], stored["device_hours"], stored["device"]) == (90.0, 0.05, "GPU")
    card = (entry_dir(tmp_path / "res", row["entry_id"]) / "README.md").read_text()
    assert "training wall time 90 s; device time 0.050 GPU-hours" in card
    assert stored["host"] == os.uname().nodename
    assert stored["git_sha"] is None or len(stored["git_sha"].removesuffix("-dirty")) == 40


def test_predictions_are_saved_for_later_reports(tmp_path: Path, cifar_dir: Path) -> None:
    row = promote_once(exported_checkpoint(tmp_path / "ckpt", cifar_dir, tta="flip"), tmp_path / "res")
    saved = load_predictions(tmp_path / "res" / "leaderboard" / row["entry_id"] / "predictions.npz")
    test = read_part(cifar_dir, "test")
    assert np.array_equal(saved["labels"], test.labels) and saved["probs"].dtype == np.float16
    assert saved["probs"].shape == (200, 10) and np.allclose(saved["probs"].astype(np.float32).sum(1), 1, atol=1e-2)
    assert (saved["predicted"] == saved["labels"]).mean() == row["test_acc"]
    assert (saved["tta_predicted"] == saved["labels"]).mean() == row["test_acc_tta"]
    assert list(saved["class_names"][:2]) == ["airplane", "automobile"]


def test_a_tta_config_records_its_own_tta_accuracy(tmp_path: Path, cifar_dir: Path) -> None:
    folder = exported_checkpoint(tmp_path / "ckpt", cifar_dir, tta="flip")
    row = promote_once(folder, tmp_path / "res")
    import torch
    from loader_refs import normalized

    from raycifar.models.files import load_model_files

    model, _ = load_model_files(folder)
    test = read_part(cifar_dir, "test")
    with torch.no_grad():
        x = normalized(test.images)
        averaged = (model(x) + model(x.flip(-1))) / 2
    assert row["test_acc_tta"] == (averaged.argmax(1).numpy() == test.labels).mean()
    assert evaluate_on_test(tmp_path / "res" / "leaderboard" / row["entry_id"], cifar_dir)["test_acc_tta"] == row["test_acc_tta"]


def test_the_rows_folder_reads_as_one_table_with_pyarrow_pandas_and_duckdb(tmp_path: Path) -> None:
    for index in range(3):
        write_row(tmp_path, plain_row(f"s-{index}", 0.5 + index / 10, extra_test_acc={"ood": index / 4}))
    (rows_dir(tmp_path) / ".s-9.1234.tmp").write_bytes(b"a promotion still writing")
    folder = rows_dir(tmp_path)
    assert ds.dataset(folder, format="parquet").to_table().num_rows == 3
    assert sorted(pd.read_parquet(folder)["entry_id"]) == ["s-0", "s-1", "s-2"]
    found = duckdb.sql(
        f"select entry_id, test_acc, extra_test_acc['ood'] as ood from read_parquet('{folder}/*.parquet') order by entry_id"
    ).fetchall()
    assert found == [("s-0", 0.5, 0.0), ("s-1", 0.6, 0.25), ("s-2", 0.7, 0.5)]


def test_a_row_file_is_never_overwritten(tmp_path: Path) -> None:
    write_row(tmp_path, plain_row("s-1", 0.5))
    before = row_path(tmp_path, "s-1").read_bytes()
    with pytest.raises(UserError, match=r"s-1.parquet: the leaderboard already has entry 's-1'"):
        write_row(tmp_path, plain_row("s-1", 0.9))
    assert row_path(tmp_path, "s-1").read_bytes() == before
    assert [p.name for p in rows_dir(tmp_path).iterdir()] == ["s-1.parquet"], "no temp file left behind"


def test_ten_promotions_at_once_from_separate_processes_land_as_ten_rows(tmp_path: Path, cifar_dir: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", cifar_dir)
    results = tmp_path / "results"
    # Forked from one server that imported raycifar once: ten processes without ten imports of torch.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["board_files", "raycifar.entries.promote"])
    barrier, queue = context.Barrier(10), context.Queue()
    children = [
        context.Process(target=promote_in_child, args=(checkpoint, results, index, barrier, queue)) for index in range(10)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join(timeout=300)
    assert [child.exitcode for child in children] == [0] * 10
    ids = sorted(queue.get(timeout=10) for _ in range(10))
    rows = read_table(results)
    assert len(set(ids)) == 10 and sorted(r["entry_id"] for r in rows) == ids
    assert sorted(r["trial_id"] for r in rows) == sorted(str(i) for i in range(10))
    assert sorted(p.name for p in (results / "leaderboard").iterdir()) == sorted(ids + ["rows"])


def test_a_corrupt_row_file_is_named_in_one_warning_and_skipped(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    write_row(tmp_path, plain_row("s-good", 0.5))
    broken = row_path(tmp_path, "s-broken")
    broken.write_bytes(b"PAR1 not really parquet")
    foreign = row_path(tmp_path, "s-foreign")
    pq.write_table(pa.table({"score": [1.0]}), foreign)
    assert [r["entry_id"] for r in read_table(tmp_path)] == ["s-good"]
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2
    assert lines[0].startswith(f"warning: {broken}: not a readable Parquet file") and lines[0].endswith("skipped (the file is left as it is)")
    assert lines[1].startswith(f"warning: {foreign}: not a raycifar leaderboard row (no entry_id column)")
    assert broken.read_bytes() == b"PAR1 not really parquet"


def legacy_row(entry_id: str, test_acc: float) -> dict:
    row = plain_row(entry_id, test_acc)
    return {name: row.get(name) for name in LEGACY_SCHEMA.names}


def test_an_old_single_file_table_is_imported_once_and_kept_as_a_backup(tmp_path: Path) -> None:
    pq.write_table(pa.Table.from_pylist([legacy_row("old-1", 0.6), legacy_row("old-2", 0.7)], schema=LEGACY_SCHEMA), table_path(tmp_path))
    original = table_path(tmp_path).read_bytes()
    write_row(tmp_path, plain_row("new-1", 0.8))
    rows = read_table(tmp_path)
    assert sorted(r["entry_id"] for r in rows) == ["new-1", "old-1", "old-2"]
    old = next(r for r in rows if r["entry_id"] == "old-1")
    assert (old["schema_version"], old["test_acc"], old["macs"], old["test_acc_tta"]) == (1, 0.6, None, None)
    assert not table_path(tmp_path).exists()
    assert (tmp_path / "leaderboard.parquet.v1-backup").read_bytes() == original
    assert sorted(p.name for p in rows_dir(tmp_path).iterdir()) == ["new-1.parquet", "old-1.parquet", "old-2.parquet"]
    assert len(read_table(tmp_path)) == 3, "imported once"
    assert duckdb.sql(f"select count(*) from read_parquet('{rows_dir(tmp_path)}/*.parquet')").fetchall() == [(3,)]


def test_an_unreadable_old_table_is_warned_about_and_left_as_it_is(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    table_path(tmp_path).write_bytes(b"not parquet")
    write_row(tmp_path, plain_row("new-1", 0.8))
    assert [r["entry_id"] for r in read_table(tmp_path)] == ["new-1"]
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: {table_path(tmp_path)}: not a readable leaderboard table")
    assert table_path(tmp_path).read_bytes() == b"not parquet"


def test_a_failed_promotion_leaves_no_folder_and_no_row(tmp_path: Path, cifar_dir: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", cifar_dir)
    (checkpoint / "model.safetensors").write_bytes(b"broken")
    results = tmp_path / "results"
    with pytest.raises(UserError, match=r"model.safetensors: not a readable safetensors file"):
        promote_once(checkpoint, results)
    assert read_table(results) == [] and list((results / "leaderboard").iterdir()) == []


def test_every_column_is_listed_even_for_rows_of_an_older_schema(tmp_path: Path) -> None:
    path = rows_dir(tmp_path) / "s-old.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([legacy_row("s-old", 0.4)], schema=LEGACY_SCHEMA), path)
    (row,) = read_table(tmp_path)
    assert tuple(row) == COLUMNS and row["test_acc"] == 0.4 and row["test_acc_ci_low"] is None


def test_a_row_of_schema_version_3_reads_with_no_device(tmp_path: Path) -> None:
    version_3 = pa.schema([field for field in SCHEMA if field.name != "device"])
    path = rows_dir(tmp_path) / "s-v3.parquet"
    path.parent.mkdir(parents=True)
    row = {**legacy_row("s-v3", 0.4), "schema_version": 3, "device_hours": 0.5, "seeds": 1}
    pq.write_table(pa.Table.from_pylist([row], schema=version_3), path)
    (read,) = read_table(tmp_path)
    assert (read["schema_version"], read["device_hours"], read["device"]) == (3, 0.5, None)


def test_a_row_of_schema_version_4_reads_with_no_robustness(tmp_path: Path) -> None:
    robustness = {"corrupted_acc", "robustness_gap", "corrupted_set"}
    version_4 = pa.schema([field for field in SCHEMA if field.name not in robustness])
    path = rows_dir(tmp_path) / "s-v4.parquet"
    path.parent.mkdir(parents=True)
    row = {**legacy_row("s-v4", 0.4), "schema_version": 4, "device": "CPU"}
    pq.write_table(pa.Table.from_pylist([row], schema=version_4), path)
    (read,) = read_table(tmp_path)
    assert (read["schema_version"], read["device"]) == (4, "CPU")
    assert all(read[name] is None for name in robustness) and tuple(read) == COLUMNS


def test_unknown_entry_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no leaderboard entry 'nope'"):
        find_entry(tmp_path, "nope")


def test_evaluate_names_missing_exported_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing model.safetensors and config.json"):
        evaluate_on_test(tmp_path, tmp_path)


def test_the_wilson_interval_of_81_of_100_matches_the_hand_computation() -> None:
    # p = 0.81, z = 1.96: centre (p + z²/2n) / (1 + z²/n) = 0.79853, half-width
    # z / (1 + z²/n) * sqrt(p(1-p)/n + z²/4n²) = 0.07632 -> [0.72221, 0.87485]
    low, high = wilson_interval(81, 100)
    assert low == pytest.approx(0.72221, abs=5e-5) and high == pytest.approx(0.87485, abs=5e-5)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12) and wilson_interval(10, 10)[1] == pytest.approx(1.0)
