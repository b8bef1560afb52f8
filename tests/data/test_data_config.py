"""Space-file keys of the data pipeline: dataset and label mode, loader, augmentation, class weights."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from raycifar.errors import UserError
from raycifar.models.budget import count_params
from raycifar.search.sample import sample_configs
from raycifar.space.find import load_space

BASE = {
    "budget": 200_000,
    "num_samples": 3,
    "arch": {"depths": [1, 1], "base_width": 8},
}


def _space(tmp_path: Path, **keys) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(yaml.safe_dump({**BASE, **keys}))
    return path


def _draw(path: Path, data_dir: Path):
    return sample_configs(load_space(str(path)), 3, seed=0, data_dir=data_dir).configs


def test_num_classes_follow_the_dataset_and_label_mode(tmp_path: Path) -> None:
    for keys, classes in (
        ({}, 10),
        ({"dataset": "cifar100"}, 100),
        ({"dataset": "cifar100", "label_mode": "coarse"}, 20),
    ):
        configs = _draw(_space(tmp_path, **keys), tmp_path)
        assert {c.model.num_classes for c in configs} == {classes}
        assert all(c.params == count_params(c.model) for c in configs), (
            "the budget counts the real classifier"
        )
    assert configs[0].label_mode == "coarse" and configs[0].dataset == "cifar100"


def test_augmentation_and_loader_keys_reach_the_trial_config(tmp_path: Path) -> None:
    path = _space(
        tmp_path,
        loader="torchvision",
        augment={
            "cutout": {"choice": [0, 8, 16]},
            "policy": "trivialaugment",
            "random_erasing": 0.25,
        },
        train={"cutmix_alpha": 1.0, "mix_switch_prob": 0.3},
        class_weights={"cat": 1.5, "dog": 1.5},
    )
    configs = _draw(path, tmp_path)
    assert {c.loader for c in configs} == {"torchvision"}
    assert {c.augment.policy for c in configs} == {"trivialaugment"} and configs[
        0
    ].augment.random_erasing == 0.25
    assert len({c.augment.cutout for c in configs}) > 1, "cutout is sampled"
    assert (
        configs[0].train.cutmix_alpha == 1.0 and configs[0].train.mix_switch_prob == 0.3
    )
    assert configs[0].class_weights == {"cat": 1.5, "dog": 1.5}


def test_defaults_keep_the_walking_skeletons_augmentation(tmp_path: Path) -> None:
    config = _draw(_space(tmp_path), tmp_path)[0]
    assert config.loader == "device" and config.label_mode == "fine"
    assert (
        config.augment.crop_padding,
        config.augment.flip,
        config.augment.cutout,
    ) == (4, True, 0)


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        (
            {"label_mode": "coarse"},
            r"label_mode: coarse labels exist only for cifar100, not cifar10",
        ),
        (
            {"class_weights": {"kitten": 2.0}},
            r"class_weights: 'kitten' is not a cifar10 class \(airplane,",
        ),
        (
            {"class_weights": {"cat": 0}},
            r"class_weights.cat: Input should be greater than 0",
        ),
        (
            {"augment": {"policy": "autoaugment"}},
            r"augment.policy: a per-image augmentation needs loader: torchvision",
        ),
        (
            {"loader": "ffcv", "augment": {"rotation": {"uniform": [0.0, 10.0]}}},
            r"augment.rotation: .*the ffcv loader",
        ),
        (
            {"loader": "dali"},
            r"loader: Input should be 'device', 'ffcv' or 'torchvision'",
        ),
        (
            {"augment": {"cutout": 40}},
            r"augment.cutout: 40: Input should be less than or equal to 32",
        ),
        ({"dataset": "svhn"}, r"dataset: Input should be 'cifar10' or 'cifar100'"),
    ],
)
def test_bad_data_keys_are_one_line_errors_naming_the_key(
    tmp_path: Path, keys: dict, message: str
) -> None:
    with pytest.raises(UserError, match=rf"space.yaml: {message}"):
        load_space(str(_space(tmp_path, **keys)))


def test_command_line_overrides_are_validated_with_the_file(tmp_path: Path) -> None:
    path = _space(
        tmp_path,
        loader="torchvision",
        augment={"policy": "randaugment"},
        class_weights={"people": 2.0},
    )
    with pytest.raises(
        UserError, match=r"class_weights: 'people' is not a cifar10 class"
    ):
        load_space(str(path))
    spec = load_space(str(path), {"dataset": "cifar100", "label_mode": "coarse"}).spec
    assert (spec.dataset, spec.label_mode, spec.class_weights) == (
        "cifar100",
        "coarse",
        {"people": 2.0},
    )
    with pytest.raises(
        UserError,
        match=r"space.yaml with --loader device --dataset cifar100 --label-mode coarse: augment.policy: a per-image",
    ):
        load_space(
            str(path),
            {"loader": "device", "dataset": "cifar100", "label_mode": "coarse"},
        )
