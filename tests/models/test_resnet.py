"""The model family: every registered variant, golden counts, exact counting, options, timm."""

from __future__ import annotations

import pytest
import torch
import torchvision
from timm.layers import DropPath, SEModule

from raycifar.config import ModelConfig
from raycifar.errors import UserError
from raycifar.models.budget import count_macs, count_params, fit_widths, scaled_widths
from raycifar.models.registry import VARIANTS, model_name, variant_config
from raycifar.models.resnet import BasicBlock, build_model, create_model

RESNET18 = ModelConfig(depths=(2, 2, 2, 2), widths=(64, 128, 256, 512))
EVERY_OPTION = {
    "se_width": 6, "block_dropout": 0.1, "drop_path": 0.2, "pool_after_stage": True,
    "head_hidden": 24, "dropout": 0.3,
}  # fmt: skip


def real_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def torchvision_cifar_resnet(factory, num_classes: int) -> torch.nn.Module:
    """torchvision's ResNet with conv1 replaced by a 3x3 stride-1 conv and a ``num_classes``-way fc."""
    model = factory(num_classes=num_classes)
    model.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
    return model


@pytest.mark.parametrize(
    ("name", "factory", "num_classes", "golden"),
    [
        ("resnet18", torchvision.models.resnet18, 10, 11_173_962),
        ("resnet34", torchvision.models.resnet34, 10, 21_282_122),
        ("resnet18", torchvision.models.resnet18, 100, 11_220_132),
        ("resnet34", torchvision.models.resnet34, 100, 21_328_292),
        ("resnet50", torchvision.models.resnet50, 10, 23_520_842),
    ],
)
def test_golden_counts_equal_torchvision_with_a_cifar_stem(name, factory, num_classes, golden) -> None:
    assert real_count(torchvision_cifar_resnet(factory, num_classes)) == golden
    assert count_params(variant_config(name, num_classes)) == golden
    assert real_count(create_model(name, num_classes=num_classes, device="meta")) == golden


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_registered_model_trains_a_step_and_is_counted_exactly(name: str) -> None:
    small = {"base_width": 8} if variant_config(name).widths[0] == 64 else {}
    model = create_model(name, num_classes=10, **small)
    logits = model(torch.randn(2, 3, 32, 32))
    assert logits.shape == (2, 10)
    torch.nn.functional.cross_entropy(logits, torch.tensor([0, 1])).backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert count_params(variant_config(name)) == real_count(create_model(name, device="meta"))


@pytest.mark.parametrize("name", ["resnet18", "seresnet20", "preact_resnet50"])
def test_count_is_exact_with_every_option_on(name: str) -> None:
    config = variant_config(name, 100, **EVERY_OPTION)
    model = build_model(config)
    assert count_params(config) == real_count(model)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)


def test_each_sized_option_changes_the_count() -> None:
    base = variant_config("resnet20")
    for option in ({"se_ratio": 4}, {"se_width": 3}, {"head_hidden": 32}, {"block": "bottleneck"}, {"stem": "imagenet"}):
        assert count_params(variant_config("resnet20", **option)) != count_params(base), option


def test_macs_of_resnet18_and_of_the_imagenet_stem() -> None:
    assert count_macs(RESNET18) == 555_422_720  # 0.56 GMAC per 32x32 image
    assert count_macs(variant_config("resnet18", stem="imagenet")) < count_macs(RESNET18) / 10


def test_a_network_that_shrinks_the_image_to_nothing_is_refused() -> None:
    with pytest.raises(UserError, match=r"model resnet18: .*32x32 image shrinks to nothing: feature maps \[7, 3, 1, 0\]"):
        variant_config("resnet18", stem="imagenet", pool_after_stage=True)
    assert variant_config("resnet20", stem="imagenet", pool_after_stage=True).feature_sizes() == [7, 3, 1]


def test_unknown_model_lists_the_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown model 'resnet19'; known models: resnet10, .*resnet18"):
        create_model("resnet19")


