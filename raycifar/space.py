"""Search spaces: find a space file by name or path, and draw trial configs within the budget."""

from __future__ import annotations

import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from raycifar.config import (
    ArchSpace,
    AugmentConfig,
    ModelConfig,
    SpaceFile,
    TrainConfig,
    TrialConfig,
    load_space_file,
)
from raycifar.data.catalog import num_classes
from raycifar.errors import UserError
from raycifar.models import count_params

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
    replaced by ``overrides`` (see :func:`raycifar.config.load_space_file`)."""
    path = resolve_space_path(name_or_path)
    return Space(path.stem, path, load_space_file(path, overrides))


def _draw_model(arch: ArchSpace, rng: random.Random) -> ModelConfig:
    depths = tuple(arch.depths.sample(rng))
    base_width = arch.base_width.sample(rng)
    return ModelConfig(
        depths=depths,
        widths=tuple(base_width * 2**stage for stage in range(len(depths))),
        se_ratio=arch.se_ratio.sample(rng),
        dropout=arch.dropout.sample(rng),
    )


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
    rng = random.Random(seed)
    spec, configs, redrawn = space.spec, [], 0
    classes = num_classes(spec.dataset, spec.label_mode)
    for index in range(num_samples):
        smallest = None
        for _ in range(MAX_DRAWS_PER_SAMPLE):
            model = _draw_model(spec.arch, rng).model_copy(update={"num_classes": classes})
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
