"""The validation split's corrupted twin (select: val_acc_shift | mean): held-out corruptions
only, each image as the public corruption function makes it, the same in every process."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from loader_refs import image_set

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import corruptions
from raycifar.data import shifted_val as S
from raycifar.data.catalog import CATALOG
from raycifar.data.loaders import make_loaders
from raycifar.data.readers import ImageSet


def test_the_twin_uses_only_the_four_held_out_corruptions(monkeypatch: pytest.MonkeyPatch) -> None:
    used: list[str] = []
    for name, function in list(corruptions.FUNCTIONS.items()):
        def recorded(images, severity, rngs, _name=name, _function=function):  # noqa: ANN001, ANN202
            used.append(_name)
            return _function(images, severity, rngs)

        monkeypatch.setitem(corruptions.FUNCTIONS, name, recorded)
    S.shifted_twin(image_set(200, seed=1), seed=7)
    assert set(used) == set(corruptions.VALIDATION) == {"speckle_noise", "gaussian_blur", "spatter", "saturate"}
    assert not set(used) & set(corruptions.BENCHMARK), "a test corruption was tuned on"


def test_each_image_is_corrupted_as_the_public_function_corrupts_it_at_its_index() -> None:
    val = image_set(60, seed=2)
    twin = S.shifted_twin(val, seed=5)
    place, severity = S.twin_plan(len(val), seed=5)
    for k in range(len(val)):
        name = corruptions.VALIDATION[place[k]]
        expected = corruptions.corrupt(val.images[k : k + 1], name, int(severity[k]), seed=5, start=k)
        assert np.array_equal(twin.images[k : k + 1], expected), (k, name, severity[k])
    assert np.array_equal(twin.labels, val.labels) and twin.class_names == val.class_names
    assert set(severity.tolist()) <= {1, 2, 3, 4, 5} and len(set(place.tolist())) == 4


def test_the_twin_depends_on_the_split_seed_only() -> None:
    val = image_set(40, seed=3)
    assert np.array_equal(S.shifted_twin(val, 1).images, S.shifted_twin(val, 1).images)
    assert not np.array_equal(S.shifted_twin(val, 1).images, S.shifted_twin(val, 2).images)


def trial(data_dir: str, select: str) -> TrialConfig:
    return TrialConfig(
        space="t", data_dir=data_dir, params=1, model=ModelConfig(depths=(1,), widths=(8,)),
        train=TrainConfig(epochs=1), select=select, val_fraction=0.2,
    )  # fmt: skip


def test_the_shift_loader_serves_the_twin_only_when_selected(cifar_dir) -> None:  # noqa: ANN001
    assert make_loaders(trial(str(cifar_dir), "val_acc"), torch.device("cpu"), 0, 1, 1, 64).shift is None
    loader = make_loaders(trial(str(cifar_dir), "mean"), torch.device("cpu"), 0, 1, 1, 64).shift
    from raycifar.data import train_val_split

    val = train_val_split(cifar_dir, 0.2, 0)[1]
    twin = S.shifted_twin(ImageSet(val.images, val.labels, val.class_names), 0)
    images = torch.cat([batch for batch, _ in loader])
    labels = torch.cat([label for _, label in loader])
    assert torch.equal(labels, torch.from_numpy(twin.labels))
    stats = CATALOG["cifar10"]
    restored = (images * torch.tensor(stats.std).view(1, 3, 1, 1) + torch.tensor(stats.mean).view(1, 3, 1, 1)) * 255
    assert (restored.round().permute(0, 2, 3, 1).to(torch.uint8).numpy() == twin.images).mean() > 0.999


def test_the_loaders_read_the_data_once_with_the_twin(cifar_dir, monkeypatch) -> None:  # noqa: ANN001
    import raycifar.data.loaders as loaders

    reads = []
    real = loaders.train_val_split
    monkeypatch.setattr(loaders, "train_val_split", lambda *args, **kwargs: reads.append(args) or real(*args, **kwargs))
    made = make_loaders(trial(str(cifar_dir), "mean"), torch.device("cpu"), 0, 1, 1, 64)  # no fingerprint: nothing kept
    assert made.shift is not None and len(made.shift.labels) == len(made.val.labels)
    assert len(reads) == 1, "the twin is made from the split the val loader reads, not from a second read"