def test_drop_path_drops_whole_samples_only_while_training() -> None:
    drop = create_model("resnet20", drop_path=0.5).stages[2][2].drop_path  # the last block: rate 0.5
    assert isinstance(drop, DropPath) and drop.drop_prob == 0.5
    x = torch.ones(64, 2, 3, 3)
    torch.manual_seed(0)
    out = drop(x)
    per_sample = out.flatten(1)
    assert set(per_sample.unique().tolist()) == {0.0, 2.0}
    assert (per_sample == 0).all(1).sum() > 10 and (per_sample == 2).all(1).sum() > 10
    assert torch.equal(drop.eval()(x), x)


def test_drop_path_grows_linearly_over_blocks() -> None:
    model = create_model("resnet20", drop_path=0.2)
    rates = [m.drop_prob for m in model.modules() if isinstance(m, DropPath)]
    assert len(rates) == 8 and rates[-1] == pytest.approx(0.2)  # the first block's rate is 0: no module
    assert rates == sorted(rates)


def test_block_dropout_and_head_mlp_change_the_forward_pass() -> None:
    torch.manual_seed(0)
    x = torch.randn(4, 3, 32, 32)
    plain = create_model("resnet20").eval()
    dropped = create_model("resnet20", block_dropout=0.5).eval()
    dropped.load_state_dict(plain.state_dict())
    assert torch.allclose(plain(x), dropped(x))
    assert not torch.allclose(plain.train()(x), dropped.train()(x))
    head = create_model("resnet20", head_hidden=800).head
    assert head.hidden.out_features == 800 and head.fc.in_features == 800


def test_se_sits_on_the_residual_branch_of_every_block() -> None:
    model = create_model("seresnet18", se_width=5)
    se_layers = [m for name, m in model.named_modules() if name.endswith(".se")]
    assert len(se_layers) == 8 and all(layer.fc1.out_channels == 5 for layer in se_layers)


