"""Names that become paths: a sweep's or a run's name is checked against the longest path
raycifar derives from it (:func:`raycifar.results.layout.sweep_paths`,
:func:`~raycifar.results.layout.run_paths`) before anything is written, so that a name too
long for the file system is one line at the start, not a traceback after the plan, nor a
sweep that cannot be promoted.

Reads the file system's limits (``os.pathconf``); writes nothing. Imports neither torch nor Ray.
"""

from __future__ import annotations

import os
from pathlib import Path

from raycifar.errors import UserError

NAME_MAX_DEFAULT = 255  # bytes in one file name (Linux, macOS), where pathconf cannot say
PATH_MAX_DEFAULT = 4096  # bytes in a whole path (Linux)
ARTIFACT_NAME_MAX = 128  # W&B's longest artifact name (wandb.sdk.artifacts._validators.NAME_MAXLEN)


def _exists(path: Path) -> bool:
    try:
        return path.exists()
    except OSError:  # a part too long to look up
        return False


def _limit(folder: Path, key: str, default: int) -> int:
    """``os.pathconf(folder, key)`` on ``folder``'s nearest existing ancestor, else ``default``."""
    existing = next((path for path in (folder, *folder.parents) if _exists(path)), Path("/"))
    try:
        value = os.pathconf(existing, key)
    except (OSError, ValueError, AttributeError):
        return default
    return value if value and value > 0 else default


def _shown(name: str) -> str:
    return repr(name) if len(name) <= 40 else f"{name[:24]!r}…{name[-8:]!r}"


def _allowed(name: str, path: Path) -> tuple[int, str, int]:
    """For one derived ``path``: the most bytes ``name`` may have, the longest part, its limit."""
    name_max = _limit(path.parent, "PC_NAME_MAX", NAME_MAX_DEFAULT)
    part = max(path.parts, key=lambda p: len(os.fsencode(p)) - name_max)
    return len(os.fsencode(name)) - (len(os.fsencode(part)) - name_max), part, name_max


def check_fits(name: str, option: str, paths: list[Path], artifact: str | None = None) -> None:
    """Raise :class:`UserError` (one line naming ``option``, the name, the file and the limit)
    when one of ``paths`` (those derived from ``name``) has a part longer than a file name may
    be on its file system, or is longer than a path may be; or when ``artifact`` (the W&B
    artifact name derived from it, None: W&B off) is longer than W&B takes.

    The line says how many bytes (characters, for ASCII names) the name may have at most."""
    size = len(os.fsencode(name))
    allowed, part, name_max, where = min((*_allowed(name, path), path.parent) for path in paths)
    if allowed < size:
        raise UserError(
            f"{option} {_shown(name)} ({len(name)} characters): too long for a file name: raycifar would write {_shown(part)} "
            f"({len(os.fsencode(part))} bytes, over the {name_max} bytes a file name may have) in "
            f"{where}; use a name of at most {max(1, allowed)} characters"
        )
    for path in paths:
        path_max = _limit(path.parent, "PC_PATH_MAX", PATH_MAX_DEFAULT)
        over = len(os.fsencode(str(path))) - path_max + 1
        if over > 0:
            raise UserError(
                f"{option} {_shown(name)}: raycifar would write {_shown(str(path))}, "
                f"{len(os.fsencode(str(path)))} bytes, over the {path_max} a path may have here; use a name of at "
                f"most {max(1, size - over)} characters, or a shorter --results-dir"
            )
    if artifact is not None and len(artifact) > ARTIFACT_NAME_MAX:
        over = len(artifact) - ARTIFACT_NAME_MAX
        raise UserError(
            f"{option} {_shown(name)}: the W&B model artifact {_shown(artifact)} would be over W&B's "
            f"{ARTIFACT_NAME_MAX} characters; use a name of at most {len(name) - over} characters, or --wandb off"
        )
