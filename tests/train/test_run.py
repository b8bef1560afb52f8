"""``raycifar train``: resolving the config to train, and bad input (no Ray needed)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import cli_server
import pytest
import torch
from conftest import TINY_SPACE

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.config import with_settings as with_overrides
from raycifar.entries.promote import promote
from raycifar.errors import UserError
from raycifar.models.files import save_model_files
from raycifar.models.resnet import build_model
from raycifar.pipeline.train_job import config_from_entry
from raycifar.results.layout import run_dir
from raycifar.search.sample import sample_configs
from raycifar.search.sample import trial_config_from_file as config_from_file
from raycifar.space.find import load_space
from raycifar.train.run import check_new_run

FIXED = """\
budget: 100000
val_fraction: 0.2
arch: {depths: [1, 1], base_width: 8, se_ratio: 4}
train: {lr: 0.05, batch_size: 64, epochs: 2, ema_decay: 0.9, tta: flip}
"""


def write(tmp_path: Path, text: str, name: str = "fixed.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    return cli_server.run_cli(args, cwd=cwd, env=env, timeout=120)


def test_a_fixed_file_resolves_like_trial_0_of_a_sweep(tmp_path: Path) -> None:
    path = write(tmp_path, FIXED)
    config = config_from_file(str(path), tmp_path, seed=2)
    assert config == sample_configs(load_space(str(path)), 1, 2, tmp_path).configs[0]
    assert (config.seed, config.split_seed, config.val_fraction) == (2000, 2, 0.2)
    assert config.model.widths == (8, 16) and config.train.ema_decay == 0.9 and config.space == "fixed"


def test_a_file_with_samplers_is_refused(tmp_path: Path) -> None:
    with pytest.raises(
        UserError, match=r"tiny_space.yaml: arch.depths: raycifar train needs one value per key, got a choice"
    ):
        config_from_file(str(TINY_SPACE), tmp_path, seed=0)


def test_overrides_set_training_keys_epochs_seed_and_data(tmp_path: Path) -> None:
    config = config_from_file(str(write(tmp_path, FIXED)), tmp_path, seed=0)
    changed = with_overrides(
        config, ["ema_decay=0.99", "schedule=linear", "milestones=[0.4]", "compile=true"], epochs=7, seed=5,
        data_dir=tmp_path / "d",
    )  # fmt: skip
    assert changed.train == config.train.model_copy(
        update={"ema_decay": 0.99, "schedule": "linear", "milestones": (0.4,), "compile": True, "epochs": 7}
    )
    assert (changed.seed, changed.split_seed, changed.data_dir) == (5, 0, str(tmp_path / "d"))
    assert changed.model == config.model and with_overrides(config, []) == config


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("lr", r"--set 'lr': expected KEY=VALUE with KEY a training key"),
        ("depths=[1]", r"--set 'depths=\[1\]': 'depths' is a model key; --set sets training keys only"),
        ("lr=-1", r"--set: train.lr: Input should be greater than 0"),
        ("lookahead=true", r"--set: train: lookahead: true .* needs ema_decay > 0"),
    ],
)
def test_bad_overrides_are_one_line(tmp_path: Path, setting: str, message: str) -> None:
    config = config_from_file(str(write(tmp_path, FIXED.replace("ema_decay: 0.9", "ema_decay: 0.0"))), tmp_path, 0)
    with pytest.raises(UserError, match=message):
        with_overrides(config, [setting])


def test_an_entry_gives_back_its_config(tmp_path: Path, cifar_dir: Path) -> None:
    config = TrialConfig(
        space="s", data_dir=str(cifar_dir), params=1, seed=9, model=ModelConfig(depths=(1,), widths=(8,)),
        train=TrainConfig(epochs=1, tta="flip"),
    )  # fmt: skip
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    torch.manual_seed(0)
    save_model_files(checkpoint, build_model(config.model), config)
    row = promote(checkpoint, tmp_path, sweep="s", trial_id="t", val_acc=0.5, epochs=1, source_checkpoint="x")
    assert config_from_entry(tmp_path, row["entry_id"]) == config
    with pytest.raises(UserError, match=r"no leaderboard entry 'nope'"):
        config_from_entry(tmp_path, "nope")


def test_a_run_name_is_used_once(tmp_path: Path) -> None:
    check_new_run(tmp_path, "run1")
    run_dir(tmp_path, "run1").mkdir(parents=True)
    with pytest.raises(UserError, match=r"a run named 'run1' already exists"):
        check_new_run(tmp_path, "run1")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((), r"give either a CONFIG file or --from-entry ENTRY_ID \(exactly one\)"),
        (("CONFIG", "--from-entry", "x"), r"give either a CONFIG file or --from-entry"),
        (("CONFIG", "--set", "nope=1"), r"--set 'nope=1': 'nope' is not a training key \(training keys: optimizer"),
        (("CONFIG", "--name", "bad name"), r"--name 'bad name': use letters, digits"),
        ((str(TINY_SPACE),), r"arch.depths: raycifar train needs one value per key"),
        (("--from-entry", "missing"), r"no leaderboard entry 'missing'"),
        (("CONFIG", "--data-dir", "/nonexistent"), r"CIFAR-10 not found in /nonexistent"),
    ],
)
def test_cli_bad_input_exits_2_with_one_line(tmp_path: Path, cifar_dir: Path, args: tuple, message: str) -> None:
    config = str(write(tmp_path, FIXED))
    args = tuple(config if a == "CONFIG" else a for a in args)
    data = () if "--data-dir" in args else ("--data-dir", str(cifar_dir))
    result = run_cli("train", *args, *data, "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert re.search(message, lines[0]), lines[0]
    assert not (tmp_path / "r" / "runs").exists()


def test_cli_existing_run_name_exits_2_before_ray_starts(tmp_path: Path, cifar_dir: Path) -> None:
    run_dir(tmp_path / "r", "taken").mkdir(parents=True)
    result = run_cli("train", str(write(tmp_path, FIXED)), "--data-dir", str(cifar_dir), "--results-dir",
                     str(tmp_path / "r"), "--name", "taken", cwd=tmp_path)  # fmt: skip
    assert result.returncode == 2 and "a run named 'taken' already exists" in result.stderr
    assert "Started a local Ray" not in result.stderr


def test_train_help_documents_every_option(tmp_path: Path) -> None:
    result = run_cli("train", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--from-entry", "--epochs", "--seed", "--set", "--workers", "--cpus-per-worker",
                   "--gpus-per-worker", "--address", "--name", "--promote", "--results-dir", "--data-dir"):  # fmt: skip
        assert option in result.stdout
