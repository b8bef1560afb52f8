"""The sections of a space file. ``train``, ``augment`` and ``arch`` are *derived* from the
resolved sections of :mod:`raycifar.config`: each option becomes a dimension of the same
type, range and default. ``scheduler`` and ``searcher`` say how the sweep runs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, create_model, model_validator

from raycifar.config import (
    AugmentConfig,
    ModelConfig,
    NonNegativeInt,
    PositiveInt,
    StageDepths,
    TrainConfig,
    _Strict,
)
from raycifar.space.dimension import Dim, Dimension


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
the model is the largest within the budget (see :mod:`raycifar.models.budget`).
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
"""The settings each scheduler takes (see :mod:`raycifar.sweep.schedulers`); times are in epochs."""


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
NsgaObjectives = Literal["size", "shift"]  # nsga2: (selected score, size) or (val_acc, val_acc_shift)


class SearcherSettings(_Strict):
    """How configs are proposed (:mod:`raycifar.search.searchers`): ``searcher: tpe`` or a mapping."""

    name: SearcherName = "random"
    n_startup_trials: PositiveInt | None = None  # tpe: random proposals first (None: see search.startup_trials)
    cost: Literal["params", "macs"] = "params"  # nsga2: the size objective minimised next to val_acc
    objectives: NsgaObjectives = "size"  # nsga2: the selected score vs size, or clean vs shifted val accuracy
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
        for key, default in (("cost", "params"), ("objectives", "size")):
            if getattr(self, key) != default and self.name != "nsga2":
                raise ValueError(f"{key} is a setting of the nsga2 searcher, not of {self.name}")
        if self.objectives == "shift" and self.cost != "params":
            raise ValueError("cost sets the size objective, and objectives: shift has none (val_acc vs val_acc_shift)")
        return self
