"""What the jobs share: joining or starting Ray, promoting a Ray Train checkpoint, logging
the promoted model to W&B, and writing a sweep's report."""

from __future__ import annotations

import tempfile
from pathlib import Path

from raycifar.cluster.session import connect
from raycifar.display import Display
from raycifar.entries.promote import promote
from raycifar.pipeline import lazy
from raycifar.pipeline.wandb_log import log_model_artifact
from raycifar.report.gather import REPORT_FILE, write_report
from raycifar.results import layout


def connect_ray(address: str | None, dashboard: bool, display: Display) -> None:
    """Join the Ray at ``address`` or start a local one; tell where its dashboard is."""
    url = connect(address, dashboard)
    if url:
        display.info(f"Ray dashboard: {url}")


def log_promoted(row: dict, results_dir: Path, wandb: str, display: Display) -> None:
    """Log the promoted entry to W&B as a ``model`` artifact aliased ``best`` (unless off)."""
    artifact = log_model_artifact(row, layout.entry_dir(results_dir, row["entry_id"]), results_dir, wandb)
    if artifact:
        display.info(f"W&B ({wandb}): model artifact {artifact}:best in {layout.wandb_dir(results_dir)}")


def promote_checkpoint(checkpoint_path: str, results_dir: Path, **row_fields: object) -> dict:
    """Fetch a Ray Train checkpoint and promote it to the leaderboard; returns the new row."""
    with tempfile.TemporaryDirectory() as scratch:
        checkpoint = lazy.train_run().fetch_checkpoint(checkpoint_path, Path(scratch) / "checkpoint")
        return promote(checkpoint, results_dir, source_checkpoint=checkpoint_path, **row_fields)


def write_sweep_report(results_dir: Path, name: str, display: Display) -> Path | None:
    """Write the sweep's HTML report to ``sweeps/<name>/report.html``. A failure is told, not
    raised: the model is promoted by then, and ``raycifar report`` rebuilds the page."""
    try:
        return write_report(results_dir, name, layout.sweep_dir(results_dir, name) / REPORT_FILE)
    except Exception as err:  # noqa: BLE001 - a page that failed must not fail a finished sweep
        display.info(f"no report written ({err}); write it with: raycifar report {name} --results-dir {results_dir}")
        return None
