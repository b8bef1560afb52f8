"""Typed configuration: search-space files (with samplers) and resolved trial configs.

A *space file* is YAML whose dimensions are either constants or samplers
(``{choice: [...]}``, ``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``,
``{randint: [lo, hi]}``).  ``load_space_file`` validates it completely before
anything runs and raises :class:`UserError` naming the file, the key and the problem.

A *trial config* (:class:`TrialConfig`) is one fully resolved point of a space: plain
values only, frozen, JSON-serialisable, and enough to reproduce the trial on its own.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    StrictBool,
    TypeAdapter,
    ValidationError,
    model_validator,
)

from raycifar.data.catalog import class_names
from raycifar.errors import UserError

SAMPLERS = ("choice", "uniform", "loguniform", "randint")
DEFAULT_BUDGET = 5_000_000
Dataset = Literal["cifar10", "cifar100"]


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


def _dimension(value_type: Any) -> BeforeValidator:
    """A pydantic validator turning a raw YAML value into a checked :class:`Dimension`.

    ``value_type`` validates every value the dimension can produce (constants, each
    choice, both bounds of a range).
    """
    check = TypeAdapter(value_type).validate_python
    kind = _value_kind(check)

    def valid(value: Any) -> Any:
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
            raise ValueError(
                f"a sampler is a mapping with exactly one of {', '.join(SAMPLERS)}; got {raw!r}"
            )
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
        if sampler == "loguniform" and low <= 0:
            raise ValueError(f"loguniform needs low > 0, got {low!r}")
        return Dimension(sampler, (low, high))

    return BeforeValidator(parse)


def Dim(value_type: Any) -> Any:  # noqa: N802 - reads as a type in field declarations
    """Field type for a search dimension whose values are of ``value_type``."""
    return Annotated[Dimension, _dimension(value_type)]


PositiveInt = Annotated[int, Field(ge=1)]
Probability = Annotated[float, Field(ge=0.0, lt=1.0)]
Chance = Annotated[float, Field(ge=0.0, le=1.0)]
StageDepths = Annotated[list[PositiveInt], Field(min_length=1, max_length=6)]
Fraction = Annotated[float, Field(gt=0.0, lt=1.0)]
Milestones = Annotated[tuple[Fraction, ...], Field(min_length=1)]
Schedule = Literal["cosine", "linear", "onecycle", "step", "multistep"]
TestTimeAugmentation = Literal["none", "flip", "flip_translate"]
Precision = Literal["auto", "fp32", "bf16"]
CompileSwitch = StrictBool | Literal["auto"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


FIT = "fit"
WidthOrFit = PositiveInt | Literal["fit"]
SEWidthOrFit = Annotated[int, Field(ge=0)] | Literal["fit"]
Block = Literal["basic", "bottleneck"]
Stem = Literal["cifar", "imagenet"]


class ArchSpace(_Strict):
    """Architecture dimensions: a registered model (see ``raycifar model list``) plus overrides.

    Every key other than ``model`` and ``width_multiple`` defaults to the value of the
    chosen model. ``base_width`` and ``se_width`` may be ``fit``: solved per draw so the
    model is the largest that stays within the budget (see :mod:`raycifar.budget`).
    """

    model: Dim(str) = Dimension("constant", ("resnet18",))
    depths: Dim(StageDepths) | None = None
    block: Dim(Block) | None = None
    preact: Dim(bool) | None = None
    stem: Dim(Stem) | None = None
    base_width: Dim(WidthOrFit) | None = None
    width_multiple: PositiveInt = 8
    se_ratio: Dim(Annotated[int, Field(ge=0)]) | None = None
    se_width: Dim(SEWidthOrFit) | None = None
    block_dropout: Dim(Probability) | None = None
    drop_path: Dim(Probability) | None = None
    pool_after_stage: Dim(bool) | None = None
    head_hidden: Dim(Annotated[int, Field(ge=0)]) | None = None
    dropout: Dim(Probability) | None = None

    @model_validator(mode="after")
    def _one_way_to_size_se(self) -> ArchSpace:
        ratios = () if self.se_ratio is None else self.se_ratio.values()
        widths = () if self.se_width is None else self.se_width.values()
        if any(ratios) and any(widths):
            raise ValueError(
                "se_ratio and se_width are two ways to size squeeze-and-excitation: "
                "give one of them (a non-zero se_width replaces the model's se_ratio)"
            )
        return self


class TrainSpace(_Strict):
    """Training dimensions of the per-worker loop (see :mod:`raycifar.train`)."""

    optimizer: Dim(Literal["sgd", "adamw"]) = Dimension("constant", ("sgd",))
    lr: Dim(Annotated[float, Field(gt=0.0)]) = Dimension("constant", (0.1,))
    momentum: Dim(Probability) = Dimension("constant", (0.9,))
    nesterov: Dim(StrictBool) = Dimension("constant", (True,))
    weight_decay: Dim(Annotated[float, Field(ge=0.0)]) = Dimension("constant", (5e-4,))
    decay_norm_and_bias: Dim(StrictBool) = Dimension("constant", (True,))
    grad_clip_norm: Dim(Annotated[float, Field(ge=0.0)]) = Dimension("constant", (0.0,))
    batch_size: Dim(PositiveInt) = Dimension("constant", (128,))
    epochs: Dim(PositiveInt) = Dimension("constant", (10,))
    schedule: Dim(Schedule) = Dimension("constant", ("cosine",))
    warmup_epochs: Dim(Annotated[float, Field(ge=0.0)]) = Dimension("constant", (0.0,))
    step_epochs: Dim(PositiveInt) = Dimension("constant", (5,))
    milestones: Dim(Milestones) = Dimension("constant", ((0.5, 0.75),))
    lr_gamma: Dim(Annotated[float, Field(gt=0.0, le=1.0)]) = Dimension("constant", (0.1,))
    label_smoothing: Dim(Probability) = Dimension("constant", (0.0,))
    mixup_alpha: Dim(Annotated[float, Field(ge=0.0)]) = Dimension("constant", (0.0,))
    ema_decay: Dim(Probability) = Dimension("constant", (0.0,))
    ema_every: Dim(PositiveInt) = Dimension("constant", (1,))
    lookahead: Dim(StrictBool) = Dimension("constant", (False,))
    tta: Dim(TestTimeAugmentation) = Dimension("constant", ("none",))
    precision: Dim(Precision) = Dimension("constant", ("auto",))
    channels_last: Dim(StrictBool) = Dimension("constant", (False,))
    compile: Dim(CompileSwitch) = Dimension("constant", ("auto",))
    cudnn_benchmark: Dim(StrictBool) = Dimension("constant", (True,))
    deterministic: Dim(StrictBool) = Dimension("constant", (False,))

    @model_validator(mode="after")
    def _lookahead_needs_ema(self) -> TrainSpace:
        if self.lookahead.can_be(True) and self.ema_decay.can_be(0.0):
            raise ValueError("lookahead: true resets the weights to their EMA, so every draw needs ema_decay > 0")
        return self

    cutmix_alpha: Dim(Annotated[float, Field(ge=0.0)]) = Dimension("constant", (0.0,))
    mix_switch_prob: Dim(Chance) = Dimension("constant", (0.5,))


Policy = Literal["none", "autoaugment", "randaugment", "trivialaugment"]
LoaderName = Literal["device", "ffcv", "torchvision"]
Padding = Annotated[int, Field(ge=0, le=16)]
CutoutSize = Annotated[int, Field(ge=0, le=32)]
Jitter = Annotated[float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[float, Field(ge=0.0, le=180.0)]


class AugmentSpace(_Strict):
    """Image augmentation dimensions (see :mod:`raycifar.data.augment`).

    ``crop_padding``, ``flip`` and ``cutout`` work with every loader; the others are
    per-image policies of the torchvision loader.
    """

    crop_padding: Dim(Padding) = Dimension("constant", (4,))
    flip: Dim(bool) = Dimension("constant", (True,))
    cutout: Dim(CutoutSize) = Dimension("constant", (0,))
    policy: Dim(Policy) = Dimension("constant", ("none",))
    color_jitter: Dim(Jitter) = Dimension("constant", (0.0,))
    rotation: Dim(Degrees) = Dimension("constant", (0.0,))
    random_erasing: Dim(Chance) = Dimension("constant", (0.0,))


PER_IMAGE_AUGMENTATIONS = ("policy", "color_jitter", "rotation", "random_erasing")


def _may_differ(dimension: Dimension, default: Any) -> bool:
    """Whether a dimension can produce a value other than ``default``."""
    if dimension.sampler in ("constant", "choice"):
        return any(value != default for value in dimension.args)
    return dimension.args != (default, default)


class SchedulerSettings(_Strict):
    """ASHA settings: rungs at ``grace_period * reduction_factor**k`` epochs."""

    grace_period: PositiveInt = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 2


class SpaceFile(_Strict):
    """A validated search-space file."""

    description: str = ""
    dataset: Dataset = "cifar10"
    budget: PositiveInt = DEFAULT_BUDGET
    num_samples: PositiveInt = 8
    val_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    arch: ArchSpace
    train: TrainSpace = TrainSpace()
    scheduler: SchedulerSettings = SchedulerSettings()
    label_mode: Literal["fine", "coarse"] = "fine"
    loader: LoaderName = "device"
    augment: AugmentSpace = AugmentSpace()
    class_weights: dict[str, Annotated[float, Field(gt=0.0)]] = {}

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
            defaults = AugmentSpace()
            for key in PER_IMAGE_AUGMENTATIONS:
                if _may_differ(getattr(self.augment, key), getattr(defaults, key).args[0]):
                    raise ValueError(
                        f"augment.{key}: a per-image augmentation needs loader: torchvision "
                        f"(the {self.loader} loader does crop_padding, flip and cutout)"
                    )
        return self


class ModelConfig(_Strict):
    """A resolved CIFAR ResNet: one entry of ``depths`` and ``widths`` per stage.

    ``widths`` are the stage widths (a bottleneck stage outputs ``4 * width`` channels).
    Squeeze-and-excitation is off when both ``se_ratio`` and ``se_width`` are 0; its
    hidden width is ``se_width`` when set, else ``channels // se_ratio``.
    """

    block: Block = "basic"
    preact: bool = False
    stem: Stem = "cifar"
    depths: tuple[PositiveInt, ...]
    widths: tuple[PositiveInt, ...]
    se_ratio: Annotated[int, Field(ge=0)] = 0
    se_width: Annotated[int, Field(ge=0)] = 0
    block_dropout: Probability = 0.0
    drop_path: Probability = 0.0
    pool_after_stage: bool = False
    head_hidden: Annotated[int, Field(ge=0)] = 0
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

    optimizer: Literal["sgd", "adamw"] = "sgd"
    lr: Annotated[float, Field(gt=0.0)] = 0.1
    momentum: Probability = 0.9
    nesterov: bool = True
    weight_decay: Annotated[float, Field(ge=0.0)] = 5e-4
    decay_norm_and_bias: bool = True
    grad_clip_norm: Annotated[float, Field(ge=0.0)] = 0.0
    batch_size: PositiveInt = 128
    epochs: PositiveInt = 10
    schedule: Schedule = "cosine"
    warmup_epochs: Annotated[float, Field(ge=0.0)] = 0.0
    step_epochs: PositiveInt = 5
    milestones: Milestones = (0.5, 0.75)
    lr_gamma: Annotated[float, Field(gt=0.0, le=1.0)] = 0.1
    label_smoothing: Probability = 0.0
    mixup_alpha: Annotated[float, Field(ge=0.0)] = 0.0
    ema_decay: Probability = 0.0
    ema_every: PositiveInt = 1
    lookahead: bool = False
    tta: TestTimeAugmentation = "none"
    precision: Precision = "auto"
    channels_last: bool = False
    compile: CompileSwitch = "auto"
    cudnn_benchmark: bool = True
    deterministic: bool = False

    @model_validator(mode="after")
    def _lookahead_needs_ema(self) -> TrainConfig:
        if self.lookahead and self.ema_decay == 0:
            raise ValueError("lookahead: true resets the weights to their EMA, so it needs ema_decay > 0")
        return self
    cutmix_alpha: Annotated[float, Field(ge=0.0)] = 0.0
    mix_switch_prob: Chance = 0.5


class AugmentConfig(_Strict):
    """Resolved image augmentation of one trial (see :class:`AugmentSpace`)."""

    crop_padding: Padding = 4
    flip: bool = True
    cutout: CutoutSize = 0
    policy: Policy = "none"
    color_jitter: Jitter = 0.0
    rotation: Degrees = 0.0
    random_erasing: Chance = 0.0


class TrialConfig(_Strict):
    """Everything one trial needs, as plain values: the unit handed to Ray."""

    space: str
    dataset: str = "cifar10"
    data_dir: str
    val_fraction: float = 0.1
    split_seed: int = 0
    seed: int = 0
    budget: int = DEFAULT_BUDGET
    params: int
    model: ModelConfig
    train: TrainConfig
    label_mode: Literal["fine", "coarse"] = "fine"
    loader: LoaderName = "device"
    augment: AugmentConfig = AugmentConfig()
    class_weights: dict[str, float] = {}


def format_validation_error(source: str, err: ValidationError) -> str:
    """One line naming the source, the dotted key and the problem of the first error."""
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] not in ("value_error", "missing", "extra_forbidden"):
        message = f"{message} (got {first.get('input')!r})"
    extra = f" (and {err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{source}: {key + ': ' if key else ''}{message}{extra}"


def load_space_file(path: Path, overrides: dict[str, Any] | None = None) -> SpaceFile:
    """Read and validate a space file; raise :class:`UserError` with a one-line reason.

    ``overrides`` replace top-level keys before validation; they come from command-line
    options named after the key (``label_mode`` from ``--label-mode``), which errors name.
    """
    try:
        raw = yaml.safe_load(path.read_text())
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{path}:{where}: not valid YAML: {getattr(err, 'problem', err)}") from None
    if not isinstance(raw, dict):
        raise UserError(f"{path}: expected a mapping of keys at the top level, got {raw!r}")
    source = str(path)
    if overrides:
        source += " with " + " ".join(f"--{key.replace('_', '-')} {value}" for key, value in overrides.items())
    try:
        return SpaceFile.model_validate({**raw, **(overrides or {})})
    except ValidationError as err:
        raise UserError(format_validation_error(source, err)) from None
