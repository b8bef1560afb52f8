"""Tune schedulers: building them from a space's settings, the settings' rules, PBT's checkpoint
plumbing, and one end-to-end smoke sweep per scheduler (ASHA's are in test_sweep_e2e.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_recipe import training

from raycifar.config import TrainConfig, TrialConfig
from raycifar.data.loaders import make_loaders
from raycifar.errors import UserError
from raycifar.space.file import load_space_file, pbt_dimensions, with_scheduler
from raycifar.space.sections import SchedulerSettings
from raycifar.train.loop import STATE_FILE, Training
from raycifar.train.runtime import global_settings
from raycifar.train.scoring import EVAL_BATCH_SIZE


def space(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


# --- settings and their rules (no Ray) ------------------------------------------------------


def test_a_setting_of_another_scheduler_is_one_line_naming_it(tmp_path: Path) -> None:
    path = space(tmp_path, "train: {lr: {loguniform: [0.01, 0.1]}}\nscheduler: {name: pbt, reduction_factor: 3}\n")
    with pytest.raises(UserError) as err:
        load_space_file(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message
    assert "reduction_factor is a setting of asha and hyperband, not of pbt" in message


@pytest.mark.parametrize("name", ["asha", "hyperband"])
def test_sampled_epochs_are_refused_under_rung_schedulers(tmp_path: Path, name: str) -> None:
    path = space(tmp_path, f"train: {{epochs: {{choice: [2, 4]}}}}\nscheduler: {{name: {name}}}\n")
    with pytest.raises(UserError, match=rf"train.epochs: choice \[2, 4\] is sampled, but scheduler {name} compares"):
        load_space_file(path)


def test_sampled_epochs_are_fine_under_median_and_the_flag_cannot_sneak_asha_in(tmp_path: Path) -> None:
    path = space(tmp_path, "train: {epochs: {choice: [2, 4]}}\nscheduler: {name: median, grace_period: 2}\n")
    spec = load_space_file(path)
    assert spec.scheduler.name == "median"
    with pytest.raises(UserError, match=r"with --scheduler asha: train.epochs: choice \[2, 4\] is sampled"):
        with_scheduler(spec, "asha", str(path))
    fifo, dropped = with_scheduler(spec, "fifo", str(path))
    assert fifo.scheduler.name == "fifo" and dropped == ["grace_period"]
    with pytest.raises(UserError, match="with --scheduler lottery: scheduler.name: Input should be"):
        with_scheduler(spec, "lottery", str(path))


def test_the_flag_keeps_the_settings_the_new_scheduler_takes(tmp_path: Path) -> None:
    path = space(tmp_path, "scheduler: {grace_period: 3, reduction_factor: 4}\n")
    hyperband, dropped = with_scheduler(load_space_file(path), "hyperband", str(path))
    assert (hyperband.scheduler.name, hyperband.scheduler.reduction_factor, dropped) == ("hyperband", 4, ["grace_period"])


def test_pbt_needs_a_searched_key_and_a_perturbation_before_the_end(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="this space searches none"):
        load_space_file(space(tmp_path, "train: {lr: 0.1}\nscheduler: {name: pbt}\n"))
    with pytest.raises(UserError, match="perturbation_interval 4 is not below train.epochs 4"):
        load_space_file(space(tmp_path, "train: {epochs: 4, lr: {uniform: [0.01, 0.1]}}\n"
                                        "scheduler: {name: pbt, perturbation_interval: 4}\n"))  # fmt: skip
    spec = load_space_file(space(tmp_path, "train: {lr: {uniform: [0.01, 0.1]}, mixup_alpha: {choice: [0.4, 0.0]}, "
                                           "label_smoothing: 0.1}\nscheduler: {name: pbt}\n"))  # fmt: skip
    assert sorted(pbt_dimensions(spec)) == ["lr", "mixup_alpha"], "a constant is not perturbed"


# --- building schedulers (imports Ray Tune; starts nothing) -----------------------------------


def test_each_name_builds_its_tune_scheduler() -> None:
    from ray.tune.schedulers import (
        ASHAScheduler,
        FIFOScheduler,
        HyperBandScheduler,
        MedianStoppingRule,
        PopulationBasedTraining,
    )

    from raycifar.space.dimension import Dimension
    from raycifar.sweep.schedulers import make_scheduler

    mutations = {"lr": Dimension("loguniform", (0.01, 0.1))}
    expected = {"asha": ASHAScheduler, "hyperband": HyperBandScheduler, "median": MedianStoppingRule,
                "pbt": PopulationBasedTraining, "fifo": FIFOScheduler}  # fmt: skip
    for name, kind in expected.items():
        assert type(make_scheduler(SchedulerSettings(name=name), 4, mutations)) is kind, name
    with pytest.raises(UserError, match="perturbation_interval 3 is not below the trials' 3 epochs"):
        make_scheduler(SchedulerSettings(name="pbt", perturbation_interval=3), 3, mutations)


def test_pbt_perturbations_stay_in_the_space() -> None:
    from raycifar.space.dimension import Dimension
    from raycifar.sweep.schedulers import KeepInSpace, _mutation

    mutations = {"lr": Dimension("loguniform", (0.01, 0.1)), "mixup_alpha": Dimension("choice", (0.4, 0.0, 0.2))}
    assert _mutation(mutations["mixup_alpha"]) == [0.0, 0.2, 0.4], "sorted: a shift moves to a neighbour"
    clip = KeepInSpace(mutations)
    assert clip({"train": {"lr": 0.12, "mixup_alpha": 0.4}})["train"] == {"lr": 0.1, "mixup_alpha": 0.4}
    assert clip({"train": {"lr": 0.008, "mixup_alpha": 0.0}})["train"]["lr"] == 0.01


def test_exploit_generations_get_their_own_train_run(tmp_path: Path) -> None:
    from raycifar.sweep.schedulers import run_name

    assert run_name("t1", tmp_path, None) == "t1"
    (tmp_path / "t1").mkdir()
    (tmp_path / "t10").mkdir()  # another trial whose id starts alike
    assert run_name("t1", tmp_path, {"trial_id": "t1"}) == "t1", "its own checkpoint: continue its run"
    assert run_name("t1", tmp_path, {"trial_id": "t2"}) == "t1-g1"
    (tmp_path / "t1-g1").mkdir()
    assert run_name("t1", tmp_path, {"trial_id": "t1"}) == "t1-g1"
    assert run_name("t1", tmp_path, {"trial_id": "t2"}) == "t1-g2"


# --- a checkpoint of another config keeps this config's hyperparameters -----------------------


@pytest.mark.parametrize("schedule", ["cosine", "onecycle"])
def test_loading_a_donor_checkpoint_keeps_the_own_lr_and_weight_decay(tmp_path: Path, schedule: str) -> None:
    donor_train = TrainConfig(lr=0.1, weight_decay=5e-4, epochs=3, schedule=schedule, decay_norm_and_bias=False)
    with global_settings(donor_train, seed=0):
        donor = training(donor_train)
        donor.run_epoch(0)
    donor.save(tmp_path, epoch=1)
    own_train = donor_train.model_copy(update={"lr": 0.05, "weight_decay": 1e-3})
    with global_settings(own_train, seed=1):
        own = training(own_train)
        fresh = [dict(group) for group in own.optimizer.param_groups]
        assert own.load(tmp_path) == 1
    assert all(torch.equal(a, b) for a, b in zip(own.net.state_dict().values(), donor.net.state_dict().values(), strict=True))
    assert own.schedule.last_epoch == donor.schedule.last_epoch, "the donor's schedule position"
    for mine, theirs, before in zip(own.optimizer.param_groups, donor.optimizer.param_groups, fresh, strict=True):
        assert mine["initial_lr"] == before["initial_lr"] and mine.get("max_lr") == before.get("max_lr")
        assert mine["lr"] == pytest.approx(theirs["lr"] / 2), "the donor's position at half the donor's rate"
        assert mine["weight_decay"] == before["weight_decay"]
    assert [g["weight_decay"] for g in own.optimizer.param_groups] == [1e-3, 0.0]
    assert own.schedule.base_lrs == [group["initial_lr"] for group in fresh]


# --- end to end: one smoke sweep per scheduler -------------------------------------------------

SMOKE_SPACE = """
description: scheduler smoke test
budget: 100000
arch: {model: resnet20, depths: [1, 1], base_width: 8}
train:
  lr: {loguniform: [0.02, 0.2]}
  batch_size: 64
  epochs: 2
  schedule: onecycle
