"""A sweep folder and its promoted entry, built by hand as Tune, the sweep driver and
promotion leave them, for the report tests."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path

from board_files import exported_checkpoint

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.entries.promote import promote
from raycifar.results.sweep_record import SweepRecorder

START = datetime(2026, 3, 1, 9, 0, tzinfo=timezone.utc)
# trial -> (params, widths, lr, recorded end state, [(epoch, val_acc, train_loss)])
TRIALS = {
    "t1": (1000, (8,), 0.05, "finished", [(1, 0.40, 2.0), (2, 0.55, 1.6), (3, 0.58, 1.4), (4, 0.60, 1.3)]),
    "t2": (2000, (16,), 0.10, "finished", [(1, 0.45, 1.9), (2, 0.60, 1.5), (3, 0.68, 1.2), (4, 0.70, 1.1)]),
    "t3": (1500, (12,), 0.20, "stopped_early", [(1, 0.50, 2.1)]),
    "t5": (3000, (24,), 0.15, "stopped_early", [(1, 0.52, 1.8), (2, 0.65, 1.4)]),
    "t4": (1200, (8,), 0.30, "error", []),
}
PARETO = ["t1", "t2"]  # t3 and t5 have more params than t1 / t2 and lower accuracy
BUDGET = 5000


def trial_config(data_dir: Path, params: int, widths: tuple[int, ...], lr: float) -> dict:
    config = TrialConfig(
        space="smoke_space", data_dir=str(data_dir), params=params, budget=BUDGET,
        model=ModelConfig(depths=(1,), widths=widths), train=TrainConfig(epochs=4, lr=lr),
    )  # fmt: skip
    return config.model_dump(mode="json")


def write_sweep(results: Path, cifar_dir: Path, name: str = "s") -> Path:
    """Sweep ``name`` of space smoke_space (ASHA grace 1, factor 2; 4 epochs: rungs 1 and 2)."""
    sweep = results / "sweeps" / name
    clock = iter(START + timedelta(seconds=30 * i) for i in range(1000))
    recorder = SweepRecorder.start(sweep, name, "smoke_space", planned_trials=len(TRIALS), now=lambda: next(clock))
    for trial_id, (params, widths, lr, state, epochs) in TRIALS.items():
        folder = sweep / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        config = trial_config(cifar_dir, params, widths, lr)
        (folder / "params.json").write_text(json.dumps(config))
        lines = [{"epoch": e, "val_acc": acc, "train_loss": loss, "trial_id": trial_id} for e, acc, loss in epochs]
        (folder / "result.json").write_text("".join(json.dumps(line) + "\n" for line in lines))
        recorder.trial_started(trial_id, config, model="resnet")
        if state == "error":
            (folder / "error.txt").write_text("Traceback ...\n")
        recorder.trial_ended(trial_id, state, error_file=str(folder / "error.txt") if state == "error" else None)
    recorder.ended("completed")
    return sweep


def write_promoted_sweep(results: Path, cifar_dir: Path, scratch: Path) -> tuple[Path, dict]:
    """:func:`write_sweep` and a model promoted from it (evaluated on ``cifar_dir``'s test set)."""
    sweep = write_sweep(results, cifar_dir)
    checkpoint = exported_checkpoint(scratch / "checkpoint", cifar_dir, seed=1)
    row = promote(checkpoint, results, sweep="s", trial_id="t2", val_acc=0.70, epochs=4,
                  source_checkpoint=str(checkpoint), device_hours=0.25, device="CPU", wall_s=600.0)  # fmt: skip
    SweepRecorder.reopen(sweep).promoted(row["entry_id"])
    return sweep, row


def charts(html: str) -> dict[str, dict]:
    """Every chart's plotly figure in a report page, by chart id."""
    found = re.findall(r'<script type="application/json" id="(chart-[\w-]+)-data">(.*?)</script>', html, re.S)
    return {chart_id: json.loads(data.replace("<\\/", "</")) for chart_id, data in found}


def section(html: str, section_id: str) -> str:
    """The HTML of one ``<section id=...>`` of a report page."""
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', html, re.S)
    assert match, f"no section {section_id}"
    return match.group(1)


# trial -> (val_acc, weight seed): the sweep whose trials left their checkpoints (robustness comparison)
CHECKPOINTED = {"a": (0.50, 11), "b": (0.70, 12), "c": (0.60, 13)}


def write_checkpointed_sweep(results: Path, data_dir: Path, corrupted: Path, name: str = "r") -> tuple[Path, dict]:
    """Sweep ``name`` of three one-epoch trials whose checkpoints are on disk, the best (``b``)
    promoted and scored on the corrupted set in ``corrupted``."""
    sweep = results / "sweeps" / name
    clock = iter(START + timedelta(seconds=30 * i) for i in range(1000))
    recorder = SweepRecorder.start(sweep, name, "smoke_space", planned_trials=len(CHECKPOINTED), now=lambda: next(clock))
    checkpoints = {}
    for trial_id, (val_acc, seed) in CHECKPOINTED.items():
        checkpoint = exported_checkpoint(sweep / "train_runs" / trial_id / "checkpoint_000000", data_dir, seed=seed)
        checkpoints[trial_id] = checkpoint
        folder = sweep / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        config = json.loads((checkpoint / "config.json").read_text())
        (folder / "params.json").write_text(json.dumps(config))
        line = {"epoch": 1, "val_acc": val_acc, "train_loss": 1.0, "trial_id": trial_id, "checkpoint_path": str(checkpoint)}
        (folder / "result.json").write_text(json.dumps(line) + "\n")
        recorder.trial_started(trial_id, config, model="resnet")
        recorder.trial_ended(trial_id, "finished")
    recorder.ended("completed")
    row = promote(checkpoints["b"], results, sweep=name, trial_id="b", val_acc=0.70, epochs=1,
                  source_checkpoint=str(checkpoints["b"]), corrupted=corrupted, robustness=True)  # fmt: skip
    SweepRecorder.reopen(sweep).promoted(row["entry_id"])
    return sweep, row
