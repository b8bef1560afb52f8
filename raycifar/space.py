"""Search spaces: find a space file by name or path, and draw trial configs within the budget.

Finding and validating a space imports neither torch nor Ray; drawing counts parameters
(:mod:`raycifar.budget`, torch on the meta device) and imports it when first needed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from raycifar.config import AugmentConfig, ModelConfig, TrainConfig, TrialConfig
from raycifar.data.catalog import num_classes
from raycifar.errors import UserError
from raycifar.space_file import ARCH_OVERRIDES, FIT, SpaceFile, dimensions, load_space_file
from raycifar.variants import VARIANTS, variant_config

MAX_DRAWS_PER_SAMPLE = 1000


def packaged_spaces() -> dict[str, Path]:
    """Space files shipped with raycifar, by name (file name without ``.yaml``)."""
    folder = resources.files("raycifar.search_spaces")
    return {
        entry.name.removesuffix(".yaml"): Path(str(entry))
        for entry in folder.iterdir()
        if entry.name.endswith(".yaml")
    }


def resolve_space_path(name_or_path: str) -> Path:
    """A path to an existing YAML file, or the packaged space of that name."""
    path = Path(name_or_path).expanduser()
    if path.is_file():
        return path
    shipped = packaged_spaces()
    name = name_or_path.removesuffix(".yaml")
    if name in shipped:
        return shipped[name]
    raise UserError(
        f"no search space {name_or_path!r}: not a file, and not one of the shipped spaces "
        f"({', '.join(sorted(shipped))})"
    )


@dataclass(frozen=True)
class Space:
    """A validated space file and the name it goes by."""

    name: str
    path: Path
    spec: SpaceFile


def load_space(name_or_path: str, overrides: dict[str, Any] | None = None) -> Space:
    """Find and validate a space (see :func:`resolve_space_path`), with top-level keys
    replaced by ``overrides`` (see :func:`raycifar.space_file.load_space_file`)."""
    path = resolve_space_path(name_or_path)
    spec = load_space_file(path, overrides)
    unknown = [name for name in spec.arch.model.values() if name not in VARIANTS]
    if unknown:
        raise UserError(f"{path}: arch.model: unknown model {unknown[0]!r}; known models: {', '.join(VARIANTS)}")
    return Space(path.stem, path, spec)


def require_constants(space: Space, command: str) -> None:
    """Refuse a space that still searches something: ``command`` needs one value per key."""
    for key, dimension in dimensions(space.spec):
        if dimension.sampler != "constant":
            raise UserError(
                f"{space.path}: {key}: {command} needs one value per key, "
                f"got a {dimension.sampler} sampler (search it with raycifar sweep)"
            )


DRAWN_ARCH_KEYS = ("depths", *ARCH_OVERRIDES, "se_width", "base_width")


def _draw_arch(arch, rng: random.Random) -> tuple[str, dict[str, Any]]:
    """The drawn model name and the overrides drawn for it (``fit`` values kept as ``"fit"``)."""
    name = arch.model.sample(rng)
    overrides = {key: getattr(arch, key).sample(rng) for key in DRAWN_ARCH_KEYS if getattr(arch, key) is not None}
    if "depths" in overrides:
        overrides["depths"] = tuple(overrides["depths"])
    return name, overrides


def resolve_model(
    name: str, overrides: dict[str, Any], budget: int, width_multiple: int, classes: int
) -> ModelConfig:
    """The :class:`ModelConfig` of a drawn model with its ``fit`` widths solved against
    ``budget`` (widths first, then the SE width takes what is left).

    When even the narrowest fit is over budget, that narrowest model is returned: the
    caller compares its size with the budget.
    """
    from raycifar.budget import MIN_SE_WIDTH, fit_se_width, fit_widths

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


def _draw_train(space: SpaceFile, rng: random.Random, max_epochs: int | None) -> TrainConfig:
    values = {name: dim.sample(rng) for name, dim in space.train}
    if max_epochs is not None:
        values["epochs"] = min(values["epochs"], max_epochs)
    return TrainConfig(**values)


@dataclass(frozen=True)
class Draws:
    """Configs drawn from a space, and how many draws were over budget and redrawn."""

    configs: list[TrialConfig]
    redrawn: int


def sample_configs(
    space: Space,
    num_samples: int,
    seed: int,
    data_dir: Path,
    max_epochs: int | None = None,
) -> Draws:
    """Draw ``num_samples`` trial configs whose models fit the space's budget.

    Over-budget draws are redrawn (at most ``MAX_DRAWS_PER_SAMPLE`` times per sample);
    a space where no draw fits raises :class:`UserError` with the smallest size seen.
    """
    from raycifar.budget import count_params

    rng = random.Random(seed)
    spec, configs, redrawn = space.spec, [], 0
    classes = num_classes(spec.dataset, spec.label_mode)
    for index in range(num_samples):
        smallest = None
        for _ in range(MAX_DRAWS_PER_SAMPLE):
            name, overrides = _draw_arch(spec.arch, rng)
            try:
                model = resolve_model(name, overrides, spec.budget, spec.arch.width_multiple, classes)
            except UserError as err:
                raise UserError(f"{space.path}: arch: {err}") from None
            params = count_params(model)
            if params <= spec.budget:
                break
            redrawn += 1
            smallest = params if smallest is None else min(smallest, params)
        else:
            raise UserError(
                f"{space.path}: no configuration fits the budget of {spec.budget:,} parameters "
                f"(smallest of {MAX_DRAWS_PER_SAMPLE} draws: {smallest:,})"
            )
        configs.append(
            TrialConfig(
                space=space.name,
                dataset=spec.dataset,
                data_dir=str(data_dir.resolve()),
                val_fraction=spec.val_fraction,
                split_seed=seed,
                seed=seed * 1000 + index,
                budget=spec.budget,
                params=params,
                model=model,
                train=_draw_train(spec, rng, max_epochs),
                augment=AugmentConfig(**{name: dim.sample(rng) for name, dim in spec.augment}),
                label_mode=spec.label_mode,
                loader=spec.loader,
                class_weights=dict(spec.class_weights),
            )
        )
    return Draws(configs, redrawn)


def trial_config_from_file(name_or_path: str, data_dir: Path, seed: int) -> TrialConfig:
    """The trial config of a space file whose every key has one value (``raycifar train``).

    It is the config trial 0 of ``raycifar sweep`` draws with ``seed``: the validation
    split is seeded with ``seed`` and the trial with ``seed * 1000``. A file that still
    searches any key (in any section) is a :class:`UserError`.
    """
    space = load_space(name_or_path)
    require_constants(space, "raycifar train")
    return sample_configs(space, 1, seed, data_dir).configs[0]
