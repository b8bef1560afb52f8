"""The Optuna sampler behind each searcher (random, grid, TPE, QMC, NSGA-II), its defaults
for a sweep of a given size, and the study's directions.

Imports neither Ray nor torch.
"""

from __future__ import annotations

import math
import warnings

import optuna
from optuna.samplers import BaseSampler, GridSampler, NSGAIISampler, QMCSampler, RandomSampler, TPESampler

from raycifar.errors import UserError
from raycifar.space.dimension import Dimension
from raycifar.space.file import dimensions
from raycifar.space.find import Space
from raycifar.space.sections import SearcherName, SearcherSettings


def startup_trials(num_samples: int | None) -> int:
    """TPE's random proposals before it models: a third of the sweep, between 2 and 10
    (Optuna's default, 10, would make a sweep of up to 10 trials pure random search)."""
    return 10 if num_samples is None else max(2, min(10, num_samples // 3))


def population_size(num_samples: int | None) -> int:
    """NSGA-II's generation size: half the sweep, between 4 and 50 (Optuna's default is 50)."""
    return 50 if num_samples is None else max(4, min(50, num_samples // 2))


def grid_space(space: Space) -> dict[str, list]:
    """The grid of the ``grid`` searcher: every ``choice`` dimension's values (encoded for
    Optuna). Any other sampler is a :class:`UserError` naming its key."""
    grid = {}
    for key, dimension in dimensions(space.spec):
        if dimension.sampler == "constant":
            continue
        if dimension.sampler != "choice":
            raise UserError(
                f"{space.path}: {key}: the grid searcher runs choice dimensions only, "
                f"this one is {dimension.describe()} (write it as a choice, or use --searcher random/tpe)"
            )
        grid[key] = encoded(dimension)
    return grid


def grid_size(space: Space) -> int:
    """How many points the grid of :func:`grid_space` has."""
    return math.prod(len(values) for values in grid_space(space).values())


def make_sampler(space: Space, settings: SearcherSettings, seed: int, num_samples: int | None) -> BaseSampler:
    """The Optuna sampler of a searcher, seeded with ``seed``."""
    name: SearcherName = settings.name
    if name == "grid":
        return GridSampler(grid_space(space), seed=seed)
    if name == "tpe":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return TPESampler(
                seed=seed,
                n_startup_trials=settings.n_startup_trials or startup_trials(num_samples),
                multivariate=True,  # models the dimensions jointly ...
                group=True,  # ... within each set of keys that occur together (conditions)
                constant_liar=True,  # running trials count as bad: parallel asks spread out
            )
    if name == "qmc":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            return QMCSampler(seed=seed, scramble=True, warn_independent_sampling=False, warn_asynchronous_seeding=False)
    if name == "nsga2":
        return NSGAIISampler(seed=seed, population_size=settings.population_size or population_size(num_samples))
    return RandomSampler(seed=seed)


def shift_objectives(settings: SearcherSettings) -> bool:
    """Whether NSGA-II weighs clean against shifted validation accuracy (settings pickled by
    an older raycifar, in a resumed sweep, have no ``objectives``: size)."""
    return settings.name == "nsga2" and getattr(settings, "objectives", "size") == "shift"


def directions(settings: SearcherSettings) -> list[str]:
    """The study's directions: the score up; with ``nsga2`` the size down or the shifted accuracy up."""
    if settings.name != "nsga2":
        return ["maximize"]
    return ["maximize", "maximize"] if shift_objectives(settings) else ["maximize", "minimize"]


def encoded(dimension: Dimension) -> list:
    """A choice's values as Optuna categorical values (lists become their JSON text)."""
    return [str(list(value)) if isinstance(value, (list, tuple)) else value for value in dimension.args]
