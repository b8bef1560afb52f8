"""The one schema of a trial: enumerations, value types, and the resolved configs.

A *trial config* (:class:`TrialConfig`) is one fully resolved point of a space: plain
values only, frozen, JSON-serialisable, and enough to reproduce the trial on its own. Its
sections (:class:`ModelConfig`, :class:`TrainConfig`, :class:`AugmentConfig`) declare every
option with its type, range and default, once: the search-space sections of
:mod:`raycifar.space.file` are derived from them.

This module imports neither torch nor Ray: read-only commands stay instant.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    ValidationError,
    model_validator,
)

from raycifar.errors import UserError
from raycifar.yaml_load import parse_yaml

DEFAULT_BUDGET = 5_000_000
MAX_FAILURES = 2  # worker-group restarts from the last checkpoint before a run fails (--max-failures)

# --- enumerations: each written once; the CLI takes its choices from these -----------------
LoaderName = Literal["device", "ffcv", "torchvision"]
Optimizer = Literal["sgd", "adamw"]
Schedule = Literal["cosine", "linear", "onecycle", "step", "multistep"]
TestTimeAugmentation = Literal["none", "flip", "flip_translate"]
Precision = Literal["auto", "fp32", "bf16"]
Policy = Literal["none", "autoaugment", "randaugment", "trivialaugment"]
Block = Literal["basic", "bottleneck", "convgroup"]
Stem = Literal["cifar", "imagenet"]
CompileSwitch = StrictBool | Literal["auto"]
DatasetName = Literal["cifar10", "cifar100"]
LabelMode = Literal["fine", "coarse"]  # CIFAR-100: its 100 fine classes, or the 20 coarse superclasses
WandbMode = Literal["offline", "online", "off"]
WANDB_PROJECT = "raycifar"  # the W&B project of every sweep trial, train run and promoted model
TrainOn = Literal["train", "train+val"]  # what a run trains on: the split's train part, or train and val together


def finite(value: Any) -> bool:
    """False for an infinite or NaN number anywhere in ``value`` (lists included)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, (list, tuple)):
        return all(finite(item) for item in value)
    return True


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
Severity = Annotated[int, Field(ge=1, le=10)]
# A space's `select`: the score a sweep maximises (results.schema.selected_metric maps it to a metric).
Select = Literal["val_acc", "val_acc_shift", "mean"]
DEFAULT_SELECT: Select = "val_acc"  # the clean validation accuracy; the twin is scored only for the others
Jitter = Annotated[float, Field(ge=0.0, le=1.0)]
Degrees = Annotated[float, Field(ge=0.0, le=180.0)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True, allow_inf_nan=False)


# --- resolved configs ----------------------------------------------------------------------
class ModelConfig(_Strict):
    """A resolved CIFAR ResNet: one entry of ``depths`` and ``widths`` per stage.

    ``widths`` are the stage widths (a bottleneck stage outputs ``4 * width`` channels).
    ``block: convgroup`` is the fast CIFAR trainers' plain block (conv, max-pool, BN, GELU,
    conv, BN, GELU; no shortcut): it has no pre-activation form and no stochastic depth.
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
        if self.block == "convgroup" and self.preact:
            raise ValueError("block convgroup has no pre-activation form: set preact: false")
        if self.block == "convgroup" and self.drop_path:
            raise ValueError(
                f"drop_path {self.drop_path} needs a residual block; convgroup blocks have no shortcut "
                "to fall back on: set drop_path: 0.0 (block_dropout works)"
            )
        if min(self.feature_sizes()) < 1:
            raise ValueError(
                f"a 32x32 image shrinks to nothing: feature maps {self.feature_sizes()} per stage "
                f"(stem {self.stem}, pool_after_stage {self.pool_after_stage})"
            )
        return self

    def feature_sizes(self, image_size: int = 32) -> list[int]:
        """Side of the feature map after each stage for a square input image.

        A residual stage after the first halves it with a stride-2 conv (rounding up); every
        convgroup stage, the first included, halves it with a 2x2 max-pool (rounding down).
        """
        size = image_size if self.stem == "cifar" else image_size // 4  # 7x7/2 conv + 3x3/2 max-pool
        sizes = []
        for stage in range(len(self.depths)):
            if self.block == "convgroup":
                size //= 2
            elif stage > 0:
                size = -(-size // 2)
            size -= 1 if self.pool_after_stage else 0
            sizes.append(size)
        return sizes


class TrainConfig(_Strict):
    """Resolved training hyperparameters of one trial (docs/sweeping.md: "Training options")."""

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

    ``crop_padding``, ``flip`` and ``cutout`` work with every loader; ``augmix`` (with its
    ``augmix_severity`` and the weight ``augmix_jsd`` of its Jensen–Shannon consistency loss,
    0 = off) is batched on the device loader (:mod:`raycifar.data.augmix`); the others are
    per-image policies of the torchvision loader.
    """

    crop_padding: Padding = 4
    flip: StrictBool = True
    cutout: CutoutSize = 0
    policy: Policy = "none"
    color_jitter: Jitter = 0.0
    rotation: Degrees = 0.0
    random_erasing: Chance = 0.0
    augmix: StrictBool = False
    augmix_severity: Severity = 3
    augmix_jsd: NonNegativeFloat = 0.0

    @model_validator(mode="after")
    def _jsd_needs_augmix(self) -> AugmentConfig:
        if self.augmix_jsd > 0 and not self.augmix:
            raise ValueError("augmix_jsd: the consistency loss compares AugMix views, so it needs augmix: true")
        return self


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
    # the score the sweep maximises: val_acc, val_acc_shift (the validation split's corrupted
    # twin, raycifar.data.shifted_val) or mean (of the two); the twin is scored only when needed
    select: Select = DEFAULT_SELECT

    @model_validator(mode="after")
    def _augmix_fits(self) -> TrialConfig:
        if self.augment.augmix and self.loader != "device":
            raise ValueError(f"augment.augmix: AugMix is batched on the device loader, not the {self.loader} loader")
        if self.augment.augmix_jsd > 0 and (self.train.mixup_alpha > 0 or self.train.cutmix_alpha > 0):
            raise ValueError("augment.augmix_jsd: the consistency loss cannot be combined with mixup or cutmix")
        return self


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

    ``schema`` is the model that was validated (default: :class:`TrialConfig` when
    ``err.title`` names it); an unknown key is matched against its keys for a did-you-mean.
    """
    first = err.errors()[0]
    key = ".".join(str(part) for part in first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        schema = schema or {"TrialConfig": TrialConfig}.get(err.title)
        message = _unknown_key(schema, tuple(first["loc"]))
    elif first["type"] not in ("value_error", "missing"):
        message = f"{message} (got {first.get('input')!r})"
    extra = f" (and {err.error_count() - 1} more problems)" if err.error_count() > 1 else ""
    return f"{source}: {key + ': ' if key else ''}{message}{extra}"


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
        if not finite(parsed):
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