def reference_se(x: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
    """Squeeze-and-excitation in plain torch ops: mean over H, W -> 1x1 conv (bias) -> ReLU
    -> 1x1 conv (bias) -> sigmoid -> scale each channel of ``x``."""
    f = torch.nn.functional
    squeezed = x.mean((2, 3), keepdim=True)
    hidden = torch.relu(f.conv2d(squeezed, weights["fc1.weight"], weights["fc1.bias"]))
    return x * torch.sigmoid(f.conv2d(hidden, weights["fc2.weight"], weights["fc2.bias"]))


@pytest.mark.parametrize(("overrides", "stage", "channels", "hidden"), [({"se_width": 3}, 1, 32, 3), ({}, 0, 16, 2)])
def test_se_is_timms_module_with_the_hidden_width_as_given(
    overrides: dict, stage: int, channels: int, hidden: int
) -> None:
    """Widths 16/32/64: se_width 3 stays 3 and ratio 8 on 16 channels gives 2, where timm's
    defaults would round the hidden width to a multiple of 8; no norm layer in the SE path."""
    se = create_model("seresnet20", **overrides).stages[stage][0].se
    shapes = {name: tuple(p.shape) for name, p in se.named_parameters()}
    assert isinstance(se, SEModule)
    assert shapes == {
        "fc1.weight": (hidden, channels, 1, 1), "fc1.bias": (hidden,),
        "fc2.weight": (channels, hidden, 1, 1), "fc2.bias": (channels,),
    }  # fmt: skip
    torch.manual_seed(0)
    weights = {name: torch.randn_like(p) for name, p in se.state_dict().items()}
    se.load_state_dict(weights)
    x = torch.randn(3, channels, 5, 5)
    with torch.no_grad():
        assert torch.allclose(se(x), reference_se(x, weights), rtol=1e-6, atol=1e-6)
        assert torch.allclose(se.train()(x), reference_se(x, weights), rtol=1e-6, atol=1e-6)  # no batch norm


def test_model_name_counts_weighted_layers() -> None:
    assert model_name(RESNET18) == "resnet18-w64"
    assert model_name(variant_config("seresnet56")) == "seresnet56-w16-se8"
    assert model_name(variant_config("preact_resnet50", se_width=12)) == "preact_seresnet50-w64-sew12"


def test_the_family_is_registered_with_timm() -> None:
    import timm

    import raycifar.timm_models  # noqa: F401  (registers the family)

    model = timm.create_model("raycifar_resnet18", num_classes=10)
    assert real_count(model) == 11_173_962
    assert "raycifar_seresnet56" in timm.list_models("raycifar_*")
    with pytest.raises(ValueError, match="no pretrained weights"):
        timm.create_model("raycifar_resnet18", pretrained=True)


def conv_group_params(in_channels: int, width: int) -> int:
    """Two bias-free 3x3 convs (in -> width -> width), each followed by a BatchNorm (2 x width)."""
    return 9 * in_channels * width + 2 * width + 9 * width * width + 2 * width


def airbench_params(widths: tuple[int, ...], classes: int = 10) -> int:
    """The airbench layout counted by hand: 3x3 stem conv + BN, one convgroup per stage, linear head."""
    total, channels = 9 * 3 * widths[0] + 2 * widths[0], widths[0]
    for width in widths:
        total, channels = total + conv_group_params(channels, width), width
    return total + channels * classes + classes


def test_airbench_is_three_convgroups_counted_like_the_hand_formula() -> None:
    config = variant_config("airbench")
    assert config.widths == (64, 128, 256) and config.block == "convgroup"
    assert count_params(config) == airbench_params((64, 128, 256)) == 1_185_866
    assert real_count(create_model("airbench", device="meta")) == 1_185_866
    model = create_model("airbench")
    assert not any(isinstance(m, BasicBlock) for m in model.modules())  # no residual block anywhere
    assert isinstance(model.head.pool, torch.nn.AdaptiveMaxPool2d)


def test_airbench_pools_in_every_stage_to_the_feature_sizes_it_reports() -> None:
    for overrides in ({}, {"pool_after_stage": True}, {"stem": "imagenet"}):
        config = variant_config("airbench", base_width=8, **overrides)
        model = build_model(config)
        x = model.stem(torch.randn(2, 3, 32, 32))
        shapes = []
        for stage in model.stages:
            x = stage(x)
            shapes.append(tuple(x.shape[1:]))
        sizes = config.feature_sizes()
        assert shapes == [(w, s, s) for w, s in zip((8, 16, 32), sizes, strict=True)], overrides
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert variant_config("airbench").feature_sizes() == [16, 8, 4]
    assert variant_config("airbench", pool_after_stage=True).feature_sizes() == [15, 6, 2]


def test_airbench_fits_a_budget_to_the_widest_doubling_widths() -> None:
    fitted = fit_widths(variant_config("airbench"), 500_000)
    assert fitted.widths == (40, 80, 160)
    assert count_params(fitted) == airbench_params((40, 80, 160)) == 464_690
    wider = fitted.model_copy(update={"widths": scaled_widths(168, 3, 8)})
    assert count_params(wider) > 500_000  # the next step of the last stage is over budget
    assert count_macs(fitted) < count_macs(variant_config("airbench")) / 2


def test_airbench_takes_se_dropout_and_a_head_mlp_with_exact_counts() -> None:
    options = {key: value for key, value in EVERY_OPTION.items() if key != "drop_path"}
    config = variant_config("airbench", 100, base_width=16, **options)
    model = build_model(config)
    assert count_params(config) == real_count(model)
    assert model(torch.randn(2, 3, 32, 32)).shape == (2, 100)
    se_model = create_model("airbench", base_width=16, se_ratio=8)
    se_layers = [m for m in se_model.modules() if isinstance(m, SEModule)]
    assert [layer.fc1.out_channels for layer in se_layers] == [2, 4, 8]
    assert count_params(variant_config("airbench", base_width=16, se_ratio=8)) == real_count(se_model)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"preact": True}, r"model airbench: block convgroup has no pre-activation form: set preact: false"),
        ({"drop_path": 0.1}, r"model airbench: drop_path 0.1 needs a residual block; convgroup blocks have no shortcut"),
    ],
)
def test_airbench_refuses_what_needs_a_residual_block(overrides: dict, message: str) -> None:
    with pytest.raises(UserError, match=message):
        variant_config("airbench", **overrides)


def test_airbench_names_count_its_weighted_layers() -> None:
    assert model_name(variant_config("airbench")) == "airbench8-w64"
    assert model_name(variant_config("airbench", base_width=40, se_ratio=8)) == "seairbench8-w40-se8"
    assert model_name(variant_config("airbench", depths=(2, 2, 2))) == "airbench14-w64"
