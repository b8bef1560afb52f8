"""AugMix on the device loader (raycifar.data.augmix): each operation against PIL's, per-image
randomness, the excluded operations, the consistency loss, and the loader and config wiring."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from loader_refs import image_set
from PIL import Image, ImageOps
from pydantic import ValidationError

from raycifar.config import AugmentConfig, ModelConfig, TrainConfig, TrialConfig
from raycifar.data import DeviceLoader
from raycifar.data import augmix as A
from raycifar.train.loss import BatchLoss


def gray_images(count: int, seed: int = 0) -> torch.Tensor:
    """(count, 3, 32, 32) float 0–255 images with structure (a ramp plus noise)."""
    rng = np.random.default_rng(seed)
    ramp = np.linspace(20, 200, 32)[None, None, None, :] + np.linspace(0, 40, 32)[None, None, :, None]
    return torch.from_numpy(np.clip(ramp + rng.normal(0, 15, (count, 3, 32, 32)), 0, 255).round()).float()


def pil_per_channel(images: torch.Tensor, transform) -> torch.Tensor:
    """``transform`` (a PIL "L" image -> image) applied to every channel of every image."""
    out = np.stack([
        np.stack([np.asarray(transform(Image.fromarray(channel.numpy().astype(np.uint8)))) for channel in image])
        for image in images
    ])  # fmt: skip
    return torch.from_numpy(out).float()


@pytest.mark.parametrize(
    ("name", "ours", "pils"),
    [
        ("autocontrast", lambda x: A.autocontrast(x), lambda x: pil_per_channel(x, ImageOps.autocontrast)),
        ("equalize", lambda x: A.equalize(x), lambda x: pil_per_channel(x, ImageOps.equalize)),
        ("posterize 3 bits", lambda x: A.posterize(x, torch.full((len(x),), 3.0)),
         lambda x: pil_per_channel(x, lambda im: ImageOps.posterize(im, 3))),
        ("solarize above 150", lambda x: A.solarize(x, torch.full((len(x),), 150.0)),
         lambda x: pil_per_channel(x, lambda im: ImageOps.solarize(im, 150))),
    ],
)  # fmt: skip
def test_each_colour_operation_matches_pil(name: str, ours, pils) -> None:
    images = gray_images(4)
    assert torch.equal(ours(images), pils(images)), name


def test_a_flat_channel_is_left_as_it_is_by_autocontrast_and_equalize() -> None:
    flat = torch.full((2, 3, 32, 32), 77.0)
    assert torch.equal(A.autocontrast(flat), flat) and torch.equal(A.equalize(flat), flat)


def test_translation_moves_whole_pixels_and_fills_black() -> None:
    images = gray_images(2)
    translate_x = A.OPERATIONS.index("translate_x")
    level = torch.tensor([3.0, 3.0])  # floor(3 * (32 / 3) / 10) = 3 pixels
    moved = A.apply_operations(images, torch.full((2,), translate_x), level, torch.tensor([1.0, -1.0]))
    assert torch.equal(moved[0, :, :, :-3], images[0, :, :, 3:]) and (moved[0, :, :, -3:] == 0).all()
    assert torch.equal(moved[1, :, :, 3:], images[1, :, :, :-3]) and (moved[1, :, :, :3] == 0).all()


def test_rotation_and_shear_agree_with_pil_about_the_centre() -> None:
    images = gray_images(1)
    rotate, shear_x = A.OPERATIONS.index("rotate"), A.OPERATIONS.index("shear_x")
    level, sign = torch.tensor([3.0]), torch.tensor([1.0])  # 9 degrees; shear 0.09
    ours = A.apply_operations(images, torch.tensor([rotate]), level, sign)
    pils = pil_per_channel(images, lambda im: im.rotate(9, resample=Image.BILINEAR))  # counter-clockwise
    inner = (slice(None), slice(None), slice(6, 26), slice(6, 26))
    assert (ours[inner] - pils[inner]).abs().mean() < 1.5
    ours = A.apply_operations(images, torch.tensor([shear_x]), level, sign)
    pils = pil_per_channel(images, lambda im: im.transform((32, 32), Image.AFFINE, (1, 0.09, -0.09 * 16, 0, 1, 0), Image.BILINEAR))
    assert (ours[inner] - pils[inner]).abs().mean() < 1.5


def test_every_image_of_a_batch_gets_its_own_augmix() -> None:
    one = gray_images(1).expand(64, -1, -1, -1).contiguous()
    mixed = A.augmix(one, torch.Generator().manual_seed(0))
    flat = mixed.flatten(1)
    distinct = torch.cdist(flat, flat) > 1.0
    assert distinct.sum() - distinct.diagonal().sum() == 64 * 63, "two images of the batch got the same AugMix"
    assert not torch.equal(mixed, one) and mixed.min() >= 0 and mixed.max() <= 255 + 1e-3
    again = A.augmix(one, torch.Generator().manual_seed(0))
    assert torch.equal(mixed, again), "the same generator state gives the same batch"


def test_augmix_never_applies_an_excluded_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    assert not set(A.OPERATIONS) & set(A.EXCLUDED_OPERATIONS)
    assert {"brightness", "contrast", "color", "sharpness"} <= set(A.EXCLUDED_OPERATIONS)
    seen: list[torch.Tensor] = []
    apply = A.apply_operations

    def recorded(images, operation, level, sign):  # noqa: ANN001, ANN202
        seen.append(operation.clone())
        return apply(images, operation, level, sign)

    monkeypatch.setattr(A, "apply_operations", recorded)
    A.augmix(gray_images(256), torch.Generator().manual_seed(1), A.AugMixSettings(severity=10))
    used = torch.cat(seen)
    assert set(used.unique().tolist()) == {-1, *range(len(A.OPERATIONS))}, "every allowed operation, nothing else"
    # what one allowed operation does to a flat grey image: its centre stays 128 (brightness, noise or
    # JPEG would move it; solarize starts above 180 at severity 3)
    grey = torch.full((64, 3, 32, 32), 128.0)
    centre = A.augmix(grey, torch.Generator().manual_seed(2), A.AugMixSettings(depth=1))[:, :, 12:20, 12:20]
    assert torch.allclose(centre, torch.full_like(centre, 128.0), atol=1e-3)


def test_jensen_shannon_matches_the_entropy_formula() -> None:
    logits = torch.randn(3 * 5, 10, generator=torch.Generator().manual_seed(0))
    parts = [part.softmax(1).double().numpy() for part in logits.chunk(3)]
    entropy = lambda p: -(p * np.log(p)).sum(axis=1)  # noqa: E731
    expected = (entropy(sum(parts) / 3) - sum(entropy(p) for p in parts) / 3).mean()
    assert math.isclose(float(A.jensen_shannon(logits)), expected, rel_tol=1e-4)
    same = torch.randn(5, 10).repeat(3, 1)
    assert float(A.jensen_shannon(same)) == pytest.approx(0.0, abs=1e-6)


def test_the_loader_gives_clean_images_then_two_augmix_views() -> None:
    images = image_set(40, seed=3)
    plain = DeviceLoader(images, 16, torch.device("cpu"), True, seed=5)
    views = DeviceLoader(images, 16, torch.device("cpu"), True, seed=5, augmix=A.AugMixSettings(), views=3)
    (clean, labels), (batch, same_labels) = next(iter(plain)), next(iter(views))
    assert batch.shape == (48, *clean.shape[1:]) and torch.equal(labels, same_labels)
    assert torch.equal(batch[:16], clean), "the first third is the plain loader's batch"
    assert not torch.allclose(batch[16:32], batch[32:]), "two different AugMix views"
    single = DeviceLoader(images, 16, torch.device("cpu"), True, seed=5, augmix=A.AugMixSettings())
    assert next(iter(single))[0].shape == clean.shape
    val = DeviceLoader(images, 16, torch.device("cpu"), False, augmix=A.AugMixSettings(), views=3)
    assert next(iter(val))[0].shape == clean.shape, "validation images are never augmented"


def trial(**augment: object) -> TrialConfig:
    return TrialConfig(
        space="t", data_dir="/d", params=1, model=ModelConfig(depths=(1,), widths=(8,)),
        train=TrainConfig(epochs=1), augment=AugmentConfig(**augment),
    )  # fmt: skip


def test_the_consistency_loss_is_the_clean_loss_plus_its_weight_times_js() -> None:
    config = trial(augmix=True, augmix_jsd=12.0)
    loss = BatchLoss.for_trial(config, torch.device("cpu"))
    logits = torch.randn(12, 10, generator=torch.Generator().manual_seed(4))
    labels = torch.tensor([1, 2, 3, 4])
    expected = torch.nn.functional.cross_entropy(logits[:4], labels) + 12.0 * A.jensen_shannon(logits)
    assert torch.allclose(loss(lambda x: x, logits, labels), expected)
    with pytest.raises(ValueError, match="3 views"):
        loss(lambda x: x, logits[:8], labels)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"augment": {"augmix_jsd": 12.0}}, "needs augmix: true"),
        ({"augment": {"augmix": True}, "loader": "torchvision"}, "device loader, not the torchvision loader"),
        ({"augment": {"augmix": True, "augmix_jsd": 1.0}, "train": {"epochs": 1, "mixup_alpha": 0.2}}, "mixup or cutmix"),
        ({"augment": {"augmix": True, "augmix_severity": 11}}, "augmix_severity"),
    ],
)
def test_augmix_settings_that_cannot_work_are_refused(settings: dict, message: str) -> None:
    base = {"space": "t", "data_dir": "/d", "params": 1, "model": {"depths": [1], "widths": [8]}, "train": {"epochs": 1}}
    with pytest.raises(ValidationError, match=message):
        TrialConfig.model_validate({**base, **settings})
