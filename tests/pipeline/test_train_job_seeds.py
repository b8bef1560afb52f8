"""Honest final numbers without Ray: training on train+val, the seed columns of a promoted
row (schema version 3, older row files still read) and the W&B model artifact."""

from __future__ import annotations

import base64
import hashlib
import math
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from board_files import exported_checkpoint, plain_row
from wandb_records import artifacts

from raycifar.config import AugmentConfig, ModelConfig, TrainConfig, TrialConfig
from raycifar.data import read_part, train_val_split
from raycifar.data.loaders import make_loaders
from raycifar.entries.promote import promote, seed_statistics
from raycifar.errors import UserError
from raycifar.pipeline.train_job import TrainRequest, resolve_train_config, seed_run_names
from raycifar.pipeline.wandb_log import ARTIFACT_FILES, log_model_artifact
from raycifar.results.layout import entry_dir
from raycifar.results.leaderboard import find_entry, read_table, rows_dir
from raycifar.results.leaderboard_schema import SCHEMA, SCHEMA_VERSION
from raycifar.train.run import selection_metric


def _config(data_dir: Path, **fields: object) -> TrialConfig:
    return TrialConfig(
        space="tiny", data_dir=str(data_dir), params=1, model=ModelConfig(depths=(1,), widths=(8,)),
        train=TrainConfig(epochs=1), augment=AugmentConfig(crop_padding=0, flip=False), **fields,
    )  # fmt: skip


def _image_keys(loader) -> list[bytes]:  # noqa: ANN001 - a DeviceLoader (crop_padding 0): its stored images
    stored = loader.store[0].permute(0, 2, 3, 1).contiguous().numpy()  # copy 0: not mirrored
    return sorted(image.tobytes() for image in stored)


def _keys(images: np.ndarray) -> list[bytes]:
    return sorted(image.tobytes() for image in images)


def test_train_plus_val_trains_on_exactly_the_train_and_val_images(cifar_dir: Path) -> None:
    train, val = train_val_split(cifar_dir, 0.1, 0)
    cpu = torch.device("cpu")
    union_loader, val_loader, _ = make_loaders(_config(cifar_dir, train_on="train+val"), cpu, 0, 1, 1, 256)
    plain_loader, _, _ = make_loaders(_config(cifar_dir), cpu, 0, 1, 1, 256)
    assert len(plain_loader.labels) == len(train) == 540, "train alone: the split's train part"
    assert _image_keys(union_loader) == _keys(np.concatenate([train.images, val.images]))
    assert sorted(union_loader.labels.tolist()) == sorted([*train.labels.tolist(), *val.labels.tolist()])
    assert _keys(read_part(cifar_dir, "train").images) == _image_keys(union_loader), "the whole official train part"
    test_keys = set(_keys(read_part(cifar_dir, "test").images))
    assert not test_keys & set(_image_keys(union_loader)), "no test image"
    assert _image_keys(val_loader) == _keys(val.images), "val is still scored (seen data now)"


def test_train_plus_val_keeps_the_last_epoch_and_refuses_ffcv(cifar_dir: Path) -> None:
    assert selection_metric(_config(cifar_dir).model_dump(mode="json")) == "val_acc"
    assert selection_metric(_config(cifar_dir, train_on="train+val").model_dump(mode="json")) == "epoch"
    with pytest.raises(UserError, match="ffcv"):
        make_loaders(_config(cifar_dir, train_on="train+val", loader="ffcv"), torch.device("cpu"), 0, 1, 1, 256)


def test_seed_runs_are_named_by_their_seeds() -> None:
    assert seed_run_names("final", 7, 1) == [(7, "final")]
    assert seed_run_names("final", 7, 3) == [(7, "final-seed7"), (8, "final-seed8"), (9, "final-seed9")]


def test_train_on_comes_from_the_request_or_the_entry(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "res"
    row = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), results, sweep="s", trial_id="t",
                  val_acc=0.5, epochs=1, source_checkpoint="x")  # fmt: skip
    request = TrainRequest(results_dir=results, from_entry=row["entry_id"])
    assert resolve_train_config(request).train_on == "train"
    assert resolve_train_config(TrainRequest(results_dir=results, from_entry=row["entry_id"], train_on="train+val")).train_on == "train+val"
    with pytest.raises(UserError, match="--train-on 'val'"):
        resolve_train_config(TrainRequest(results_dir=results, from_entry=row["entry_id"], train_on="val"))


def test_seed_statistics_by_hand() -> None:
    assert seed_statistics([0.5, 0.6, 0.7]) == {"test_acc_mean": pytest.approx(0.6), "test_acc_std": pytest.approx(0.1), "seeds": 3}
    # (0.25 - 0.375)^2 + (0.5 - 0.375)^2 = 0.03125, over n - 1 = 1
    assert seed_statistics([0.25, 0.5]) == {"test_acc_mean": 0.375, "test_acc_std": math.sqrt(0.03125), "seeds": 2}
    assert seed_statistics([0.8]) == {"test_acc_mean": 0.8, "test_acc_std": None, "seeds": 1}


