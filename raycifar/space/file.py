"""A search-space file as a whole (:class:`SpaceFile`): its sections, the rules across them,
loading it with one-line errors (:func:`load_space_file`), and walking its dimensions.

:func:`load_space_file` validates a file completely before anything runs and raises
:class:`~raycifar.errors.UserError` naming the file, the key and the problem.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, model_validator

from raycifar.config import (
    DEFAULT_BUDGET,
    DEFAULT_SELECT,
    PER_IMAGE_AUGMENTATIONS,
    AugmentConfig,
    DatasetName,
    LabelMode,
    LoaderName,
    PositiveFloat,
    PositiveInt,
    Select,
    _Strict,
    closest,
    format_validation_error,
)
from raycifar.data.catalog import class_names
from raycifar.errors import UserError
from raycifar.space.dimension import Dimension
from raycifar.space.sections import (
    EQUAL_EPOCHS_SCHEDULERS,
    SCHEDULER_KEYS,
    ArchSpace,
    AugmentSpace,
    SchedulerSettings,
    SearcherSettings,
    TrainSpace,
)
from raycifar.yaml_load import load_yaml

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
    select: Select = DEFAULT_SELECT
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
        if self.searcher.objectives == "shift" and self.select == DEFAULT_SELECT:
            raise ValueError("searcher.objectives: shift weighs val_acc against val_acc_shift, which only a space "
                             "with select: mean or val_acc_shift measures (its validation split's corrupted twin)")
        if self.loader != "device" and self.augment.augmix.can_be(True):
            raise ValueError(f"augment.augmix: AugMix is batched on the device loader, not the {self.loader} loader")
        jsd = self.augment.augmix_jsd
        if jsd.may_differ(0.0) and self.augment.augmix.can_be(False) and not any(
            parent == "augment.augmix" and list(values) == [True] for parent, values in jsd.when
        ):
            raise ValueError("augment.augmix_jsd: the consistency loss needs augmix: true in every draw that uses it "
                             "(set augmix: true, or add when: {augment.augmix: true})")
        mixing = self.train.mixup_alpha.may_differ(0.0) or self.train.cutmix_alpha.may_differ(0.0)
        if mixing and self.augment.augmix_jsd.may_differ(0.0):
            raise ValueError("augment.augmix_jsd: the consistency loss cannot be combined with mixup or cutmix")
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
