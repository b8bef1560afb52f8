"""Promotion, the Parquet table, and re-evaluation from exported files (no Ray needed)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.errors import UserError
from raycifar.evaluate import evaluate_on_test
from raycifar.export import save_model_files
from raycifar.leaderboard import COLUMNS, append_row, find_entry, read_table, table_path
from raycifar.models import build_model
from raycifar.promote import promote


def exported_checkpoint(folder: Path, data_dir: Path) -> Path:
    config = TrialConfig(
        space="tiny", data_dir=str(data_dir), params=1, seed=3,
        model=ModelConfig(depths=(1,), widths=(8,)), train=TrainConfig(epochs=1),
    )  # fmt: skip
    torch.manual_seed(0)
    folder.mkdir()
    save_model_files(folder, build_model(config.model), config)
    return folder


def test_promote_appends_rows_and_evaluate_reproduces_test_acc(tmp_path: Path, cifar_dir: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", cifar_dir)
    results = tmp_path / "results"
    results.mkdir()
    first = promote(checkpoint, results, sweep="s1", trial_id="t1", val_acc=0.5, epochs=1, source_checkpoint="x")
    second = promote(checkpoint, results, sweep="s2", trial_id="t2", val_acc=0.6, epochs=1, source_checkpoint="y")
    rows = read_table(results)
    assert [r["entry_id"] for r in rows] == [first["entry_id"], second["entry_id"]]
    assert set(COLUMNS) <= set(rows[0]) and pq.read_table(table_path(results)).num_rows == 2
    folder = results / "leaderboard" / first["entry_id"]
    assert (folder / "model.safetensors").is_file() and (folder / "config.json").is_file()
    again = evaluate_on_test(folder, cifar_dir)
    assert again["test_acc"] == first["test_acc"] and again["n"] == 200
    assert find_entry(results, second["entry_id"])["trial_id"] == "t2"
    assert sorted(p.name for p in results.iterdir()) == [".leaderboard.lock", "leaderboard", "leaderboard.parquet"]
    assert sorted(p.name for p in (results / "leaderboard").iterdir()) == sorted([first["entry_id"], second["entry_id"]])


def test_a_failed_promotion_leaves_no_folder_and_no_row(tmp_path: Path, cifar_dir: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", cifar_dir)
    (checkpoint / "model.safetensors").write_bytes(b"broken")
    results = tmp_path / "results"
    results.mkdir()
    with pytest.raises(UserError, match=rf"^{checkpoint}/model.safetensors: not a readable safetensors file"):
        promote(checkpoint, results, sweep="s", trial_id="t", val_acc=0.5, epochs=1, source_checkpoint="x")
    assert read_table(results) == [] and list((results / "leaderboard").iterdir()) == []


def test_concurrent_appends_keep_every_row(tmp_path: Path) -> None:
    row = {name: None for name in COLUMNS}

    def append_many(worker: int) -> None:
        for index in range(5):
            append_row(tmp_path, {**row, "entry_id": f"{worker}-{index}"})

    with ThreadPoolExecutor(4) as pool:
        list(pool.map(append_many, range(4)))
    assert len({r["entry_id"] for r in read_table(tmp_path)}) == 20


def test_a_table_with_other_columns_is_refused(tmp_path: Path) -> None:
    pq.write_table(pa.table({"entry_id": ["a"], "score": [1.0]}), table_path(tmp_path))
    with pytest.raises(UserError, match=r"not a raycifar leaderboard \(missing columns: created_at"):
        read_table(tmp_path)


def test_a_corrupt_table_is_reported_and_left_untouched(tmp_path: Path) -> None:
    table_path(tmp_path).write_bytes(b"not parquet")
    with pytest.raises(UserError, match=r"leaderboard.parquet: not a readable leaderboard table"):
        append_row(tmp_path, {})
    assert table_path(tmp_path).read_bytes() == b"not parquet"


def test_unknown_entry_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"no leaderboard entry 'nope'"):
        find_entry(tmp_path, "nope")


def test_evaluate_names_missing_exported_files(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"missing model.safetensors and config.json"):
        evaluate_on_test(tmp_path, tmp_path)
