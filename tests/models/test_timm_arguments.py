"""timm's generic factory arguments on the models raycifar registers with timm (issue 26,
kind 12): each is honoured with timm's meaning (checked against raycifar's own factory or
the model's modules) or refused with an error naming the argument; ``None`` is "not set"."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from board_files import exported_checkpoint
from torch import nn

import raycifar.timm_models  # noqa: F401 - registers raycifar_*
from raycifar.models.resnet import create_model
from raycifar.timm_models import REFUSED, TimmArgumentError

X = torch.rand(2, 3, 32, 32)


def built(name: str = "raycifar_resnet20", **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(name, **kwargs).eval()


def raycifar_model(variant: str = "resnet20", **overrides: object) -> nn.Module:
    torch.manual_seed(0)
    return create_model(variant, **overrides).eval()


def same(a: nn.Module, b: nn.Module) -> bool:
    return repr(a) == repr(b) and torch.equal(a(X), b(X))


HONOURED = {  # case -> (timm kwargs, check of the built model)
    "train.py's defaults (None: not set)": (
        dict(pretrained=False, in_chans=None, num_classes=10, drop_rate=0.0, drop_path_rate=None, drop_block_rate=None,
             global_pool=None, bn_momentum=None, bn_eps=None, scriptable=False, checkpoint_path=None),
        lambda m: same(m, raycifar_model())),
    "the off values of refused ones": (
        dict(in_chans=3, features_only=False, drop_block_rate=0.0, output_stride=32, pretrained_cfg=None,
             pretrained_cfg_overlay=None, cache_dir="/nowhere"),
        lambda m: same(m, raycifar_model())),
    "num_classes": (dict(num_classes=100), lambda m: same(m, raycifar_model(num_classes=100)) and m(X).shape == (2, 100)),
    "drop_rate": (dict(drop_rate=0.3), lambda m: repr(m) == repr(raycifar_model(dropout=0.3))),
    "drop_path_rate": (dict(drop_path_rate=0.2), lambda m: repr(m) == repr(raycifar_model(drop_path=0.2))),
    "drop_connect_rate": (dict(drop_connect_rate=0.2), lambda m: repr(m) == repr(raycifar_model(drop_path=0.2))),
    "global_pool avg": (dict(global_pool="avg"), lambda m: same(m, raycifar_model())),
    "global_pool max": (dict(global_pool="max"),
                        lambda m: torch.equal(m(X), _max_pooled(raycifar_model()))),
    "bn_momentum and bn_eps": (dict(bn_momentum=0.01, bn_eps=1e-3),
                               lambda m: {(b.momentum, b.eps) for b in m.modules() if isinstance(b, nn.BatchNorm2d)} == {(0.01, 1e-3)}),
    "dtype": (dict(dtype=torch.float64), lambda m: {p.dtype for p in m.parameters()} == {torch.float64}),
    "device": (dict(device="meta"), lambda m: {p.device.type for p in m.parameters()} == {"meta"}),
}  # fmt: skip


def _max_pooled(model: nn.Module) -> torch.Tensor:
    """The reference for global_pool="max": the model's own features, max-pooled by hand."""
    features: list[torch.Tensor] = []
    hook = model.head.register_forward_pre_hook(lambda _, args: features.append(args[0]))
    model(X)
    hook.remove()
    return model.head.fc(features[0].amax(dim=(2, 3)))


@pytest.mark.parametrize("case", HONOURED)
def test_a_generic_argument_keeps_timms_meaning(case: str) -> None:
    kwargs, check = HONOURED[case]
    assert check(built(**kwargs))


def test_num_classes_zero_returns_the_pooled_features() -> None:
    features, full = built(num_classes=0), built(num_classes=10)
    assert features(X).shape == (2, full.head.fc.in_features)
    assert torch.allclose(full.head.fc(features(X)), full(X), atol=1e-6)


REFUSALS = {  # timm kwargs -> the argument the error must name
    **{f"{name}": {name: "something"} for name in REFUSED},
    "in_chans=1": {"in_chans": 1},
    "pretrained": {"pretrained": True},
    "global_pool catavgmax": {"global_pool": "catavgmax"},
    "global_pool ''": {"global_pool": ""},
    "drop_rate out of range": {"drop_rate": 1.5},
    "drop_connect_rate and drop_path_rate differ": {"drop_connect_rate": 0.1, "drop_path_rate": 0.2},
    "an argument timm does not know either": {"img_size": 64},
}


@pytest.mark.parametrize("case", REFUSALS)
def test_a_generic_argument_raycifar_cannot_honour_is_refused_by_name(case: str) -> None:
    kwargs = REFUSALS[case]
    with pytest.raises(TimmArgumentError) as refused:
        built(**kwargs)
    named = next(iter(kwargs)) if len(kwargs) == 1 else "drop_connect_rate"
    message = str(refused.value)
    assert message.startswith("raycifar_resnet20: ") and f"{named}=" in message and "\n" not in message


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> str:
    return str(exported_checkpoint(tmp_path_factory.mktemp("timm") / "checkpoint", cifar_dir, seed=1))


def test_an_entry_honours_the_arguments_a_trained_model_can(entry: str) -> None:
    plain = built("raycifar_entry", entry=entry, pretrained=True)
    fresh = built("raycifar_entry", entry=entry)  # timm's default pretrained=False: the architecture, new weights
    assert repr(fresh) == repr(plain) and not torch.equal(fresh(X), plain(X))
    same = built("raycifar_entry", entry=entry, pretrained=True, in_chans=3, num_classes=10, cache_dir="x")
    assert torch.equal(same(X), plain(X))
    assert built("raycifar_entry", entry=entry, pretrained=True, drop_rate=0.25).head.dropout.p == 0.25
    features = built("raycifar_entry", entry=entry, pretrained=True, num_classes=0)
    assert torch.allclose(plain.head.fc(features(X)), plain(X), atol=1e-6)


@pytest.mark.parametrize(
    "kwargs", [{"num_classes": 100}, {"drop_path_rate": 0.1}, {"in_chans": 1}, {"features_only": True}]
)
def test_an_entry_refuses_by_name_what_would_change_its_trained_network(entry: str, kwargs: dict) -> None:
    with pytest.raises(TimmArgumentError, match=f"^raycifar_entry: {next(iter(kwargs))}="):
        built("raycifar_entry", entry=entry, pretrained=True, **kwargs)
