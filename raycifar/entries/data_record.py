"""An entry's data record: ``leaderboard/<entry>/data.json`` holds the fingerprint of the data
the entry was trained and tested on (:mod:`raycifar.data.fingerprint`), written at promotion.

Commands that read an entry's recorded data folder (``evaluate``, ``train --from-entry``,
``report``) go through :func:`entry_data_dir`: the recorded folder, or ``--data-dir``. When the
recorded folder is gone, ``--data-dir`` re-points it and must hold the same data
(:func:`raycifar.data.relocate.repoint`); an entry promoted before fingerprints existed is
re-pointed on matching counts, classes and labels, told in one line, and its fingerprint
recorded then. While the recorded folder is there, ``--data-dir`` may name other data
(``evaluate`` on another labelled set).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from raycifar.data.relocate import Expected, repoint
from raycifar.results.atomic import replace_text
from raycifar.results.layout import ENTRY_DATA_FILE as DATA_FILE
from raycifar.results.layout import entry_dir


def read_fingerprint(entry_folder: Path) -> str | None:
    """The fingerprint in ``entry_folder/data.json``; None when there is none (an entry
    promoted before fingerprints) or it cannot be read."""
    try:
        return str(json.loads((entry_folder / DATA_FILE).read_text())["fingerprint"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def record_fingerprint(entry_folder: Path, data_dir: Path, fingerprint: str) -> None:
    """Write ``entry_folder/data.json``: the data folder and its fingerprint (replaced whole)."""
    replace_text(entry_folder / DATA_FILE, json.dumps({"data_dir": str(data_dir), "fingerprint": fingerprint}, indent=1))


def _expected(entry_folder: Path, row: dict, config: dict) -> Expected:
    """What the entry's files say of its data: fingerprint, classes, test images and labels."""
    labels = None
    predictions = entry_folder / "predictions.npz"
    if predictions.is_file():
        from raycifar.entries.metrics import load_predictions

        labels = load_predictions(predictions).get("labels")
    count = row.get("test_images") or (len(labels) if labels is not None else None)
    classes = (config.get("model") or {}).get("num_classes")
    return Expected(read_fingerprint(entry_folder), classes, count, labels)


def entry_data_dir(
    results_dir: Path, row: dict, given: Path | None, tell: Callable[[str], None], option: str = "--data-dir"
) -> Path:
    """The data folder a command on entry ``row`` reads: ``given`` (``option``) or the
    recorded one. Raises :class:`~raycifar.errors.UserError` (one line) when the recorded
    folder is gone and none is given, or a given folder that re-points it holds other data."""
    config = json.loads(row["config_json"])
    recorded = Path(config["data_dir"])
    given = given.expanduser().resolve() if given is not None else None
    if given is not None and recorded.exists():
        return given  # other data, by choice: the recorded folder is still there
    folder = entry_dir(results_dir, row["entry_id"])
    expected = _expected(folder, row, config)
    dataset, label_mode = config.get("dataset") or "cifar10", config.get("label_mode") or "fine"
    found = repoint(recorded, given, expected, dataset, label_mode, f"entry {row['entry_id']}", option)
    if found.moved:
        tell(found.note or "")
        if expected.fingerprint is None and found.fingerprint is not None and folder.is_dir():
            record_fingerprint(folder, found.data_dir, found.fingerprint)
    return found.data_dir
