"""One config drawn from a space: the value of every dimension that applies (each ``when``
decided before the dimensions it governs), the model's ``fit`` widths solved against the
budget, and the resolved :class:`~raycifar.config.TrialConfig` with its exact size.

Counting parameters imports torch (on the meta device) when first needed.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from raycifar.config import AugmentConfig, ModelConfig, TrainConfig, TrialConfig
from raycifar.data.catalog import num_classes
from raycifar.errors import UserError
from raycifar.models.registry import variant_config
from raycifar.space.dimension import Dimension
from raycifar.space.file import SpaceFile, dimensions, ordered_dimensions
from raycifar.space.find import Space
from raycifar.space.sections import FIT

MAX_DRAWS_PER_SAMPLE = 500  # over-budget proposals before a space counts as unable to fit


Picker = Callable[[str, Dimension], Any]
"""Chooses the value of one sampled dimension, given its ``section.key`` (a searcher's
suggestion, or a seeded random draw)."""


def draw_values(spec: SpaceFile, pick: Picker) -> dict[str, Any]:
    """The value of every dimension that applies, by ``section.key``: constants as written,
    samplers through ``pick``, in an order where each ``when`` is decided before the
    dimensions it governs. A dimension whose condition does not hold is absent (training
    then uses the key's default, the model its own value)."""
    values: dict[str, Any] = {}
    for key, dimension in ordered_dimensions(spec):
        if dimension.active(values):
            values[key] = dimension.args[0] if dimension.sampler == "constant" else pick(key, dimension)
    return values


def searched_values(spec: SpaceFile, values: dict[str, Any]) -> dict[str, Any]:
    """The *search record* of a draw: the values of its sampled (not constant) dimensions."""
    samplers = {key for key, dimension in dimensions(spec) if dimension.sampler != "constant"}
    return {key: value for key, value in values.items() if key in samplers}


def _section(values: dict[str, Any], section: str) -> dict[str, Any]:
    prefix = section + "."
    return {key.removeprefix(prefix): value for key, value in values.items() if key.startswith(prefix)}


def resolve_model(name: str, overrides: dict[str, Any], budget: int, width_multiple: int, classes: int) -> ModelConfig:
    """The :class:`ModelConfig` of a drawn model with its ``fit`` widths solved against
    ``budget`` (widths first, then the SE width takes what is left).

    When even the narrowest fit is over budget, that narrowest model is returned: the
    caller compares its size with the budget.
    """
    from raycifar.models.budget import MIN_SE_WIDTH, fit_se_width, fit_widths

    overrides = dict(overrides)
    fit_base = overrides.get("base_width") == FIT
    fit_se = overrides.get("se_width") == FIT
    if fit_base:
        overrides.pop("base_width")
    if fit_se:
        overrides["se_width"] = MIN_SE_WIDTH
    config = variant_config(name, classes, **overrides)
    if fit_base:
        config = fit_widths(config, budget, width_multiple)
    if fit_se:
        config = fit_se_width(config, budget)
    return config


def config_from_values(
    space: Space,
    values: dict[str, Any],
    data_dir: Path,
    split_seed: int,
    trial_seed: int,
    max_epochs: int | None = None,
) -> TrialConfig:
    """The trial config of drawn ``values`` (:func:`draw_values`), its model fitted to the
    budget and counted: ``params`` may exceed ``budget`` when even the narrowest fit does.

    ``train.epochs`` is capped at ``max_epochs``; raises :class:`UserError` for a model the
    drawn keys cannot build.
    """
    from raycifar.models.budget import count_params

    spec = space.spec
    arch = _section(values, "arch")
    name = arch.pop("model")
    if "depths" in arch:
        arch["depths"] = tuple(arch["depths"])
    classes = num_classes(spec.dataset, spec.label_mode)
    try:
        model = resolve_model(name, arch, spec.budget, spec.arch.width_multiple, classes)
    except UserError as err:
        raise UserError(f"{space.path}: arch: {err}") from None
    train = _section(values, "train")
    if max_epochs is not None:
        train["epochs"] = min(train.get("epochs", TrainConfig.model_fields["epochs"].default), max_epochs)
    return TrialConfig(
        space=space.name,
        dataset=spec.dataset,
        data_dir=str(data_dir.resolve()),
        val_fraction=spec.val_fraction,
        split_seed=split_seed,
        seed=trial_seed,
        budget=spec.budget,
        params=count_params(model),
        model=model,
        train=TrainConfig(**train),
        augment=AugmentConfig(**_section(values, "augment")),
        label_mode=spec.label_mode,
        loader=spec.loader,
        class_weights=dict(spec.class_weights),
        select=spec.select,
    )
