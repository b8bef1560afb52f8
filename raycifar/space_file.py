"""Search-space files: dimensions, the space sections derived from the resolved configs, and
loading a file.

A *space file* is YAML whose dimensions are constants or samplers (``{choice: [...]}``,
``{uniform: [lo, hi]}``, ``{loguniform: [lo, hi]}``, ``{randint: [lo, hi]}``). Its sections
(:data:`TrainSpace`, :data:`AugmentSpace`, :data:`ArchSpace`) are *derived* from the
resolved sections of :mod:`raycifar.config`: each option becomes a dimension of the same
type, range and default. :func:`load_space_file` validates a file completely before
anything runs and raises :class:`UserError` naming the file, the key and the problem.
:func:`dimensions` walks every dimension of every section.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field, TypeAdapter, ValidationError, create_model, model_validator

from raycifar.config import (
    DEFAULT_BUDGET,
    PER_IMAGE_AUGMENTATIONS,
    AugmentConfig,
    LoaderName,
    ModelConfig,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    StageDepths,
    TrainConfig,
    _Strict,
    closest,
    finite,
    format_validation_error,
)
from raycifar.data.catalog import DatasetName, LabelMode, class_names
from raycifar.errors import UserError
from raycifar.yaml_load import load_yaml

SAMPLERS = ("choice", "uniform", "loguniform", "randint")


# --- dimensions ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Dimension:
    """One search dimension: a constant or a sampler with its arguments."""

    sampler: str  # "constant" or one of SAMPLERS
    args: tuple
    when: tuple[tuple[str, tuple], ...] = ()  # (``section.key``, values it must take) pairs, all must hold

    def active(self, drawn: dict[str, Any]) -> bool:
        """Whether this dimension applies given the values ``drawn`` so far (by ``section.key``):
        every key it depends on was drawn and took one of the listed values."""
        return all(key in drawn and drawn[key] in values for key, values in self.when)

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
        """``0.1`` for a constant, ``loguniform [0.01, 0.3]`` for a sampler (JSON values), with
        its condition: ``choice [0.2, 0.4] when train.optimizer = sgd``."""
        text = (
            json.dumps(self.args[0]) if self.sampler == "constant" else f"{self.sampler} {json.dumps(list(self.args))}"
        )
        return text + (f" when {describe_condition(self.when)}" if self.when else "")


def describe_condition(when: tuple[tuple[str, tuple], ...]) -> str:
    """``train.optimizer = sgd and augment.policy in [randaugment, autoaugment]``."""
    parts = []
    for key, values in when:
        shown = [json.dumps(v).strip('"') for v in values]
        parts.append(f"{key} = {shown[0]}" if len(shown) == 1 else f"{key} in [{', '.join(shown)}]")
    return " and ".join(parts)


def _parse_condition(raw: Any) -> tuple[tuple[str, tuple], ...]:
    """``{train.optimizer: sgd}`` or ``{augment.policy: [a, b]}`` as (key, values) pairs."""
    if not isinstance(raw, dict) or not raw:
        raise ValueError(f"when: expects a mapping of section.key to a value or a list of values, got {raw!r}")
    pairs = []
    for key, values in raw.items():
        if not isinstance(key, str) or key.count(".") != 1:
            raise ValueError(f"when: {key!r}: name the key it depends on as section.key, e.g. train.optimizer")
        values = tuple(values) if isinstance(values, list) else (values,)
        if not values:
            raise ValueError(f"when: {key}: give at least one value")
        pairs.append((key, values))
    return tuple(pairs)


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
    choice, both bounds of a range); infinite and NaN numbers are refused everywhere.
    """
    check = TypeAdapter(value_type).validate_python
    kind = _value_kind(check)

    def valid(value: Any) -> Any:
        if not finite(value):
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
        if "when" in raw:
            raw = dict(raw)
            when = _parse_condition(raw.pop("when"))
            if not raw:
                raise ValueError("when: a condition belongs to a sampler, e.g. {choice: [0.2, 0.4], when: {...}}")
            return replace(parse(raw), when=when)
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