scheduler: {settings}
"""
SETTINGS = {
    "hyperband": "{name: hyperband, reduction_factor: 2}",
    "median": "{name: median, grace_period: 1, min_samples_required: 1}",
    "fifo": "{name: fifo}",
    "pbt": "{name: pbt, perturbation_interval: 1, synch: true, quantile_fraction: 0.5}",
}


def smoke_sweep(tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar, name: str) -> tuple[Path, dict, list[dict]]:
    """A 2-trial, 2-epoch sweep under scheduler ``name`` on the shared Ray: (results dir,
    the promoted leaderboard row, every reported epoch of every trial)."""
    path = tmp_path / f"{name}_space.yaml"
    path.write_text(SMOKE_SPACE.replace("{settings}", SETTINGS[name]))
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(path), "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--num-samples", "2", "--seed", "3", "--wandb", "off", "--address", ray_address,
                     "--max-concurrent-trials", "2", cwd=tmp_path, timeout=600)  # fmt: skip
    assert "promoted to the leaderboard" in sweep.stdout
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json", cwd=tmp_path).stdout)
    reported = [json.loads(line) for p in (results / "sweeps").glob("*/trial_*/result.json") for line in p.read_text().splitlines()]
    return results, row, reported


def assert_best_epoch_promoted(row: dict, reported: list[dict]) -> None:
    assert 0 < row["params"] <= 100_000
    assert (row["val_acc"], row["epochs"]) == max((r["val_acc"], r["epoch"]) for r in reported)


@pytest.mark.slow
@pytest.mark.usefixtures("short_tmpdir")
def test_pbt_exploits_and_the_trial_continues_from_the_donor_checkpoint(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    _, row, reported = smoke_sweep(tmp_path, cifar_dir, ray_address, raycifar, "pbt")
    assert_best_epoch_promoted(row, reported)
    exploited = [r for r in reported if r["restored_from"]]
    assert exploited, "PBT exploited no trial (no Tune checkpoints?)"
    first = min(exploited, key=lambda r: r["epoch"])
    donor = Path(first["restored_from"])
    assert donor.parent.name != f"trial_{first['trial_id']}" and first["train_run"] == f"{first['trial_id']}-g1"
    donor_epoch = int(torch.load(donor / STATE_FILE, weights_only=True)["epoch"])
    assert first["epoch"] == donor_epoch + 1, "the exploited trial went on from the donor's epoch"
    donor_lr = json.loads((donor / "config.json").read_text())["train"]["lr"]
    assert first["config"]["train"]["lr"] != donor_lr, "PBT perturbed the donor's learning rate"

    # The recipient's next epoch, redone here from the donor's files, gives the same weights.
    config = TrialConfig.model_validate(first["config"])
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the worker (one CPU per trial)
    try:
        loaders = make_loaders(config, torch.device("cpu"), 0, 1, 1, EVAL_BATCH_SIZE)
        with global_settings(config.train, config.seed):
            redone = Training(config, loaders.train, loaders.val, torch.device("cpu"))
            assert redone.load(donor) == donor_epoch
            redone.run_epoch(donor_epoch)
    finally:
        torch.set_num_threads(threads)
    (tmp_path / "redone").mkdir()
    redone.save(tmp_path / "redone", donor_epoch + 1)
    recipient = load_file(str(Path(first["checkpoint_path"]) / "model.safetensors"))
    expected = load_file(str(tmp_path / "redone" / "model.safetensors"))
    before = load_file(str(donor / "model.safetensors"))
    assert recipient.keys() == expected.keys()
    for key in expected:
        torch.testing.assert_close(recipient[key], expected[key], msg=key)
    assert any(not torch.equal(recipient[k], before[k]) for k in before), "it trained an epoch on them"