def test_a_promoted_row_holds_the_mean_and_std_over_the_seeds(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "res"
    row = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), results, sweep="s", trial_id="t",
                  val_acc=0.5, epochs=1, source_checkpoint="x", other_seed_test_accs=[0.125, 0.25])  # fmt: skip
    stored = find_entry(results, row["entry_id"])
    accs = [stored["test_acc"], 0.125, 0.25]
    mean = sum(accs) / 3
    std = math.sqrt(sum((a - mean) ** 2 for a in accs) / 2)
    assert stored["seeds"] == 3 and stored["schema_version"] == SCHEMA_VERSION == 5
    assert stored["test_acc_mean"] == pytest.approx(mean, rel=1e-12)
    assert stored["test_acc_std"] == pytest.approx(std, rel=1e-12)
    card = (entry_dir(results, row["entry_id"]) / "README.md").read_text()
    assert f"| test accuracy over 3 seeds (mean ± sample std) | {100 * mean:.2f}% ± {100 * std:.2f}% |" in card


def test_a_sweep_promotion_leaves_the_seed_columns_null(tmp_path: Path, cifar_dir: Path) -> None:
    row = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), tmp_path / "res", sweep="s", trial_id="t",
                  val_acc=0.5, epochs=1, source_checkpoint="x")  # fmt: skip
    stored = find_entry(tmp_path / "res", row["entry_id"])
    assert (stored["test_acc_mean"], stored["test_acc_std"], stored["seeds"]) == (None, None, None)


def test_a_schema_version_2_row_file_still_reads(tmp_path: Path) -> None:
    new = ("test_acc_mean", "test_acc_std", "seeds")
    version_2 = pa.schema([field for field in SCHEMA if field.name not in new])
    folder = rows_dir(tmp_path)
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([{**plain_row("old-0001", 0.7), "schema_version": 2}], schema=version_2),
                   folder / "old-0001.parquet")  # fmt: skip
    (row,) = read_table(tmp_path)
    assert (row["entry_id"], row["schema_version"], row["test_acc"]) == ("old-0001", 2, 0.7)
    assert [row[name] for name in new] == [None, None, None]


def _md5(path: Path) -> str:
    return base64.b64encode(hashlib.md5(path.read_bytes()).digest()).decode()


def test_the_promoted_model_is_a_wandb_artifact_aliased_best(
    tmp_path: Path, cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_DATA_DIR", "WANDB_DIR"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))  # wandb's caches and settings stay in the test
    results = tmp_path / "res"
    row = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), results, sweep="final", trial_id="t",
                  val_acc=0.5, epochs=1, source_checkpoint="x", other_seed_test_accs=[0.25])  # fmt: skip
    assert log_model_artifact(row, entry_dir(results, row["entry_id"]), results, "offline") == "model-final"

    (run,) = (results / "wandb" / "wandb").glob("offline-run-*")
    (artifact,) = artifacts(run)
    assert (artifact.name, artifact.type) == ("model-final", "model")
    assert "best" in artifact.aliases
    contents = {entry.path: entry for entry in artifact.manifest.contents}
    assert sorted(contents) == sorted(ARTIFACT_FILES) == ["README.md", "config.json", "model.safetensors"]
    for name, entry in contents.items():
        assert entry.digest == _md5(entry_dir(results, row["entry_id"]) / name)
        assert Path(entry.local_path).read_bytes() == (entry_dir(results, row["entry_id"]) / name).read_bytes()
        assert Path(entry.local_path).is_relative_to(results / "wandb" / "data"), "staged for wandb sync"
    import json

    metadata = json.loads(artifact.metadata)
    assert (metadata["entry_id"], metadata["test_acc"], metadata["seeds"]) == (row["entry_id"], row["test_acc"], 2)
    assert metadata["test_acc_mean"] == row["test_acc_mean"]


def test_wandb_off_logs_nothing_and_online_needs_a_key(
    tmp_path: Path, cifar_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    results = tmp_path / "res"
    row = promote(exported_checkpoint(tmp_path / "ckpt", cifar_dir), results, sweep="s", trial_id="t",
                  val_acc=0.5, epochs=1, source_checkpoint="x")  # fmt: skip
    assert log_model_artifact(row, entry_dir(results, row["entry_id"]), results, "off") is None
    assert not (results / "wandb").exists()
    from raycifar.pipeline.wandb_log import check_mode

    with pytest.raises(UserError, match="WANDB_API_KEY"):
        check_mode("online")
