"""Tables that fit the terminal without cutting a value: identifiers and numbers are never
shortened (no ``laptop_s…``, no ``0.7…``).

A table built with Rich is fitted to the console's width when printed (:func:`fit`):

1. every column is shown whole, if the table fits;
2. else the less important columns are dropped, in the order the command names them, and one
   dim line after the table names what was dropped (``--format json`` or ``csv`` shows all);
3. else free-text columns (descriptions, entry points, trial counts) fold onto more lines;
4. else, when the whole identifiers and numbers alone are wider than the terminal, each row
   is printed as ``column: value`` lines, one block per row, every column and value whole
   (a value longer than a line is wrapped by the terminal).

Identifiers and numbers are never wrapped, so a copied id is one piece of text.
"""

from __future__ import annotations

import copy
import dataclasses
from collections.abc import Iterable, Sequence

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.markup import escape
from rich.table import Column, Table
from rich.text import Text

FOLDED_MIN = 12  # the narrowest a free-text column is folded to
# headers of the free-text columns raycifar's tables have (descriptions, lists): they may fold
FREE_TEXT = (
    "description",
    "entrypoint",
    "value or sampler",
    "searched (keys whose condition holds)",
    "widths",
    "trials",
)


def _plain(cell: object) -> str:
    return (
        cell.plain if isinstance(cell, Text) else Text.from_markup(cell).plain if isinstance(cell, str) else str(cell)
    )


def _width(column: Column) -> int:
    """Cells of ``column`` (and its header) as they print: the longest line."""
    texts = [_plain(column.header), *(_plain(cell) for cell in column._cells)]
    return max((cell_len(line) for text in texts for line in text.splitlines() or [""]), default=0)


def needed(table: Table, widths: Sequence[int]) -> int:
    """The console columns ``table`` takes with content widths ``widths``: content, padding,
    dividers and edges, as Rich adds them."""
    padding = sum(table._get_padding_width(i) for i in range(len(widths)))
    return sum(widths) + padding + table._extra_width


def _drop(table: Table, names: set[str]) -> Table:
    table.columns[:] = [c for c in table.columns if _plain(c.header) not in names]
    for index, column in enumerate(table.columns):
        column._index = index  # Rich pads the first and last column by their index
    return table


def _records(table: Table, pairs: bool = False) -> RenderableType:
    """Each row as ``column: value`` lines (values whole), rows separated by a blank line; a
    key/value table (``pairs``) as one ``key: value`` line per row."""
    blocks: list[RenderableType] = [Text(_plain(table.title))] if table.title else []
    if pairs:
        key, value = table.columns
        lines = [f"{_plain(k)}: {_plain(v)}" for k, v in zip(key._cells, value._cells, strict=True)]
        return Group(*blocks, Text("\n".join(lines)))
    for row in range(table.row_count):
        lines = [f"{_plain(c.header)}: {_plain(c._cells[row])}" for c in table.columns]
        blocks.append(Text("\n".join(lines) + "\n"))  # printed soft-wrapped: not broken; else folded
    return Group(*blocks)


def fit(
    table: Table, width: int, drop: Sequence[str] = (), text: Sequence[str] = (), pairs: bool = False
) -> RenderableType:
    """``table`` (rows added) fitted to ``width`` console columns as the module says:
    ``drop`` names the columns that may be dropped, first dropped first; ``text`` the
    free-text columns that may fold; ``pairs``: a key/value table. Every other column is
    shown whole or not at all."""
    dropped: list[str] = []
    every = list(table.columns)
    for name in [None, *drop]:
        if name is not None:
            _drop(table, {name})
            dropped.append(name)
        widths = [_width(c) for c in table.columns]
        folded = [
            min(w, FOLDED_MIN) if _plain(c.header) in text else w for c, w in zip(table.columns, widths, strict=True)
        ]
        if needed(table, widths) <= width:
            return _shown(table, widths, dropped, text, fold=False)
        if needed(table, folded) <= width:
            return _shown(table, widths, dropped, text, fold=True)
    table.columns[:] = every  # one block per row has room for every column
    return _records(table, pairs)


def _shown(table: Table, widths: list[int], dropped: list[str], text: Sequence[str], fold: bool) -> RenderableType:
    for column, full in zip(table.columns, widths, strict=True):
        if fold and _plain(column.header) in text:
            column.overflow, column.no_wrap, column.min_width = "fold", False, min(full, FOLDED_MIN)
        else:
            column.no_wrap, column.min_width, column.overflow = True, full, "ignore"
    table.width = None
    return _with_note(table, dropped)


def _with_note(shown: RenderableType, dropped: list[str]) -> RenderableType:
    if not dropped:
        return shown
    note = (
        f"[dim](not shown in this terminal's width: {escape(', '.join(dropped))}; --format json shows every column)[/]"
    )
    return Group(shown, note)


class FittedTable(Table):
    """A :class:`rich.table.Table` that fits itself to the width it is printed in (see
    :func:`fit`): ``drop`` names the columns that may be dropped, first dropped first,
    ``text`` the free-text columns that may fold; ``pairs``: a key/value table, printed as
    ``key: value`` lines when it does not fit."""

    def __init__(
        self, *headers: str, drop: Iterable[str] = (), text: Iterable[str] = (), pairs: bool = False, **options: object
    ) -> None:
        super().__init__(*headers, **options)  # type: ignore[arg-type]
        self.drop, self.text, self.pairs = tuple(drop), tuple(text), pairs

    def fitted(self, width: int) -> RenderableType:
        """This table fitted to ``width`` columns (a fitted copy: the table is unchanged)."""
        plain = copy.copy(self)
        plain.__class__ = Table
        plain.columns = [dataclasses.replace(c, _cells=list(c._cells)) for c in self.columns]
        return fit(plain, width, self.drop, self.text, self.pairs)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        fitted = self.fitted(options.max_width)
        yield from (fitted.__rich_console__(console, options) if isinstance(fitted, Table) else [fitted])


def print_fitted(console: Console, table: FittedTable) -> None:
    """Print ``table`` fitted to ``console``'s width, soft-wrapped: a value longer than a line
    (in the record layout) is wrapped by the terminal, not broken by Rich."""
    console.print(table.fitted(console.width), soft_wrap=True)
