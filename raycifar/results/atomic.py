"""Files replaced whole: the one way raycifar rewrites a file that others may read meanwhile
(the sweep record, ``resume.json``, the scheduler's state, a predictions CSV, a report).

What is written goes to a hidden temporary file beside the target, is flushed to disk, then
takes the target's name in one rename: a reader sees the old file or the new one, never half
of one, and a failure (a full disk, Ctrl+C) leaves the target as it was and no temporary
file behind. (Leaderboard rows are created once and never replaced: see
:func:`raycifar.results.leaderboard.write_row`.)
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TextIO

from raycifar.results.layout import TEMP_DIGITS, temporary_file


def _temporary(path: Path) -> Path:
    return temporary_file(path, secrets.token_hex(TEMP_DIGITS // 2))


def _fsync(path: Path) -> None:
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


@contextmanager
def replacing_path(path: Path) -> Iterator[Path]:
    """A temporary path for a writer that takes a path (a Tune scheduler's ``save``); the file
    written there replaces ``path`` when the block ends normally."""
    temporary = _temporary(path)
    try:
        yield temporary
        _fsync(temporary)
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


@contextmanager
def replacing(path: Path, newline: str | None = None) -> Iterator[TextIO]:
    """A new UTF-8 text file whose content replaces ``path`` when the block ends normally.
    Raises ``OSError`` if the temporary file cannot be created (a missing or read-only folder)."""
    with replacing_path(path) as temporary, open(temporary, "x", encoding="utf-8", newline=newline) as stream:
        yield stream
        stream.flush()


def replace_text(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` (UTF-8) as :func:`replacing` does."""
    with replacing(path) as stream:
        stream.write(text)
