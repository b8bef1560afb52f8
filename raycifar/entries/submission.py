"""A competition submission: the CSV's columns and label form, and ``--like SAMPLE`` (a
competition's sample submission copied: its header, its id column, its row order).

Rows come as batches of (ids, probabilities) and are written as they come
(:func:`submission_rows`), so that the file's size, not memory, grows with the input; with
``--like`` they are put in the sample's order, which keeps one label (and, with
``--probabilities``, one row of probabilities) per image in memory until the end.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from raycifar.errors import UserError

LabelStyle = Literal["name", "index"]
DECIMALS = 6
Batches = Iterable[tuple[list[str], np.ndarray]]  # (ids, k x C float32 probabilities)


@dataclass(frozen=True)
class Columns:
    """The CSV's columns: ``id`` and ``label`` names, the label as class ``name`` or ``index``,
    and with ``probabilities`` one column per class (its name), 6 decimals."""

    id: str = "id"
    label: str = "label"
    labels: LabelStyle = "name"
    probabilities: bool = False

    def header(self, class_names: tuple[str, ...]) -> list[str]:
        return [self.id, self.label, *(class_names if self.probabilities else ())]

    def row(
        self, image_id: str, label: int, probabilities: np.ndarray | None, class_names: tuple[str, ...]
    ) -> list[str]:
        """One CSV row: the id, the label in this form, the probabilities when asked for."""
        shown = class_names[label] if self.labels == "name" else str(label)
        return [image_id, shown, *((f"{p:.{DECIMALS}f}" for p in probabilities) if self.probabilities else ())]


@dataclass(frozen=True)
class Like:
    """A sample submission: its ``header``, its ids in row order, each id's row, and the label
    form its label column suggests (``index`` when every label is an integer, else ``name``)."""

    path: Path
    header: list[str]
    ids: list[str]
    rows: dict[str, int]
    labels: LabelStyle

    def row_of(self, image_id: str, where: str) -> int:
        """The sample's row of ``image_id``; a UserError naming ``where`` (file and index) if none."""
        row = self.rows.get(image_id)
        if row is None:
            raise UserError(
                f"{where}: id {image_id!r} is not in {self.path}'s id column {self.header[0]!r}; nothing written"
            )
        return row

    def check(self, ids: Iterable[tuple[str, str]]) -> None:
        """Every (id, where) must match one sample row and every sample row one id."""
        seen = np.zeros(len(self.ids), bool)
        for image_id, where in ids:
            seen[self.row_of(image_id, where)] = True
        if not seen.all():
            first = int(np.argmin(seen))
            raise UserError(
                f"{self.path} line {first + 2}: id {self.ids[first]!r} is not among the images; nothing written"
            )


def read_like(path: Path) -> Like:
    """The sample submission at ``path`` (UTF-8 CSV, a header then one row per id, the id first
    and the label second); a one-line UserError naming the line of a problem."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as stream:
            lines = list(csv.reader(stream))
    except FileNotFoundError:
        raise UserError(f"--like {path}: no such file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise UserError(f"--like {path}: not a readable UTF-8 CSV file ({' '.join(str(err).split())})") from None
    if not lines or len(lines[0]) != 2:
        found = ", ".join(lines[0]) if lines else "an empty file"
        raise UserError(f"--like {path}: the header must be two columns, an id and a label (found: {found})")
    rows: dict[str, int] = {}
    for number, line in enumerate(lines[1:]):
        if len(line) != 2 or not line[0]:
            raise UserError(f"--like {path} line {number + 2}: expected an id and a label, found {len(line)} fields")
        if line[0] in rows:
            raise UserError(f"--like {path} line {number + 2}: id {line[0]!r} repeats line {rows[line[0]] + 2}")
        rows[line[0]] = number
    labels: LabelStyle = "index" if lines[1:] and all(line[1].isdigit() for line in lines[1:]) else "name"
    return Like(path, lines[0], [line[0] for line in lines[1:]], rows, labels)


def submission_rows(
    batches: Batches, class_names: tuple[str, ...], columns: Columns, like: Like | None = None
) -> Iterator[list[str]]:
    """The header and one row per image, in the order of ``batches`` or, with ``like``, in the
    sample's order under the sample's header (the id column renamed as the sample names it)."""
    if like is None:
        yield columns.header(class_names)
        for ids, probabilities in batches:
            for image_id, row in zip(ids, probabilities, strict=True):
                yield columns.row(image_id, int(row.argmax()), row, class_names)
        return
    kept = np.zeros((len(like.ids), len(class_names)), np.float32) if columns.probabilities else None
    labels = np.full(len(like.ids), -1, np.int64)
    for ids, probabilities in batches:
        rows = np.array([like.row_of(image_id, image_id) for image_id in ids], np.int64)
        labels[rows] = probabilities.argmax(axis=1)
        if kept is not None:
            kept[rows] = probabilities
    yield like.header + (list(class_names) if columns.probabilities else [])
    for row, image_id in enumerate(like.ids):
        yield columns.row(image_id, int(labels[row]), kept[row] if kept is not None else None, class_names)
