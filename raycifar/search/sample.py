"""Configs drawn from a space without a sweep: ``raycifar space sample`` and the one config
of ``raycifar train``. They are the first proposals of the ``random`` searcher with the same
seed, so what is shown is what a sweep would run."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from raycifar.config import TrialConfig
from raycifar.space.find import Space, load_space, require_constants


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
    proposals of the ``random`` searcher with ``seed`` (:mod:`raycifar.search.searchers`).

    Over-budget draws are redrawn (at most ``MAX_DRAWS_PER_SAMPLE`` times per sample);
    a space where no draw fits raises :class:`UserError` with the smallest size seen.
    """
    from raycifar.search.searchers import Search

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
