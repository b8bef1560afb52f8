"""The batch loss: timm Mixup/CutMix with switch probability, label smoothing, class weights."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.errors import UserError
from raycifar.train.loss import BatchLoss, class_weight_vector

CLASSES = 10


class Recorder(nn.Module):
    """A linear model that keeps the last input it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3 * 8 * 8, CLASSES)
        self.seen: torch.Tensor | None = None

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        self.seen = images.clone()
        return self.linear(images.flatten(1))


def _batch(n: int = 8) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 8, 8, generator=generator), torch.arange(n) % CLASSES


def _loss(
    train: TrainConfig, weights: torch.Tensor | None = None, epoch: int = 0
) -> tuple[float, torch.Tensor]:
    torch.manual_seed(0)
    model, (images, labels) = Recorder(), _batch()
    batch_loss = BatchLoss(train, CLASSES, weights)
    batch_loss.set_epoch(epoch)
    return batch_loss(model, images.clone(), labels).item(), model.seen


def test_without_regularizers_it_is_plain_cross_entropy() -> None:
    torch.manual_seed(0)
    model, (images, labels) = Recorder(), _batch()
    expected = nn.functional.cross_entropy(model(images), labels)
    assert BatchLoss(TrainConfig(), CLASSES)(
        model, images, labels
    ).item() == pytest.approx(expected.item())


def test_label_smoothing_mixes_in_the_uniform_target() -> None:
    torch.manual_seed(0)
    model, (images, labels) = Recorder(), _batch()
    log_p = model(images).log_softmax(1)
    by_hand = (0.8 * -log_p[torch.arange(len(labels)), labels] + 0.2 * -log_p.mean(1)).mean()
    got = _loss(TrainConfig(label_smoothing=0.2))[0]
    assert got == pytest.approx(by_hand.item()) and got != pytest.approx(_loss(TrainConfig())[0])


def test_class_weights_scale_each_images_loss() -> None:
    torch.manual_seed(0)
    model, (images, labels) = Recorder(), _batch()
    weights = torch.ones(CLASSES)
    weights[3] = weights[5] = 2.0  # cat and dog, as in seed 004
    per_image = nn.functional.cross_entropy(model(images), labels, reduction="none")
    expected = (per_image * weights[labels]).mean()
    got = BatchLoss(TrainConfig(), CLASSES, weights)(model, images, labels)
    assert got.item() == pytest.approx(expected.item())


def test_mixup_blends_each_image_with_its_mirror_in_the_batch() -> None:
    images, _ = _batch()
    _, seen = _loss(TrainConfig(mixup_alpha=1.0))
    partner = images.flip(0)
    lam = ((seen - partner) / (images - partner))[0].flatten()[0]
    assert 0 < lam < 1 and torch.allclose(
        seen, lam * images + (1 - lam) * partner, atol=1e-5
    )


def _is_cutmix(seen: torch.Tensor, images: torch.Tensor) -> bool:
    """Every changed pixel comes from the mirrored batch and the changes form one box."""
    changed = (seen != images).any(dim=1)
    rows, cols = torch.nonzero(changed.any(dim=0), as_tuple=True)
    from_partner = torch.equal(
        seen[:, :, changed.any(dim=0)], images.flip(0)[:, :, changed.any(dim=0)]
    )
    box = (
        int((rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1))
        if len(rows)
        else 0
    )
    return bool(changed.any()) and from_partner and box == len(rows)


def test_cutmix_pastes_one_box_from_the_mirrored_batch() -> None:
    images, _ = _batch()
    cutmix = [
        _is_cutmix(_loss(TrainConfig(cutmix_alpha=1.0), epoch=e)[1], images)
        for e in range(6)
    ]
    assert sum(cutmix) >= 5, "a draw may leave the box empty; most paste one"


def test_switch_probability_chooses_between_mixup_and_cutmix() -> None:
    images, _ = _batch()
    always_cutmix = TrainConfig(mixup_alpha=1.0, cutmix_alpha=1.0, mix_switch_prob=1.0)
    never_cutmix = TrainConfig(mixup_alpha=1.0, cutmix_alpha=1.0, mix_switch_prob=0.0)
    assert all(
        _is_cutmix(_loss(always_cutmix, epoch=e)[1], images) for e in range(1, 4)
    )
    assert not any(
        _is_cutmix(_loss(never_cutmix, epoch=e)[1], images) for e in range(1, 4)
    )


def test_mixing_is_seeded_by_epoch() -> None:
    train = TrainConfig(mixup_alpha=0.4, cutmix_alpha=1.0)
    first, again = _loss(train, epoch=2), _loss(train, epoch=2)
    assert first[0] == again[0] and torch.equal(first[1], again[1])
    assert _loss(train, epoch=2)[0] != pytest.approx(_loss(train, epoch=3)[0])


def test_odd_batches_leave_the_last_image_out_of_a_mixed_step() -> None:
    torch.manual_seed(0)
    model, (images, labels) = Recorder(), _batch(7)
    BatchLoss(TrainConfig(mixup_alpha=1.0), CLASSES)(model, images, labels)
    assert len(model.seen) == 6


def test_trial_class_weights_are_given_by_name() -> None:
    config = TrialConfig(
        space="s", data_dir="/d", params=1, model=ModelConfig(depths=(1,), widths=(8,)), train=TrainConfig(),
        class_weights={"cat": 1.5, "dog": 2.0},
    )  # fmt: skip
    weights = BatchLoss.for_trial(config, torch.device("cpu")).weight
    assert weights.tolist() == [1, 1, 1, 1.5, 1, 2.0, 1, 1, 1, 1]
    with pytest.raises(UserError, match=r"class_weights: 'kitten' is not a class name"):
        class_weight_vector({"kitten": 2.0}, ("cat", "dog"))
