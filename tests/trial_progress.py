"""Where a running trial is, as the trial itself writes it (no lag): its latest checkpoint's
``metrics.json`` under ``sweeps/<name>/train_runs/<trial id>/``. Tune's ``result.json`` in the
sweep folder is a copy Tune syncs every few seconds, so a short trial may have ended before
its first line shows there."""

from __future__ import annotations

import json
from pathlib import Path


def latest_checkpoints(sweep_dir: Path) -> dict[str, dict]:
    """Per trial id, the metrics of its latest complete checkpoint, with the trial's
    ``train`` config (from the checkpoint's ``config.json``) under ``"train"``."""
    latest: dict[str, dict] = {}
    for metrics_file in sweep_dir.glob("train_runs/*/checkpoint_*/metrics.json"):
        try:
            metrics = json.loads(metrics_file.read_text())
            config = json.loads((metrics_file.parent / "config.json").read_text())
        except (OSError, ValueError):  # being written
            continue
        trial_id = metrics_file.parent.parent.name
        if metrics.get("epoch", 0) >= latest.get(trial_id, {}).get("epoch", 0):
            latest[trial_id] = {**metrics, "train": config.get("train", {})}
    return latest


def tune_has_an_epoch_of(sweep_dir: Path, trial_id: str) -> bool:
    """Whether the sweep's driver has received an epoch of the trial (the debug timeline's
    ``trial_result`` marks: run the sweep with ``RAYCIFAR_TIMELINE=1``). Its checkpoint is
    then the run's own: a Ray Train worker killed after writing a checkpoint but before its
    run registered it would start again from scratch."""
    timeline = sweep_dir / "timeline.jsonl"
    lines = timeline.read_text().splitlines() if timeline.is_file() else []
    return any(f'"trial_result", "trial": "{trial_id}"' in line for line in lines)
