"""YAML as users write it (space files, train configs, ``--set`` values), read strictly.

PyYAML keeps the last of two equal keys and drops the first without a word; here a
duplicated key is an error naming both lines. Every problem is one :class:`UserError` line
naming the source.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from raycifar.errors import UserError


class DuplicateKey(yaml.MarkedYAMLError):
    """A mapping that names the same key twice."""


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing duplicate keys in any mapping."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            line = key_node.start_mark.line + 1
            if isinstance(key, (str, int, float, bool)) and key in seen:
                raise DuplicateKey(problem=f"key {key!r} appears twice (lines {seen[key]} and {line})")
            if isinstance(key, (str, int, float, bool)):
                seen[key] = line
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> Any:
    """The YAML document in ``text``; ``source`` names it in errors (a path, ``--set lr``)."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except DuplicateKey as err:
        raise UserError(f"{source}: {err.problem}") from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise UserError(f"{source}:{where}: not valid YAML: {getattr(err, 'problem', None) or err}") from None


def load_yaml(path: Path) -> Any:
    """The YAML document in the file ``path``; one-line errors for unreadable files and bad YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as err:
        raise UserError(f"{path}: cannot read: {err.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file (expected UTF-8 YAML)") from None
    return parse_yaml(text, str(path))
