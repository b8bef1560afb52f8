"""Re-evaluation on other test sets: an out-of-distribution image folder, unlabeled images,
and CIFAR-100 models (no Ray needed)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from cifar_files import write_cifar100, write_image_folder
from loader_refs import hand_counted_accuracy
from PIL import Image

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import ImageSet, read_part
from raycifar.entries.evaluate import evaluate_on_test
from raycifar.errors import UserError
from raycifar.models.files import save_model_files
from raycifar.models.resnet import build_model


def exported_model(folder: Path, data_dir: Path, **trial: object) -> Path:
    classes = {"cifar10": 10, "cifar100": 100}[str(trial.get("dataset", "cifar10"))]
    classes = 20 if trial.get("label_mode") == "coarse" else classes
    config = TrialConfig(
        space="tiny", data_dir=str(data_dir), params=1, train=TrainConfig(epochs=1),
        model=ModelConfig(depths=(1,), widths=(8,), num_classes=classes), **trial,
    )  # fmt: skip
    torch.manual_seed(0)
    folder.mkdir()
    save_model_files(folder, build_model(config.model), config)
    return folder


def test_evaluate_on_an_out_of_distribution_image_folder(
    tmp_path: Path, cifar_dir: Path
) -> None:
    model = exported_model(tmp_path / "model", cifar_dir)
    test = read_part(cifar_dir, "test")
    write_image_folder(tmp_path / "ood", test.images[:40], test.labels[:40].tolist())
    on_folder = evaluate_on_test(model, tmp_path / "ood")
    first_40 = ImageSet(test.images[:40], test.labels[:40])
    assert on_folder["n"] == 40 and on_folder["test_acc"] == hand_counted_accuracy(model, first_40)
    assert evaluate_on_test(model, cifar_dir)["n"] == 200


def test_evaluate_refuses_unlabeled_images(tmp_path: Path, cifar_dir: Path) -> None:
    model = exported_model(tmp_path / "model", cifar_dir)
    (tmp_path / "photos").mkdir()
    Image.new("RGB", (32, 32)).save(tmp_path / "photos" / "a.png")
    with pytest.raises(
        UserError,
        match=r"photos: the test images are unlabeled; evaluation needs labels",
    ):
        evaluate_on_test(model, tmp_path / "photos")


def test_evaluate_a_cifar100_coarse_model(tmp_path: Path) -> None:
    data = write_cifar100(tmp_path / "data", train=20, test=30)
    model = exported_model(
        tmp_path / "model", data, dataset="cifar100", label_mode="coarse"
    )
    assert evaluate_on_test(model, data)["n"] == 30
