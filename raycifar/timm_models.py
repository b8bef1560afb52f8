"""Register raycifar's model family with timm, under the ``raycifar_`` prefix.

After ``import raycifar.timm_models``, ``timm.create_model("raycifar_resnet18", num_classes=10)``
builds the same network as ``raycifar.models.create_model("resnet18")``; keyword arguments are
the :class:`~raycifar.config.ModelConfig` overrides (``drop_path=0.1``, ``se_width=16`` ...).

A promoted leaderboard entry (any searched architecture, with its trained weights) loads
through timm as ``raycifar_entry``: ``timm.create_model("raycifar_entry", pretrained=True,
entry="<entry id or folder>", results_dir="raycifar_results")``, the same model as
:func:`raycifar.load_model`.

timm's generic factory arguments (those ``timm.create_model`` and timm's ``train.py`` pass to
any model; see :data:`GENERIC`) keep timm's meaning where raycifar's models have it, and are
refused with a :class:`TimmArgumentError` naming the argument where they do not (see
:data:`HONOURED` and :data:`REFUSED`). An argument set to ``None`` is timm's "not set", and the
"off" value of a refused one (``in_chans=3``, ``features_only=False`` ...) is accepted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from timm.models import register_model
from torch import nn

from raycifar.config import ModelConfig
from raycifar.errors import UserError
from raycifar.models.registry import VARIANTS
from raycifar.models.resnet import CifarResNet, create_model

PREFIX = "raycifar_"
POOLS = ("avg", "max", "avgmax", "fast")  # timm's global_pool types that keep the feature width
# timm's generic arguments that keep timm's meaning here (the others: REFUSED)
HONOURED = {
    "pretrained": "raycifar_entry loads the entry's weights (the variants have none: refused)",
    "num_classes": "the classifier's outputs; 0 removes the classifier (pooled features out)",
    "drop_rate": "dropout before the classifier (arch.dropout)",
    "drop_path_rate": "stochastic depth (arch.drop_path); drop_connect_rate is its old name",
    "global_pool": f"the head's pooling: {', '.join(POOLS)}",
    "bn_momentum": "momentum of every BatchNorm layer",
    "bn_eps": "eps of every BatchNorm layer",
    "device": "where the parameters are",
    "dtype": "the parameters' floating-point type",
    "cache_dir": "accepted: nothing is downloaded, so nothing is cached",
}


class TimmArgumentError(ValueError):
    """A timm argument that a raycifar model cannot honour; the message names it."""


def _refuse(model: str, name: str, value: object, why: str) -> TimmArgumentError:
    return TimmArgumentError(f"{model}: {name}={value!r} is not supported: {why}")


# timm's generic arguments raycifar cannot honour: the value that means "off", and why
REFUSED: dict[str, tuple[object, str]] = {
    "in_chans": (3, "raycifar's models take 3-channel (RGB) images"),
    "drop_block_rate": (0, "raycifar's blocks have no DropBlock (arch.block_dropout is element dropout)"),
    "features_only": (False, "raycifar's models are classifiers without timm's feature_info"),
    "out_indices": (None, "there is no features_only model to pick stages of"),
    "feature_cls": (None, "there is no features_only model"),
    "feature_cfg": (None, "there is no features_only model"),
    "output_stride": (32, "the stages' strides are fixed for 32 x 32 images"),
    "pruned": (False, "there are no pruned variants"),
    "pretrained_cfg": (None, "raycifar's weights come from its results folder, not a timm pretrained config"),
    "pretrained_cfg_overlay": (None, "raycifar's weights come from its results folder, not a timm pretrained config"),
    "pretrained_strict": (True, "there are no timm pretrained weights to load"),
    "pretrained_model_args": (None, "it describes a Hugging Face Hub checkpoint"),
}


def _model_overrides(model: str, args: dict[str, Any]) -> dict[str, Any]:
    """timm's names turned into ModelConfig fields (drop_rate -> dropout, drop_path_rate ->
    drop_path; cache_dir and the "off" values of :data:`REFUSED` dropped); a refusal for the
    generic arguments raycifar cannot honour."""
    for name, value in list(args.items()):
        if name == "cache_dir" or (name in REFUSED and value == REFUSED[name][0]):
            del args[name]
        elif name in REFUSED:
            raise _refuse(model, name, value, REFUSED[name][1])
    if "drop_connect_rate" in args:
        if args.setdefault("drop_path_rate", args["drop_connect_rate"]) != args["drop_connect_rate"]:
            raise _refuse(
                model, "drop_connect_rate", args["drop_connect_rate"], "it is drop_path_rate's old name; give one"
            )
        del args["drop_connect_rate"]
    renamed = {"drop_rate": "dropout", "drop_path_rate": "drop_path"}
    return {renamed.get(k, k): v for k, v in args.items()}


def _check_fields(model: str, overrides: dict[str, Any]) -> None:
    """Each override a ModelConfig field with a valid value; else an error naming it (by the
    name it was given: ``drop_rate``, not ``dropout``)."""
    from pydantic import TypeAdapter, ValidationError

    known = set(ModelConfig.model_fields) | {"base_width"}
    given_as = {"dropout": "drop_rate", "drop_path": "drop_path_rate"}
    for name, value in overrides.items():
        if name not in known:
            options = ", ".join(sorted(known - {"num_classes"}))
            raise TimmArgumentError(
                f"{model}: unknown argument {name}={value!r}; timm's generic arguments: "
                f"{', '.join([*HONOURED, *REFUSED])}; raycifar model options: {options}"
            )
        field = ModelConfig.model_fields.get(name)
        if field is not None:
            try:
                kind = Annotated[(field.annotation, *field.metadata)] if field.metadata else field.annotation
                TypeAdapter(kind).validate_python(value)
            except ValidationError as err:
                why = err.errors()[0]["msg"].removeprefix("Value error, ").lower()
                raise _refuse(model, given_as.get(name, name), value, why) from None


def _set_pool(model: nn.Module, name: str, pool: str) -> None:
    """timm's ``global_pool``: the head's pooling (kept as built when it already is ``pool``)."""
    if pool not in POOLS:
        why = f"the classifier needs one pooled vector per channel ({', '.join(POOLS)})"
        raise _refuse(name, "global_pool", pool, why)
    built = {nn.AdaptiveAvgPool2d: "avg", nn.AdaptiveMaxPool2d: "max"}.get(type(model.head.pool))
    if pool != built:
        from timm.layers import SelectAdaptivePool2d

        model.head.pool = SelectAdaptivePool2d(pool_type=pool, flatten=False)


def _finish(model: nn.Module, name: str, after: dict[str, Any]) -> nn.Module:
    """Apply the arguments that change a built model: global_pool, bn_momentum, bn_eps,
    num_classes=0, device and dtype."""
    if after.get("global_pool") is not None:
        _set_pool(model, name, after["global_pool"])
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = after.get("bn_momentum", module.momentum)
            module.eps = after.get("bn_eps", module.eps)
    if after.get("num_classes") == 0:
        model.head.fc = nn.Identity()
    model.num_classes = after.get("num_classes", getattr(model, "num_classes", None))
    if after.get("device") is not None:
        model.to(device=after["device"])
    if after.get("dtype") is not None:
        model.to(dtype=after["dtype"])
    return model


def _split(args: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    after_keys = ("global_pool", "bn_momentum", "bn_eps", "device", "dtype")
    return {k: v for k, v in args.items() if k not in after_keys}, {k: v for k, v in args.items() if k in after_keys}


def _entrypoint(variant: str) -> Callable[..., CifarResNet]:
    name = f"{PREFIX}{variant}"

    def build(pretrained: bool = False, num_classes: int = 10, **kwargs: Any) -> CifarResNet:
        if pretrained:
            raise _refuse(name, "pretrained", pretrained, "it has no pretrained weights: train it with raycifar, "
                          "then load the entry as raycifar_entry")  # fmt: skip
        given = {k: v for k, v in kwargs.items() if v is not None}
        before, after = _split(_model_overrides(name, given))
        _check_fields(name, before)
        try:
            model = create_model(variant, num_classes=num_classes or 2, **before)
        except UserError as err:
            raise TimmArgumentError(f"{name}: {err}") from None
        return _finish(model, name, {**after, "num_classes": num_classes})

    build.__name__ = build.__qualname__ = name
    build.__doc__ = VARIANTS[variant].description
    return build


for _variant in VARIANTS:
    register_model(_entrypoint(_variant))


def _untrained(entry: str, results_dir: str) -> nn.Module:
    """The entry's architecture with fresh weights (timm's ``pretrained=False``), eval mode."""
    from raycifar.entries.load import entry_folder
    from raycifar.models.files import read_config
    from raycifar.models.resnet import build_model

    return build_model(read_config(entry_folder(entry, results_dir)).model).eval()


@register_model
def raycifar_entry(
    pretrained: bool = True, entry: str | None = None, results_dir: str = "raycifar_results", **kwargs: Any
) -> CifarResNet:
    """A promoted raycifar leaderboard entry with its trained weights (eval mode, CPU); with
    ``pretrained=False`` (timm's default) its architecture with fresh weights."""
    from raycifar.entries.load import load_model

    name = "raycifar_entry"
    if entry is None:
        raise TimmArgumentError("raycifar_entry needs entry=<entry id or folder> (see raycifar leaderboard)")
    given = {k: v for k, v in kwargs.items() if v is not None}
    before, after = _split(_model_overrides(name, given))
    model = load_model(entry, results_dir) if pretrained else _untrained(entry, results_dir)
    trained = model.head.fc.out_features
    classes = before.pop("num_classes", trained)
    if classes not in (trained, 0):
        raise _refuse(
            name, "num_classes", classes, f"the entry was trained for {trained} classes (0 removes the classifier)"
        )
    if "dropout" in before:
        for module in model.head.modules():
            if isinstance(module, nn.Dropout):
                module.p = before.pop("dropout")
                break
    if before:
        key, value = next(iter(before.items()))
        raise _refuse(name, {"drop_path": "drop_path_rate"}.get(key, key), value,
                      "an entry's architecture is the one it was trained with; raycifar_entry takes entry=, "
                      "results_dir= and timm's generic arguments")  # fmt: skip
    return _finish(model, name, {**after, "num_classes": classes})
