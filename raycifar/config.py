"""The one schema: resolved trial configs, the search-space models derived from them, and
loading space files.

A *trial config* (:class:`TrialConfig`) is one fully resolved point of a space: plain
values only, frozen, JSON-serialisable, and enough to reproduce the trial on its own. Its
sections (:class:`ModelConfig`, :class:`TrainConfig`, :class:`AugmentConfig`) declare every
option with its type, range and default, once.

A *space file* is YAML whose dimensions are constants or samplers (``{choice: [...]}``,
``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}``). Its sections
(:data:`TrainSpace`, :data:`AugmentSpace`, :class:`ArchSpace`) are *derived* from the
resolved sections: each option becomes a dimension of the same type, range and default.
:func:`load_space_file` validates a file completely before anything runs and raises
:class:`UserError` naming the file, the key and the problem. :func:`dimensions` walks every
dimension of every section.

This module imports neither torch nor Ray: read-only commands stay instant.
"""

from __future__ import annotations

import difflib
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    create_model,
    model_validator,
)

from raycifar.data.catalog import DatasetName, LabelMode, class_names
from raycifar.errors import UserError
from raycifar.yaml_load import load_yaml, parse_yaml

SAMPLERS = ("choice", "uniform", "loguniform", "randint")
DEFAULT_BUDGET = 5_000_000

# --- enumerations: each written once; the CLI takes its choices from these -----------------
LoaderName = Literal["device", "ffcv", "torchvision"]
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["cosine", "linear", "onecycle", "step", "multistep"]
TestTimeAugmentation = Literal["none", "flip", "flip_translate"]
Precision = Literal["auto", "fp32", "bf16"]
Policy = Literal["none", "autoaugment", "randaugment", "trivialaugment"]
Block = Literal["basic", "bottleneck"]
Stem = Literal["cifar", "imagenet"]
CompileSwitch = StrictBool | Literal["auto"]
TrainOn = Literal["train", "train+val"]  # what a run trains on: the split's train part, or train and val together


def choices(literal: Any) -> tuple[str, ...]:
    """The values of a ``Literal`` enumeration, e.g. ``choices(LoaderName)``."""
    return get_args(literal)


