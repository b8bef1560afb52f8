"""Re-pointing a recorded data folder: a sweep (``resume.json``) or a leaderboard entry
(``config.json``) records the absolute path of the data it was trained on; when that folder
moved, ``--data-dir NEW`` points the command at the new place, checked to hold the same data.

The check is the data fingerprint recorded with the sweep or entry
(:func:`raycifar.data.fingerprint.data_fingerprint`, the one definition the trials' dataset
cache uses too). A sweep or entry recorded before fingerprints existed has none: the new
folder is then taken when its counts, classes and image shapes match what the record says
(:class:`Expected`), the caller says in one line that it could not be verified, and records
the new fingerprint.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from raycifar.data.fingerprint import data_fingerprint
from raycifar.data.readers import DataNotFound, detect_source
from raycifar.errors import UserError

IMAGE_SHAPE = (32, 32, 3)


@dataclass(frozen=True)
class Expected:
    """What a record says of its data: its fingerprint (None: recorded before fingerprints),
    and for the check without one, the class count and the test images' count and labels
    where known (None: not recorded)."""

    fingerprint: str | None = None
    classes: int | None = None
    test_count: int | None = None
    test_labels: np.ndarray | None = None


@dataclass(frozen=True)
class Repointed:
    """The data folder to use, its fingerprint (None when not computed: the recorded folder
    is still there), and the line to tell (None: nothing to say)."""

    data_dir: Path
    fingerprint: str | None
    note: str | None = None

    @property
    def moved(self) -> bool:
        return self.note is not None


def repoint(
    recorded: Path, given: Path | None, expected: Expected, dataset: str, label_mode: str, subject: str,
    option: str = "--data-dir",
) -> Repointed:
    """The data folder of ``subject`` (e.g. ``sweep NAME``, ``entry ID``): the ``recorded``
    one, or ``given`` (``option``) when it differs, checked to hold the same data.

    Raises :class:`UserError` (one line): the recorded folder is gone and none is given (the
    line says that ``option`` re-points it), or the given folder holds other data.
    """
    recorded = Path(recorded)
    if given is None or Path(given) == recorded:
        if not recorded.exists():
            raise UserError(
                f"{subject}: its recorded data folder {recorded} is gone; if the data moved, pass {option} NEW_FOLDER "
                "(checked to hold the same data)"
            )
        return Repointed(recorded, None)
    try:
        fingerprint = data_fingerprint(Path(given), dataset, label_mode)
    except DataNotFound as err:
        raise err.with_hint(f"{subject} was recorded with the data in {recorded}") from None
    if expected.fingerprint is not None:
        if fingerprint != expected.fingerprint:
            raise UserError(
                f"{option} {given}: not the data {subject} was recorded with ({recorded}, fingerprint "
                f"{expected.fingerprint}; this folder's is {fingerprint}): give the folder that holds that data"
            )
        return Repointed(Path(given), fingerprint, f"{subject}: data folder {recorded} re-pointed to {given} (same fingerprint {fingerprint})")
    _check_summary(Path(given), expected, dataset, label_mode, subject, option)
    note = (
        f"{subject}: data folder {recorded} re-pointed to {given}: its counts, classes and image shapes match, but it "
        f"could not be verified (recorded before data fingerprints); its fingerprint {fingerprint} is recorded now"
    )
    return Repointed(Path(given), fingerprint, note)


def _check_summary(folder: Path, expected: Expected, dataset: str, label_mode: str, subject: str, option: str) -> None:
    """A :class:`UserError` unless ``folder``'s test images have the expected count, labels
    and shape and its labels the expected number of classes."""
    source = detect_source(folder, dataset, label_mode)
    test = source.read("test")
    found = {
        "classes": len(source.class_names),
        "test images": len(test),
        "image shape": tuple(test.images.shape[1:]),
    }
    wanted = {
        "classes": expected.classes,
        "test images": expected.test_count,
        "image shape": IMAGE_SHAPE,
    }
    for what, value in wanted.items():
        if value is not None and found[what] != value:
            raise UserError(f"{option} {folder}: {what} {found[what]}, but {subject} was recorded with {value}")
    labels = expected.test_labels
    if labels is not None and len(labels) == len(test) and not np.array_equal(np.asarray(labels), test.labels):
        first = int(np.flatnonzero(np.asarray(labels) != test.labels)[0])
        raise UserError(f"{option} {folder}: test image {first} is labelled {test.labels[first]}, but {subject} was recorded with {labels[first]}")
