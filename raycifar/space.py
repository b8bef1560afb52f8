"""Search spaces: find a space file by name or path, and draw trial configs within the budget.

Finding and validating a space imports neither torch nor Ray; drawing counts parameters
(:mod:`raycifar.budget`, torch on the meta device) and imports it when first needed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from raycifar.config import AugmentConfig, ModelConfig, TrainConfig, TrialConfig
from raycifar.data.catalog import num_classes
from raycifar.errors import UserError
from raycifar.space_file import FIT, Dimension, SpaceFile, dimensions, load_space_file, ordered_dimensions
from raycifar.variants import VARIANTS, variant_config

MAX_DRAWS_PER_SAMPLE = 500  # over-budget proposals before a space counts as unable to fit


def packaged_spaces() -> dict[str, Path]:
    """Space files shipped with raycifar, by name (file name without ``.yaml``)."""
    folder = resources.files("raycifar.search_spaces")
    return {
        entry.name.removesuffix(".yaml"): Path(str(entry)) for entry in folder.iterdir() if entry.name.endswith(".yaml")
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
    from raycifar.budget import count_params

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
    )


@dataclass(frozen=True)
class Draws:
    """Configs drawn from a space, their search records (the sampled keys that applied),
    and how many draws were over budget and redrawn."""

    configs: list[TrialConfig]
    redrawn: int
    searches: list[dict[str, Any]] = field(default_factory=list)


def sample_configs(
    space: Space,
    num_samples: int,
    seed: int,
    data_dir: Path,
    max_epochs: int | None = None,
) -> Draws:
    """Draw ``num_samples`` trial configs whose models fit the space's budget: the first
    proposals of the ``random`` searcher with ``seed`` (:mod:`raycifar.search`).

    Over-budget draws are redrawn (at most ``MAX_DRAWS_PER_SAMPLE`` times per sample);
    a space where no draw fits raises :class:`UserError` with the smallest size seen.
    """
    from raycifar.search import Search

    search = Search.in_memory(space, "random", seed, data_dir, max_epochs)
    proposals = [search.propose() for _ in range(num_samples)]
    return Draws([p.config for p in proposals], search.infeasible, [p.search for p in proposals])


def trial_config_from_file(name_or_path: str, data_dir: Path, seed: int) -> TrialConfig:
    """The trial config of a space file whose every key has one value (``raycifar train``).

    It is the config trial 0 of ``raycifar sweep`` draws with ``seed``: the validation
    split is seeded with ``seed`` and the trial with ``seed * 1000``. A file that still
    searches any key (in any section) is a :class:`UserError`.
    """
    space = load_space(name_or_path)
    require_constants(space, "raycifar train")
    return sample_configs(space, 1, seed, data_dir).configs[0]
