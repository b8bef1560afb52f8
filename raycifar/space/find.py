"""A space by name or path: the shipped spaces, and :func:`load_space` (found, validated, its
models known). Imports neither torch nor Ray."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from raycifar.errors import UserError
from raycifar.models.registry import VARIANTS
from raycifar.space.file import SpaceFile, dimensions, load_space_file


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
    replaced by ``overrides`` (see :func:`raycifar.space.file.load_space_file`)."""
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
