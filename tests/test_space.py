"""Space files: validation errors, lookup by name, sampling within the budget."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_SPACE

from raycifar.errors import UserError
from raycifar.models import count_params
from raycifar.space import load_space, packaged_spaces, sample_configs

GOOD = TINY_SPACE.read_text()


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("  lr:", "  lrr:"), r"space.yaml: train.lrr: Extra inputs are not permitted"),
        (GOOD.replace("batch_size: 64", "batch_size: big"), r"space.yaml: train.batch_size: 'big': .*integer"),
        (GOOD.replace("{loguniform: [0.05, 0.2]}", "{loguniform: [0.0, 0.2]}"), r"train.lr: .*greater than 0"),
        (GOOD.replace("{loguniform: [0.05, 0.2]}", "{logunif: [0.05, 0.2]}"), r"train.lr: a sampler is a mapping"),
        (GOOD.replace("{loguniform: [0.05, 0.2]}", "{uniform: [0.2, 0.05]}"), r"train.lr: uniform low 0.2 is above high 0.05"),
        (GOOD.replace("{choice: [8, 12]}", "{choice: []}"), r"arch.base_width: choice takes a non-empty list"),
        (GOOD.replace("schedule: onecycle", "schedule: exponential"), r"train.schedule: 'exponential': Input should be 'cosine', 'linear', 'onecycle', 'step' or 'multistep'"),
        (GOOD.replace("budget: 100000", "budget: -5"), r"space.yaml: budget: .*greater than or equal to 1"),
        (GOOD.replace("{choice: [8, 12]}", "{uniform: [8, 12]}"), r"arch.base_width: uniform draws fractional numbers; this key takes integers: use randint or choice"),
        (GOOD.replace("schedule: onecycle", "schedule: {randint: [1, 2]}"), r"train.schedule: randint draws integers; this key takes fixed values: use choice"),
        ("train: {lr: 0.1}\n", r"space.yaml: arch: Field required"),
        ("arch: [1, 2\n", r"space.yaml: line \d+: not valid YAML"),
        ("- 1\n- 2\n", r"space.yaml: expected a mapping"),
    ],
)
def test_bad_space_files_fail_with_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        load_space(str(write_space(tmp_path, text)))
    assert "\n" not in str(caught.value)


def test_shipped_spaces_are_found_by_name_and_valid() -> None:
    assert {"smoke_space", "resnet_space"} <= set(packaged_spaces())
    for name in packaged_spaces():
        assert load_space(name).name == name


def test_unknown_space_lists_the_shipped_ones() -> None:
    with pytest.raises(UserError, match=r"no search space 'nope'.*smoke_space"):
        load_space("nope")


def test_every_draw_fits_the_budget_and_over_budget_draws_are_redrawn(tmp_path: Path) -> None:
    space = load_space("resnet_space")
    draws = sample_configs(space, 40, seed=1, data_dir=tmp_path)
    assert len(draws.configs) == 40 and draws.redrawn > 0
    for config in draws.configs:
        assert config.params == count_params(config.model) <= 5_000_000
    assert len({c.model.depths for c in draws.configs}) >= 3


def test_sampling_is_seeded_and_max_epochs_caps(tmp_path: Path) -> None:
    space = load_space(str(TINY_SPACE))
    first = sample_configs(space, 5, seed=7, data_dir=tmp_path, max_epochs=1)
    again = sample_configs(space, 5, seed=7, data_dir=tmp_path, max_epochs=1)
    assert first.configs == again.configs
    assert all(c.train.epochs == 1 for c in first.configs)
    assert first.configs != sample_configs(space, 5, seed=8, data_dir=tmp_path).configs


def test_a_space_with_no_feasible_config_is_an_error(tmp_path: Path) -> None:
    path = write_space(tmp_path, GOOD.replace("budget: 100000", "budget: 1000"))
    with pytest.raises(UserError, match=r"no configuration fits the budget of 1,000 parameters \(smallest of 1000 draws: "):
        sample_configs(load_space(str(path)), 2, seed=0, data_dir=tmp_path)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "raycifar", *args], cwd=cwd, capture_output=True, text=True, timeout=120,
        env={**{k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}, "RAY_ADDRESS": "", "COLUMNS": "200"},
    )  # fmt: skip


def test_cli_rejects_a_bad_space_before_ray_starts(tmp_path: Path, cifar_dir: Path) -> None:
    path = write_space(tmp_path, GOOD.replace("  lr:", "  lrr:"))
    result = run_cli("sweep", str(path), "--data-dir", str(cifar_dir), "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: train.lrr: Extra inputs are not permitted"]
    assert not (tmp_path / "r").exists()


def test_cli_missing_data_is_one_line_without_network(tmp_path: Path) -> None:
    result = run_cli("sweep", "smoke_space", "--data-dir", str(tmp_path / "none"), cwd=tmp_path)
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1
    assert "CIFAR-10 not found in" in result.stderr and "--download" in result.stderr


def test_cli_infeasible_space_exits_2(tmp_path: Path, cifar_dir: Path) -> None:
    path = write_space(tmp_path, GOOD.replace("budget: 100000", "budget: 1000"))
    result = run_cli("sweep", str(path), "--data-dir", str(cifar_dir), cwd=tmp_path)
    assert result.returncode == 2 and "no configuration fits the budget" in result.stderr


def test_sweep_help_documents_every_option(tmp_path: Path) -> None:
    result = run_cli("sweep", "--help", cwd=tmp_path)
    assert result.returncode == 0
    for option in ("--num-samples", "--max-epochs", "--cpus-per-trial", "--gpus-per-trial", "--workers-per-trial",
                   "--seed", "--address", "--results-dir", "--data-dir", "--download", "--wandb"):  # fmt: skip
        assert option in result.stdout


def test_cli_wandb_online_without_a_key_exits_2(tmp_path: Path, cifar_dir: Path) -> None:
    result = run_cli("sweep", "smoke_space", "--data-dir", str(cifar_dir), "--wandb", "online", cwd=tmp_path)
    assert result.returncode == 2 and "--wandb online needs WANDB_API_KEY" in result.stderr