SchedulerName = Literal["asha", "hyperband", "median", "pbt", "fifo"]
SCHEDULER_LABELS: dict[str, str] = {
    "asha": "ASHA", "hyperband": "HyperBand", "median": "the median rule", "pbt": "PBT", "fifo": "FIFO"
}  # how messages name each scheduler
SCHEDULER_KEYS: dict[str, tuple[str, ...]] = {
    "asha": ("grace_period", "reduction_factor"),
    "hyperband": ("reduction_factor",),
    "median": ("grace_period", "min_samples_required"),
    "pbt": ("perturbation_interval", "quantile_fraction", "resample_probability", "synch"),
    "fifo": (),
}
"""The settings each scheduler takes (see :mod:`raycifar.schedulers`); times are in epochs."""
EQUAL_EPOCHS_SCHEDULERS = ("asha", "hyperband")  # their rungs compare trials at equal epochs


class SchedulerSettings(_Strict):
    """The Tune scheduler of a sweep and its settings; every time is in epochs.

    ``asha``: rungs at ``grace_period * reduction_factor**k`` epochs. ``hyperband``: brackets
    shrinking by ``reduction_factor``. ``median``: stop a trial below the median of the
    others' running averages after ``grace_period`` epochs, once ``min_samples_required``
    trials reported. ``pbt``: every ``perturbation_interval`` epochs the bottom
    ``quantile_fraction`` copy a top trial's checkpoint and perturb its hyperparameters
    (resampled with ``resample_probability``; ``synch``: wait for the whole population).
    ``fifo``: no early stopping. A key set for another scheduler is an error.
    """

    name: SchedulerName = "asha"
    grace_period: PositiveInt = 1
    reduction_factor: Annotated[int, Field(ge=2)] = 2
    min_samples_required: PositiveInt = 3
    perturbation_interval: PositiveInt = 1
    quantile_fraction: Annotated[float, Field(gt=0.0, le=0.5)] = 0.25
    resample_probability: Annotated[float, Field(ge=0.0, le=1.0)] = 0.25
    synch: bool = False

    @model_validator(mode="after")
    def _settings_of_this_scheduler(self) -> SchedulerSettings:
        for key in sorted(self.model_fields_set - {"name"}):
            if key not in SCHEDULER_KEYS[self.name]:
                owners = " and ".join(name for name, keys in SCHEDULER_KEYS.items() if key in keys)
                takes = ", ".join(SCHEDULER_KEYS[self.name]) or "no settings"
                raise ValueError(f"{key} is a setting of {owners}, not of {self.name} ({self.name} takes {takes})")
        return self

    def given(self) -> dict[str, Any]:
        """The settings the file set (``name`` aside), as written."""
        return {key: getattr(self, key) for key in sorted(self.model_fields_set - {"name"})}


SearcherName = Literal["random", "grid", "tpe", "qmc", "nsga2"]


class SearcherSettings(_Strict):
    """How configs are proposed (:mod:`raycifar.search`): ``searcher: tpe`` or a mapping."""

    name: SearcherName = "random"
    n_startup_trials: PositiveInt | None = None  # tpe: random proposals first (None: see search.startup_trials)
    cost: Literal["params", "macs"] = "params"  # nsga2: the size objective minimised next to val_acc
    population_size: Annotated[int, Field(ge=2)] | None = None  # nsga2 (None: see search.population_size)

    @model_validator(mode="before")
    @classmethod
    def _name_alone(cls, raw: Any) -> Any:
        return {"name": raw} if isinstance(raw, str) else raw

    @model_validator(mode="after")
    def _settings_of_this_searcher(self) -> SearcherSettings:
        owners = {"n_startup_trials": "tpe", "population_size": "nsga2"}
        for key, owner in owners.items():
            if getattr(self, key) is not None and self.name != owner:
                raise ValueError(f"{key} is a setting of the {owner} searcher, not of {self.name}")
        if self.cost != "params" and self.name != "nsga2":
            raise ValueError(f"cost is a setting of the nsga2 searcher, not of {self.name}")
        return self


SECTION_KEYS = ("arch", "train", "augment", "scheduler", "searcher")


