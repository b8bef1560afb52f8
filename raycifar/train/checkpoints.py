"""The checkpoints of a trial that trains inside its Tune trial (no Ray Train run): written
where Ray Train writes a run's, in the same format, so that selection, promotion, status,
the report and resume read them alike.

::

    <sweep>/train_runs/<trial id>/checkpoint_<UTC time>/   metrics.json, model.safetensors,
                                                            config.json, train_state.pt

A checkpoint is written into a hidden staging folder beside the others and renamed into
place whole: a trial killed while writing leaves no half checkpoint (its staging folder is
removed by the next start). Like Ray Train's ``CheckpointConfig(num_to_keep=2)``, only the
:data:`KEPT` best by the selection metric and the latest are kept.

Beside them, ``epochs.jsonl`` keeps every epoch the trial reported (one JSON line each), and
``driver`` the id of the sweep driver that last started the trial: a trial started by a new
driver (a resumed sweep) re-reports the epochs Tune's saved results lack
(:mod:`raycifar.sweep.in_trial`).

Imports neither torch nor Ray.
"""

from __future__ import annotations

import json
import math
import shutil
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from raycifar.results.schema import EPOCH

KEPT = 2  # the best checkpoints kept, besides the latest (Ray Train's runs keep as many)
CHECKPOINT_PREFIX = "checkpoint_"
METRICS_FILE = "metrics.json"  # in a checkpoint: the metrics reported with it
STAGING_PREFIX = ".staging-"
EPOCHS_FILE = "epochs.jsonl"  # every reported epoch, in order
DRIVER_FILE = "driver"  # the id of the driver that last started the trial


@dataclass(frozen=True)
class Saved:
    """One checkpoint on disk and the metrics reported with it."""

    path: Path
    metrics: dict

    @property
    def epoch(self) -> int:
        return int(self.metrics.get(EPOCH, 0))


@dataclass(frozen=True)
class CheckpointFolder:
    """A trial's checkpoint folder ``run_dir`` (``<sweep>/train_runs/<trial id>``); ``metric``
    ranks its checkpoints (``val_acc``, or ``epoch`` for train+val trials)."""

    run_dir: Path
    metric: str

    def saved(self) -> list[Saved]:
        """The complete checkpoints, oldest epoch first (a folder without readable metrics is skipped)."""
        found = []
        for path in sorted(self.run_dir.glob(f"{CHECKPOINT_PREFIX}*")):
            try:
                metrics = json.loads((path / METRICS_FILE).read_text())
            except (OSError, ValueError):
                continue
            if isinstance(metrics, dict):
                found.append(Saved(path, metrics))
        return sorted(found, key=lambda saved: (saved.epoch, saved.path.name))

    def latest(self) -> Saved | None:
        """The checkpoint of the latest epoch, where a restarted trial goes on from (None: none yet)."""
        saved = self.saved()
        return saved[-1] if saved else None

    def staging(self) -> Path:
        """A new empty staging folder for the next checkpoint (earlier leftovers removed)."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for leftover in self.run_dir.glob(f"{STAGING_PREFIX}*"):
            shutil.rmtree(leftover, ignore_errors=True)
        return Path(tempfile.mkdtemp(prefix=STAGING_PREFIX, dir=self.run_dir))

    def commit(self, staging: Path) -> Path:
        """Rename ``staging`` (filled by the loop, with its :data:`METRICS_FILE`) into place as
        ``checkpoint_<UTC time>``, drop the checkpoints no longer kept, and return its path.
        Raises ``OSError`` (a full disk ...), leaving the kept checkpoints as they were."""
        stamp = datetime.now(UTC).strftime("%Y-%m-%d_%H-%M-%S.%f")
        final = self.run_dir / f"{CHECKPOINT_PREFIX}{stamp}"
        staging.rename(final)
        self.prune()
        return final

    def prune(self) -> None:
        """Delete every checkpoint but the latest and the :data:`KEPT` best by the metric."""
        saved = self.saved()
        if len(saved) <= KEPT + 1:
            return
        best = sorted(saved, key=self._score, reverse=True)[:KEPT]
        keep = {saved[-1].path, *(entry.path for entry in best)}
        for entry in saved:
            if entry.path not in keep:
                shutil.rmtree(entry.path, ignore_errors=True)

    def _score(self, saved: Saved) -> float:
        value = saved.metrics.get(self.metric)
        try:
            score = float(value)
        except (TypeError, ValueError):
            return -math.inf
        return score if math.isfinite(score) else -math.inf

    def log_epoch(self, metrics: dict) -> None:
        """Append one reported epoch to :data:`EPOCHS_FILE`."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        with open(self.run_dir / EPOCHS_FILE, "a") as stream:
            stream.write(json.dumps(metrics, default=str) + "\n")

    def logged(self) -> list[dict]:
        """Every epoch :meth:`log_epoch` kept, in order (a line cut short by a kill is skipped)."""
        path = self.run_dir / EPOCHS_FILE
        rows = []
        for line in path.read_text().splitlines() if path.is_file() else []:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict):
                rows.append(row)
        return rows

    def claim(self, driver_id: str) -> bool:
        """Record that driver ``driver_id`` starts the trial now; True when another driver
        started it before (the sweep was resumed), False for its first start or a restart
        (a crash Tune retried) under the same driver."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        path = self.run_dir / DRIVER_FILE
        before = path.read_text().strip() if path.is_file() else None
        path.write_text(driver_id)
        return before is not None and before != driver_id
