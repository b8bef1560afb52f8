"""Space files: validation errors, lookup by name, sampling within the budget."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import cli_server
import pytest
from conftest import REPO, TINY_SPACE

from raycifar.errors import UserError
from raycifar.models.budget import count_params, fit_se_width, fit_widths, scaled_widths
from raycifar.models.registry import variant_config
from raycifar.search.sample import sample_configs
from raycifar.space.find import load_space, packaged_spaces

GOOD = TINY_SPACE.read_text()


def write_space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (GOOD.replace("  lr:", "  lrr:"), r"space.yaml: train.lrr: unknown key \(did you mean lr\?\)"),
        (GOOD.replace("batch_size: 64", "batch_size: big"), r"space.yaml: train.batch_size: 'big': .*integer"),
        (GOOD.replace("{loguniform: [0.05, 0.2]}", "{loguniform: [0.0, 0.2]}"), r"train.lr: .*greater than 0"),
        (GOOD.replace("{loguniform: [0.05, 0.2]}", "{logunif: [0.05, 0.2]}"), r"train.lr: a sampler is a mapping"),
        (GOOD.replace("{loguniform: [0.05, 0.2]}", "{uniform: [0.2, 0.05]}"), r"train.lr: uniform low 0.2 is above high 0.05"),
        (GOOD.replace("{choice: [8, 12]}", "{choice: []}"), r"arch.base_width: choice takes a non-empty list"),
        (GOOD.replace("schedule: onecycle", "schedule: exponential"), r"train.schedule: 'exponential': Input should be 'cosine', 'linear', 'onecycle', 'step' or 'multistep'"),
        (GOOD.replace("budget: 100000", "budget: -5"), r"space.yaml: budget: .*greater than or equal to 1"),
        (GOOD.replace("arch:\n", "arch:\n  model: resnet19\n"), r"space.yaml: arch.model: unknown model 'resnet19'; known models: resnet10"),
        (GOOD.replace("arch:\n", "arch:\n  se_width: fit\n"), r"space.yaml: arch: se_ratio and se_width are two ways"),
        (GOOD.replace("{choice: [8, 12]}", "{choice: [8, fat]}"), r"arch.base_width: 'fat': "),
        (GOOD.replace("{choice: [8, 12]}", "{uniform: [8, 12]}"), r"arch.base_width: uniform draws fractional numbers; this key takes integers: use randint or choice"),
        (GOOD.replace("schedule: onecycle", "schedule: {randint: [1, 2]}"), r"train.schedule: randint draws integers; this key takes fixed values: use choice"),
        ("arch: [1, 2\n", r"space.yaml: line \d+: not valid YAML"),
        ("- 1\n- 2\n", r"space.yaml: expected a mapping"),
    ],
)
def test_bad_space_files_fail_with_one_line_naming_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(UserError, match=message) as caught:
        load_space(str(write_space(tmp_path, text)))
    assert "\n" not in str(caught.value)


def test_a_drawn_model_that_cannot_be_built_names_the_file(tmp_path: Path) -> None:
    text = GOOD.replace("arch:\n", "arch:\n  stem: imagenet\n  pool_after_stage: true\n").replace("[[1, 1], [1, 1, 1]]", "[[1, 1, 1, 1]]")
    path = write_space(tmp_path, text)
    with pytest.raises(UserError, match=r"space.yaml: arch: model resnet18: a 32x32 image shrinks to nothing"):
        sample_configs(load_space(str(path)), 1, seed=0, data_dir=tmp_path)


def test_shipped_spaces_are_found_by_name_and_valid() -> None:
    assert {"smoke_space", "resnet_space", "se_resnet_space", "cifar100_space"} <= set(packaged_spaces())
    for name in packaged_spaces():
        assert load_space(name).name == name


def test_unknown_space_lists_the_shipped_ones() -> None:
    with pytest.raises(UserError, match=r"no search space 'nope'.*smoke_space"):
        load_space("nope")


def test_over_budget_draws_are_redrawn(tmp_path: Path) -> None:
    path = write_space(tmp_path, GOOD.replace("{choice: [8, 12]}", "{choice: [8, 48]}"))
    draws = sample_configs(load_space(str(path)), 20, seed=1, data_dir=tmp_path)
    assert draws.redrawn > 0
    assert all(c.params == count_params(c.model) <= 100_000 for c in draws.configs)
    assert {c.model.widths[0] for c in draws.configs} == {8}


def test_resnet_space_fits_every_draw_to_at_least_85_percent_of_the_budget(tmp_path: Path) -> None:
    draws = sample_configs(load_space("resnet_space"), 200, seed=0, data_dir=tmp_path)
    assert len(draws.configs) == 200
    for config in draws.configs:
        assert 0.85 * 5_000_000 <= config.params == count_params(config.model) <= 5_000_000
        assert all(width % 8 == 0 for width in config.model.widths)
    assert len({c.model.depths for c in draws.configs}) >= 5
    assert {c.model.preact for c in draws.configs} == {False, True}
    assert {bool(c.model.se_ratio) for c in draws.configs} == {False, True}


@pytest.mark.parametrize("name", ["resnet18", "resnet34", "resnet56", "preact_resnet110", "seresnet50"])
def test_fitted_widths_are_the_widest_within_the_budget(name: str) -> None:
    fitted = fit_widths(variant_config(name), 5_000_000)
    assert count_params(fitted) <= 5_000_000
    stages = len(fitted.widths)
    wider = fitted.model_copy(update={"widths": scaled_widths(fitted.widths[-1] + 8, stages, 8)})
    assert count_params(wider) > 5_000_000
    assert fitted.widths == scaled_widths(fitted.widths[-1], stages, 8)


def test_scaled_widths_double_per_stage_in_multiples() -> None:
    assert scaled_widths(512, 4, 8) == (64, 128, 256, 512)
    assert scaled_widths(336, 4, 8) == (40, 88, 168, 336)
    assert scaled_widths(8, 3, 8) == (8, 8, 8)


def test_se_width_fit_takes_the_rest_of_the_budget() -> None:
    trunk = variant_config("resnet18", base_width=40, se_width=1)
    fitted = fit_se_width(trunk, 5_000_000)
    assert fitted.se_ratio == 0 and fitted.se_width > 100
    assert count_params(fitted) <= 5_000_000 < count_params(fitted.model_copy(update={"se_width": fitted.se_width + 1}))


def test_se_resnet_space_fits_the_se_width(tmp_path: Path) -> None:
    draws = sample_configs(load_space("se_resnet_space"), 30, seed=0, data_dir=tmp_path)
    for config in draws.configs:
        assert config.model.se_width > 0 and config.model.se_ratio == 0
        assert 0.99 * 5_000_000 <= config.params <= 5_000_000
    assert {c.model.head_hidden for c in draws.configs} == {0, 800}
    assert {c.model.pool_after_stage for c in draws.configs} == {False, True}


def test_cifar100_space_builds_100_way_classifiers(tmp_path: Path) -> None:
    draws = sample_configs(load_space("cifar100_space"), 10, seed=0, data_dir=tmp_path)
    assert all(c.dataset == "cifar100" and c.model.num_classes == 100 for c in draws.configs)


def test_width_and_se_fit_together_fill_the_budget(tmp_path: Path) -> None:
    text = GOOD.replace("{choice: [8, 12]}", "fit").replace("se_ratio: {choice: [0, 4]}", "se_width: fit")
    draws = sample_configs(load_space(str(write_space(tmp_path, text))), 4, seed=0, data_dir=tmp_path)
    for config in draws.configs:
        assert config.model.se_width >= 1 and 0.95 * 100_000 <= config.params <= 100_000


def test_sampling_is_seeded_and_max_epochs_caps(tmp_path: Path) -> None:
    space = load_space(str(TINY_SPACE))
    first = sample_configs(space, 5, seed=7, data_dir=tmp_path, max_epochs=1)
    again = sample_configs(space, 5, seed=7, data_dir=tmp_path, max_epochs=1)
    assert first.configs == again.configs
    assert all(c.train.epochs == 1 for c in first.configs)
    assert first.configs != sample_configs(space, 5, seed=8, data_dir=tmp_path).configs


def test_a_space_with_no_feasible_config_is_an_error(tmp_path: Path) -> None:
    path = write_space(tmp_path, GOOD.replace("budget: 100000", "budget: 1000"))
    with pytest.raises(UserError, match=r"no configuration fits the budget of 1,000 parameters \(smallest of 500 proposals: "):
        sample_configs(load_space(str(path)), 2, seed=0, data_dir=tmp_path)


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**{k: v for k, v in os.environ.items() if k != "WANDB_API_KEY"}, "RAY_ADDRESS": "", "COLUMNS": "200"}
    return cli_server.run_cli(args, cwd=cwd, env=env, timeout=120)


def test_cli_rejects_a_bad_space_before_ray_starts(tmp_path: Path, cifar_dir: Path) -> None:
    path = write_space(tmp_path, GOOD.replace("  lr:", "  lrr:"))
    result = run_cli("sweep", str(path), "--data-dir", str(cifar_dir), "--results-dir", str(tmp_path / "r"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [f"error: {path}: train.lrr: unknown key (did you mean lr?)"]
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


def test_cli_model_info_reports_the_golden_count(tmp_path: Path) -> None:
    result = run_cli("model", "info", "resnet18", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["params"] == 11_173_962 and info["widths"] == [64, 128, 256, 512]
    assert info["macs"] == 555_422_720
    hundred = json.loads(run_cli("model", "info", "resnet18", "--num-classes", "100", "--format", "json", cwd=tmp_path).stdout)
    assert hundred["params"] == 11_220_132


def test_cli_model_list_and_unknown_model(tmp_path: Path) -> None:
    listed = json.loads(run_cli("model", "list", "--format", "json", cwd=tmp_path).stdout)
    assert {row["name"] for row in listed} >= {"resnet18", "resnet34", "seresnet18", "preact_resnet18", "resnet20", "resnet56", "seresnet56"}
    result = run_cli("model", "info", "resnet19", cwd=tmp_path)
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "unknown model 'resnet19'; known models: resnet10" in result.stderr


def test_cli_space_sample_draws_fitted_configs_without_ray(tmp_path: Path) -> None:
    result = run_cli("space", "sample", "resnet_space", "-n", "200", "--format", "json", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 200
    assert all(0.85 * 5_000_000 <= row["params"] <= 5_000_000 and row["macs"] > 0 for row in rows)
    assert len({tuple(row["depths"]) for row in rows}) >= 5
    assert {"model", "widths", "architecture", "train"} <= set(rows[0])
    table = run_cli("space", "sample", "smoke_space", "-n", "3", "--seed", "4", cwd=tmp_path)
    assert table.returncode == 0 and "3 configs from" in table.stdout


def test_cli_space_show_lists_dimensions(tmp_path: Path) -> None:
    result = run_cli("space", "show", "se_resnet_space", "--format", "json", cwd=tmp_path)
    shown = json.loads(result.stdout)
    assert shown["budget"] == 5_000_000 and shown["dimensions"]["arch.se_width"] == '"fit"'
    assert shown["dimensions"]["arch.pool_after_stage"] == "choice [false, true]"
    assert "arch.se_width" in run_cli("space", "show", "se_resnet_space", cwd=tmp_path).stdout


def test_missing_and_empty_sections_take_every_default(tmp_path: Path) -> None:
    """A space without ``arch:``, or with a section whose keys are all commented out, is the
    defaults; both read the same as a file naming the defaults."""
    def spec(name: str, text: str):
        folder = tmp_path / name
        folder.mkdir()
        return load_space(str(write_space(folder, text))).spec

    missing = spec("missing", "train: {lr: 0.05}\n")
    empty = spec("empty", "arch:\n  # model: resnet10\ntrain: {lr: 0.05}\naugment:\n")
    explicit = spec("explicit", "arch: {model: resnet18}\ntrain: {lr: 0.05}\n")
    assert missing == empty == explicit
    assert missing.arch.model.args == ("resnet18",) and missing.train.lr.args == (0.05,)


def test_space_show_lists_every_dimension_of_every_section_and_every_setting(tmp_path: Path) -> None:
    """Reference: the keys of the resolved config sections, computed from the models."""
    import json

    from typer.testing import CliRunner

    from raycifar.cli import app
    from raycifar.config import AugmentConfig, TrainConfig

    space = write_space(tmp_path, "loader: torchvision\nclass_weights: {cat: 2.0}\naugment: {policy: {choice: [none, randaugment]}}\n")
    shown = CliRunner().invoke(app, ["space", "show", str(space), "--format", "json"])
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.stdout)
    expected = {f"train.{k}" for k in TrainConfig.model_fields} | {f"augment.{k}" for k in AugmentConfig.model_fields}
    assert expected <= set(report["dimensions"])
    assert report["dimensions"]["augment.policy"] == 'choice ["none", "randaugment"]'
    assert "arch.model" in report["dimensions"]
    assert (report["loader"], report["label_mode"], report["class_weights"]) == ("torchvision", "fine", {"cat": 2.0})
    table = CliRunner().invoke(app, ["space", "show", str(space)])
    assert all(key in table.stdout for key in ("augment.policy", "train.mix_switch_prob", "class_weights", "loader"))


@pytest.mark.parametrize("section", ["arch", "train", "augment"])
def test_raycifar_train_refuses_a_sampler_in_any_section_in_one_line(tmp_path: Path, section: str) -> None:
    from typer.testing import CliRunner

    from raycifar.cli import app

    line = {"arch": "arch: {base_width: {choice: [8, 16]}}", "train": "train: {lr: {uniform: [0.1, 0.2]}}",
            "augment": "augment: {cutout: {randint: [0, 8]}}"}[section]  # fmt: skip
    space = write_space(tmp_path, f"{line}\n")
    result = CliRunner().invoke(app, ["train", str(space), "--results-dir", str(tmp_path / "r"), "--data-dir", str(tmp_path)])
    assert result.exit_code == 2
    (message,) = result.stderr.strip().splitlines()
    assert f"{section}." in message and "raycifar train needs one value per key" in message
    assert not (tmp_path / "r").exists()


def test_a_space_asking_airbench_for_stochastic_depth_names_the_file(tmp_path: Path) -> None:
    text = GOOD.replace("arch:\n", "arch:\n  model: airbench\n  drop_path: 0.1\n").replace("  depths: {choice: [[1, 1], [1, 1, 1]]}\n", "")
    path = write_space(tmp_path, text)
    with pytest.raises(UserError, match=r"space.yaml: arch: model airbench: drop_path 0.1 needs a residual block"):
        sample_configs(load_space(str(path)), 1, seed=0, data_dir=tmp_path)


def test_laptop_space_draws_budget_fitted_airbench_with_the_cpu_recipe(tmp_path: Path) -> None:
    space = load_space(str(REPO / "search_spaces" / "laptop_space.yaml"))  # this checkout's file
    draws = sample_configs(space, 6, seed=0, data_dir=tmp_path).configs
    assert {config.model.block for config in draws} == {"convgroup"}
    assert all(count_params(config.model) == config.params <= space.spec.budget for config in draws)
    assert all(config.train.precision == "bf16" and config.train.channels_last for config in draws)
    assert all(config.train.tta == "flip" for config in draws)
    assert len({config.train.lr for config in draws}) == 6  # a real search: every draw differs