class SpaceFile(_Strict):
    """A validated search-space file. A missing or empty section takes every default."""

    description: str = ""
    dataset: DatasetName = "cifar10"
    label_mode: LabelMode = "fine"
    loader: LoaderName = "device"
    budget: PositiveInt = DEFAULT_BUDGET
    num_samples: PositiveInt | Literal["unlimited"] = 8  # unlimited: until --time-budget or --max-trials
    val_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = 0.1
    class_weights: dict[str, PositiveFloat] = {}
    arch: ArchSpace = ArchSpace()
    train: TrainSpace = TrainSpace()
    augment: AugmentSpace = AugmentSpace()
    scheduler: SchedulerSettings = SchedulerSettings()
    searcher: SearcherSettings = SearcherSettings()

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

    @model_validator(mode="after")
    def _conditions_can_hold(self) -> SpaceFile:
        drawn = dict(dimensions(self))
        for key, dimension in drawn.items():
            for parent, values in dimension.when:
                if parent == key:
                    raise ValueError(f"{key}: when: a key cannot depend on itself")
                if parent not in drawn:
                    close = closest(parent, list(drawn))
                    hint = f"did you mean {close}?" if close else "set it in the space to depend on it"
                    raise ValueError(f"{key}: when: {parent} is not a key of this space ({hint})")
                for value in values:
                    if not drawn[parent].can_be(value):
                        raise ValueError(
                            f"{key}: when: {parent} can never be {value!r} (it is {drawn[parent].describe()})"
                        )
        ordered_dimensions(self)  # refuses cycles
        return self

    @model_validator(mode="after")
    def _epochs_fit_the_scheduler(self) -> SpaceFile:
        name, epochs = self.scheduler.name, self.train.epochs
        if name in EQUAL_EPOCHS_SCHEDULERS and _searched(epochs):
            raise ValueError(
                f"train.epochs: {epochs.describe()} is sampled, but scheduler {name} compares trials at equal "
                f"epochs and a trial's learning-rate schedule spans its own epochs: give epochs one value "
                f"(or use scheduler median, pbt or fifo)"
            )
        if name == "pbt":
            searched = [key for key in PBT_KEYS if _searched(getattr(self.train, key))]
            if not searched:
                raise ValueError(
                    f"scheduler pbt perturbs {', '.join('train.' + key for key in PBT_KEYS)} where the space "
                    f"searches them; this space searches none: give one a sampler (e.g. lr: {{loguniform: [0.02, 0.2]}})"
                )
            if self.scheduler.perturbation_interval >= max(epochs.values()):
                raise ValueError(
                    f"scheduler.perturbation_interval {self.scheduler.perturbation_interval} is not below "
                    f"train.epochs {epochs.describe()}: PBT would never perturb"
                )
        return self


PBT_KEYS = ("lr", "weight_decay", "label_smoothing", "mixup_alpha")
"""The training keys PBT perturbs, where the space searches them."""


def _searched(dimension: Dimension) -> bool:
    return dimension.may_differ(dimension.values()[0])


def pbt_dimensions(spec: SpaceFile) -> dict[str, Dimension]:
    """The :data:`PBT_KEYS` that ``spec`` searches, as ``{"lr": dimension, ...}``."""
    return {key: getattr(spec.train, key) for key in PBT_KEYS if _searched(getattr(spec.train, key))}


def with_scheduler(spec: SpaceFile, name: str, source: str) -> tuple[SpaceFile, list[str]]:
    """``spec`` under scheduler ``name`` (``--scheduler NAME``), validated again; returns it
    and the file's scheduler settings that ``name`` does not take (dropped, for a note).

    Raises :class:`UserError` naming ``source`` and the option (an unknown name, or a rule
    the space breaks under ``name``, e.g. sampled epochs under asha).
    """
    given = spec.scheduler.given()
    kept = {key: value for key, value in given.items() if key in SCHEDULER_KEYS.get(name, ())}
    try:
        changed = SpaceFile.model_validate({**dict(spec), "scheduler": {"name": name, **kept}})
    except ValidationError as err:
        raise UserError(format_validation_error(f"{source} with --scheduler {name}", err, SpaceFile)) from None
    return changed, sorted(set(given) - set(kept))


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


def ordered_dimensions(spec: SpaceFile) -> list[tuple[str, Dimension]]:
    """:func:`dimensions` ordered so that each comes after the keys its ``when`` names.

    Raises ``ValueError`` naming the keys of a cycle of conditions.
    """
    pending, ordered, placed = list(dimensions(spec)), [], set()
    while pending:
        ready = [(key, dim) for key, dim in pending if all(parent in placed for parent, _ in dim.when)]
        if not ready:
            raise ValueError(
                f"{pending[0][0]}: when: the conditions of {', '.join(k for k, _ in pending)} form a cycle"
            )
        ordered += ready
        placed.update(key for key, _ in ready)
        pending = [item for item in pending if item[0] not in placed]
    return ordered


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
        raise UserError(format_validation_error(source, err, SpaceFile)) from None