# --- value types ---------------------------------------------------------------------------
PositiveInt = Annotated[int, Field(ge=1)]
NonNegativeInt = Annotated[int, Field(ge=0)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
NonNegativeFloat = Annotated[float, Field(ge=0.0)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
Chance = Annotated[float, Field(ge=0.0, le=1.0)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
StageDepths = Annotated[list[PositiveInt], Field(min_length=1, max_length=6)]
Milestones = Annotated[tuple[Fraction, ...], Field(min_length=1)]
Padding = Annotated[int, Field(ge=0, le=16)]
CutoutSize = Annotated[int, Field(ge=0, le=32)]
Jitter = Annotated[float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[float, Field(ge=0.0, le=180.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)


# --- resolved configs ----------------------------------------------------------------------
class ModelConfig(_Strict):
    """A resolved CIFAR ResNet: one entry of ``depths`` and ``widths`` per stage.

    ``widths`` are the stage widths (a bottleneck stage outputs ``4 * width`` channels).
    Squeeze-and-excitation is off when both ``se_ratio`` and ``se_width`` are 0; its
    hidden width is ``se_width`` when set, else ``channels // se_ratio``.
    """

    block: Block = "basic"
    preact: StrictBool = False
    stem: Stem = "cifar"
    depths: tuple[PositiveInt, ...]
    widths: tuple[PositiveInt, ...]
    se_ratio: NonNegativeInt = 0
    se_width: NonNegativeInt = 0
    block_dropout: Probability = 0.0
    drop_path: Probability = 0.0
    pool_after_stage: StrictBool = False
    head_hidden: NonNegativeInt = 0
    dropout: Probability = 0.0
    num_classes: Annotated[int, Field(ge=2)] = 10

    @model_validator(mode="after")
    def _consistent(self) -> ModelConfig:
        if len(self.depths) != len(self.widths):
            raise ValueError(f"depths {self.depths} and widths {self.widths} must have one entry per stage")
        if self.se_ratio and self.se_width:
            raise ValueError("give se_ratio or se_width, not both")
        if min(self.feature_sizes()) < 1:
            raise ValueError(
                f"a 32x32 image shrinks to nothing: feature maps {self.feature_sizes()} per stage "
                f"(stem {self.stem}, pool_after_stage {self.pool_after_stage})"
            )
        return self

    def feature_sizes(self, image_size: int = 32) -> list[int]:
        """Side of the feature map after each stage for a square input image."""
        size = image_size if self.stem == "cifar" else image_size // 4  # 7x7/2 conv + 3x3/2 max-pool
        sizes = []
        for stage in range(len(self.depths)):
            size = -(-size // 2) if stage > 0 else size
            size -= 1 if self.pool_after_stage else 0
            sizes.append(size)
        return sizes


class TrainConfig(_Strict):
    """Resolved training hyperparameters of one trial (README: "Training options")."""

    optimizer: Optimizer = "sgd"
    lr: PositiveFloat = 0.1
    momentum: Probability = 0.9
    nesterov: StrictBool = True
    weight_decay: NonNegativeFloat = 5e-4
    decay_norm_and_bias: StrictBool = True
    grad_clip_norm: NonNegativeFloat = 0.0
    batch_size: PositiveInt = 128
    epochs: PositiveInt = 10
    schedule: Schedule = "cosine"
    warmup_epochs: NonNegativeFloat = 0.0
    step_epochs: PositiveInt = 5
    milestones: Milestones = (0.5, 0.75)
    lr_gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    label_smoothing: Probability = 0.0
    mixup_alpha: NonNegativeFloat = 0.0
    cutmix_alpha: NonNegativeFloat = 0.0
    mix_switch_prob: Chance = 0.5
    ema_decay: Probability = 0.0
    ema_every: PositiveInt = 1
    lookahead: StrictBool = False
    tta: TestTimeAugmentation = "none"
    precision: Precision = "auto"
    channels_last: StrictBool = False
    compile: CompileSwitch = "auto"
    cudnn_benchmark: StrictBool = True
    deterministic: StrictBool = False

    @model_validator(mode="after")
    def _lookahead_needs_ema(self) -> TrainConfig:
        if self.lookahead and self.ema_decay == 0:
            raise ValueError("lookahead: true resets the weights to their EMA, so it needs ema_decay > 0")
        return self


class AugmentConfig(_Strict):
    """Resolved image augmentation of one trial (see :mod:`raycifar.data.augment`).

    ``crop_padding``, ``flip`` and ``cutout`` work with every loader; the others are
    per-image policies of the torchvision loader.
    """

    crop_padding: Padding = 4
    flip: StrictBool = True
    cutout: CutoutSize = 0
    policy: Policy = "none"
    color_jitter: Jitter = 0.0
    rotation: Degrees = 0.0
    random_erasing: Chance = 0.0


PER_IMAGE_AUGMENTATIONS = ("policy", "color_jitter", "rotation", "random_erasing")


class TrialConfig(_Strict):
    """Everything one trial needs, as plain values: the unit handed to Ray."""

    space: str
    dataset: DatasetName = "cifar10"
    data_dir: str
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    budget: int = DEFAULT_BUDGET
    params: int
    model: ModelConfig
    train: TrainConfig
    label_mode: LabelMode = "fine"
    loader: LoaderName = "device"
    augment: AugmentConfig = AugmentConfig()
    class_weights: dict[str, float] = {}
    # "train+val": train on the whole official training part (the split's train and val parts
    # together). The val part is still scored every epoch but is no held-out score then: the
    # run keeps its last epoch, not its best val_acc (``raycifar train --train-on``).
    train_on: TrainOn = "train"


# --- dimensions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One search dimension: a constant or a sampler with its arguments."""

    sampler: str  # "constant" or one of SAMPLERS
    args: tuple

    def sample(self, rng: random.Random) -> Any:
        """Draw one value with ``rng``."""
        if self.sampler == "constant":
            return self.args[0]
        if self.sampler == "choice":
            return rng.choice(self.args)
        low, high = self.args
        if self.sampler == "uniform":
            return rng.uniform(low, high)
        if self.sampler == "loguniform":
            return math.exp(rng.uniform(math.log(low), math.log(high)))
        return rng.randint(low, high)  # randint: both ends inclusive

    def values(self) -> tuple:
        """The values a constant or a choice can take; the bounds of a range."""
        return self.args

    def can_be(self, value: Any) -> bool:
        """Whether a draw can produce ``value``."""
        if self.sampler in ("constant", "choice"):
            return value in self.args
        low, high = self.args
        return low <= value <= high

    def may_differ(self, value: Any) -> bool:
        """Whether a draw can produce something other than ``value``."""
        if self.sampler in ("constant", "choice"):
            return any(arg != value for arg in self.args)
        return self.args != (value, value)

    def describe(self) -> str:
        """``0.1`` for a constant, ``loguniform [0.01, 0.3]`` for a sampler (JSON values)."""
        import json

        if self.sampler == "constant":
            return json.dumps(self.args[0])
        return f"{self.sampler} {json.dumps(list(self.args))}"


KIND_HINTS = {
    "number": "numbers",
    "integer": "integers: use randint or choice",
    "other": "fixed values: use choice",
}


def _accepts(check: Any, value: Any) -> bool:
    try:
        check(value)
        return True
    except ValidationError:
        return False


def _value_kind(check: Any) -> str:
    """``number`` if the key takes fractions, ``integer`` if only whole numbers, else ``other``."""
    if _accepts(check, 0.5):
        return "number"
    return "integer" if _accepts(check, 1) else "other"


def _finite(value: Any) -> bool:
    """False for an infinite or NaN number anywhere in ``value`` (lists included)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(_finite(item) for item in value)
    return True


def _dimension(value_type: Any) -> BeforeValidator:
    """A pydantic validator turning a raw YAML value into a checked :class:`Dimension`.

    ``value_type`` validates every value the dimension can produce (constants, each
    choice, both bounds of a range); infinite and NaN numbers are refused everywhere.
    """
    check = TypeAdapter(value_type).validate_python
    kind = _value_kind(check)

    def valid(value: Any) -> Any:
        if not _finite(value):
            raise ValueError(f"{value!r}: must be a finite number")
        try:
            return check(value)
        except ValidationError as err:
            raise ValueError(f"{value!r}: {err.errors()[0]['msg']}") from None

    def parse(raw: Any) -> Dimension:
        if isinstance(raw, Dimension):
            return raw
        if not isinstance(raw, dict):
            return Dimension("constant", (valid(raw),))
        if len(raw) != 1 or next(iter(raw)) not in SAMPLERS:
            raise ValueError(f"a sampler is a mapping with exactly one of {', '.join(SAMPLERS)}; got {raw!r}")
        sampler, args = next(iter(raw.items()))
        if not isinstance(args, list) or not args:
            raise ValueError(f"{sampler} takes a non-empty list, got {args!r}")
        if sampler == "choice":
            return Dimension("choice", tuple(valid(a) for a in args))
        if len(args) != 2:
            raise ValueError(f"{sampler} takes [low, high], got {args!r}")
        if sampler == "randint" and kind != "integer":
            raise ValueError(f"randint draws integers; this key takes {KIND_HINTS[kind]}")
        if sampler in ("uniform", "loguniform") and kind != "number":
            raise ValueError(f"{sampler} draws fractional numbers; this key takes {KIND_HINTS[kind]}")
        low, high = (valid(a) for a in args)
        if low > high:
            raise ValueError(f"{sampler} low {low!r} is above high {high!r}")
        if low == high:
            raise ValueError(f"{sampler} [{low!r}, {high!r}] draws one value: write it as the constant {low!r}")
        if sampler == "loguniform" and low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {low!r}")
        return Dimension(sampler, (low, high))

    return BeforeValidator(parse)


def Dim(value_type: Any) -> Any:  # noqa: N802 - reads as a type in field declarations
    """Field type for a search dimension whose values are of ``value_type``."""
    return Annotated[Dimension, _dimension(value_type)]


def _value_type(config: type[BaseModel], key: str) -> Any:
    """The type of ``config.key`` with its constraints (``Field(gt=0)`` ...) attached."""
    info = config.model_fields[key]
    return Annotated[(info.annotation, *info.metadata)] if info.metadata else info.annotation


def _derive_space(
    config: type[BaseModel], name: str, base: type[_Strict], keys: tuple[str, ...], optional: bool = False
) -> type[_Strict]:
    """A space section whose field ``key`` is a dimension over ``config.key``'s type.

    Each dimension defaults to the constant default of ``config`` (or to None, meaning "the
    chosen model's value", when ``optional``).
    """
    fields: dict[str, Any] = {}
    for key in keys:
        dim = Dim(_value_type(config, key))
        if optional:
            fields[key] = (dim | None, None)
        else:
            fields[key] = (dim, Dimension("constant", (config.model_fields[key].default,)))
    return create_model(name, __base__=base, __module__=__name__, **fields)


class _TrainRules(_Strict):
    """Rules over several training dimensions (the per-key rules come from :class:`TrainConfig`)."""

    @model_validator(mode="after")
    def _lookahead_needs_ema(self) -> _TrainRules:
        if self.lookahead.can_be(True) and self.ema_decay.can_be(0.0):
            raise ValueError("lookahead: true resets the weights to their EMA, so every draw needs ema_decay > 0")
        return self


TrainSpace = _derive_space(TrainConfig, "TrainSpace", _TrainRules, tuple(TrainConfig.model_fields))
"""Training dimensions: one per :class:`TrainConfig` field, same type, range and default."""

AugmentSpace = _derive_space(AugmentConfig, "AugmentSpace", _Strict, tuple(AugmentConfig.model_fields))
"""Augmentation dimensions: one per :class:`AugmentConfig` field, same type, range and default."""

FIT = "fit"
WidthOrFit = PositiveInt | Literal["fit"]
SEWidthOrFit = NonNegativeInt | Literal["fit"]
MODEL_ONLY = ("depths", "widths", "se_width", "num_classes")  # set by the arch keys below, not copied
ARCH_OVERRIDES = tuple(key for key in ModelConfig.model_fields if key not in MODEL_ONLY)


class _ArchKeys(_Strict):
    """What a space says about a model that a resolved :class:`ModelConfig` does not hold:
    a registered name, stage depths as a list, and widths that may be ``fit`` to the budget."""

    model: Dim(str) = Dimension("constant", ("resnet18",))
    depths: Dim(StageDepths) | None = None
    base_width: Dim(WidthOrFit) | None = None
    width_multiple: PositiveInt = 8
    se_width: Dim(SEWidthOrFit) | None = None

    @model_validator(mode="after")
    def _one_way_to_size_se(self) -> _ArchKeys:
        ratios = () if self.se_ratio is None else self.se_ratio.values()
        widths = () if self.se_width is None else self.se_width.values()
        if any(ratios) and any(widths):
            raise ValueError(
                "se_ratio and se_width are two ways to size squeeze-and-excitation: "
                "give one of them (a non-zero se_width replaces the model's se_ratio)"
            )
        return self


ArchSpace = _derive_space(ModelConfig, "ArchSpace", _ArchKeys, ARCH_OVERRIDES, optional=True)
"""Architecture dimensions: a registered model (``raycifar model list``) plus overrides.

Every :class:`ModelConfig` option other than depths and widths is a dimension defaulting to
the chosen model's value. ``base_width`` and ``se_width`` may be ``fit``: solved per draw so
the model is the largest within the budget (see :mod:`raycifar.budget`).
"""


class SchedulerSettings(_Strict):
    """ASHA settings: rungs at ``grace_period * reduction_factor**k`` epochs."""

    grace_period: PositiveInt = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 2


SECTION_KEYS = ("arch", "train", "augment", "scheduler")


class SpaceFile(_Strict):
    """A validated search-space file. A missing or empty section takes every default."""

    description: str = ""
    dataset: DatasetName = "cifar10"
    label_mode: LabelMode = "fine"
    loader: LoaderName = "device"
    budget: PositiveInt = DEFAULT_BUDGET
    num_samples: PositiveInt = 8
    val_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    class_weights: dict[str, PositiveFloat] = {}
    arch: ArchSpace = ArchSpace()
    train: TrainSpace = TrainSpace()
    augment: AugmentSpace = AugmentSpace()
    scheduler: SchedulerSettings = SchedulerSettings()

    @model_validator(mode="before")
    @classmethod
    def _empty_sections_are_missing(cls, raw: Any) -> Any:
        if isinstance(raw, dict):
            return {k: v for k, v in raw.items() if not (k in SECTION_KEYS and v is None)}
        return raw

    @model_validator(mode="after")
    def _data_settings_fit(self) -> SpaceFile:
        if self.label_mode == "coarse" and self.dataset != "cifar100":
            raise ValueError(f"label_mode: coarse labels exist only for cifar100, not {self.dataset}")
        names = class_names(self.dataset, self.label_mode)
        unknown = sorted(set(self.class_weights) - set(names))
        if unknown:
            shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
            raise ValueError(f"class_weights: {unknown[0]!r} is not a {self.dataset} class ({shown})")
        if self.loader != "torchvision":
            for key in PER_IMAGE_AUGMENTATIONS:
                if getattr(self.augment, key).may_differ(AugmentConfig.model_fields[key].default):
                    raise ValueError(
                        f"augment.{key}: a per-image augmentation needs loader: torchvision "
                        f"(the {self.loader} loader does crop_padding, flip and cutout)"
                    )
        return self


def dimensions(spec: SpaceFile) -> Iterator[tuple[str, Dimension]]:
    """Every dimension of every section, as (``section.key``, dimension), in file order.

    Keys a space leaves to the chosen model (``arch`` overrides that are not set) are absent.
    """
    for section, _ in spec:
        value = getattr(spec, section)
        if isinstance(value, BaseModel):
            for key, dimension in value:
                if isinstance(dimension, Dimension):
                    yield f"{section}.{key}", dimension


def samplers(spec: SpaceFile) -> list[str]:
    """The keys of ``spec`` that are searched (a sampler, not a constant)."""
    return [key for key, dimension in dimensions(spec) if dimension.sampler != "constant"]


def _section_at(schema: type[BaseModel], path: tuple) -> type[BaseModel] | None:
    """The model class reached from ``schema`` by the field names in ``path`` (None if a
    step is not a model)."""
    for part in path:
        field = schema.model_fields.get(part) if isinstance(part, str) else None
        annotation = field.annotation if field is not None else None
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            return None
        schema = annotation
    return schema


def _unknown_key(schema: type[BaseModel] | None, loc: tuple) -> str:
    """``unknown key (did you mean lr?)``: the closest known key of that section (difflib),
    or the section's keys when none is close."""
    section = _section_at(schema, loc[:-1]) if schema is not None else None
    if section is None:
        return "unknown key"
    known = list(section.model_fields)
    close = closest(str(loc[-1]), known)
    return f"unknown key (did you mean {close}?)" if close else f"unknown key (known keys: {', '.join(known)})"


def closest(word: str, known: list[str]) -> str | None:
    """The known word closest to ``word`` (difflib ratio at least 0.6, or one that starts
    with it), or None."""
    close = difflib.get_close_matches(word, known, n=1, cutoff=0.6)
    if close:
        return close[0]
    return next((name for name in known if word and name.startswith(word)), None)


def format_validation_error(source: str, err: ValidationError, schema: type[BaseModel] | None = None) -> str:
    """One line naming the source, the dotted key and the problem of the first error.

    ``schema`` is the model that was validated (default: the one named by ``err.title`` if it
    is :class:`SpaceFile` or :class:`TrialConfig`); an unknown key is matched against its keys
    for a did-you-mean.
    """
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        schema = schema or {"SpaceFile": SpaceFile, "TrialConfig": TrialConfig}.get(err.title)
        message = _unknown_key(schema, tuple(first["loc"]))
    elif first["type"] not in ("value_error", "missing"):
        message = f"{message} (got {first.get('input')!r})"
    extra = f" (and {err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{source}: {key + ': ' if key else ''}{message}{extra}"


def load_space_file(path: Path, overrides: dict[str, Any] | None = None) -> SpaceFile:
    """Read and validate a space file; raise :class:`UserError` with a one-line reason.

    ``overrides`` replace top-level keys before validation; they come from command-line
    options named after the key (``label_mode`` from ``--label-mode``), which errors name.
    """
    raw = load_yaml(path)
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {raw!r}")
    source = str(path)
    if overrides:
        source += " with " + " ".join(f"--{key.replace('_', '-')} {value}" for key, value in overrides.items())
    try:
        return SpaceFile.model_validate({**raw, **(overrides or {})})
    except ValidationError as err:
        raise UserError(format_validation_error(source, err)) from None


def with_settings(
    config: TrialConfig,
    settings: list[str],
    epochs: int | None = None,
    seed: int | None = None,
    data_dir: Path | None = None,
) -> TrialConfig:
    """``config`` with training keys set from ``KEY=VALUE`` strings (values read as YAML),
    and ``epochs``, the trial ``seed`` and ``data_dir`` replaced when given.

    Raises :class:`UserError` naming the ``--set`` value that is wrong.
    """
    resolved = config.model_dump()
    train = resolved["train"]
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise UserError(f"--set {setting!r}: expected KEY=VALUE with KEY a training key such as lr or ema_decay")
        if key in ModelConfig.model_fields or key in ("model", "base_width"):
            raise UserError(f"--set {setting!r}: {key!r} is a model key; --set sets training keys only")
        if key not in TrainConfig.model_fields:
            close = closest(key, list(TrainConfig.model_fields))
            hint = f"did you mean {close}?" if close else "training keys: " + ", ".join(TrainConfig.model_fields)
            raise UserError(f"--set {setting!r}: {key!r} is not a training key ({hint})")
        parsed = parse_yaml(value, f"--set {key}")
        if not _finite(parsed):
            raise UserError(f"--set {key}={value}: must be a finite number")
        train[key] = parsed
    if epochs is not None:
        train["epochs"] = epochs
    if seed is not None:
        resolved["seed"] = seed
    if data_dir is not None:
        resolved["data_dir"] = str(data_dir)
    try:
        return TrialConfig.model_validate(resolved)
    except ValidationError as err:
        raise UserError(format_validation_error("--set", err)) from None
