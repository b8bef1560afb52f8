"""The report's robustness figures: the promoted entry's ``robustness.json`` (accuracy by
corruption x severity, the gap, the most-hurt classes) and a comparison of the sweep's top-k
trials on clean vs corrupted accuracy.

The comparison scores each of the top :data:`TOP_K` trials' best checkpoints (by val_acc, as
promotion picks them) on a small subset of the same corrupted set: the first images of every
corruption x severity, as many as fit in :data:`BUDGET_S` seconds at the promoted model's
measured corrupted throughput (at most :data:`SUBSET`, at least :data:`MIN_SUBSET`, else it is
skipped and the page says why). Its clean accuracy is on the same clean test images when the
set is known to be made from them, else on the trial's val_acc (the page says which). It runs
only for entries that have ``robustness.json``: a sweep without a corrupted set costs nothing.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import plotly.graph_objects as go

from raycifar.errors import UserError
from raycifar.results.schema import VAL_ACC

TOP_K = 5
SUBSET = 20  # images per corruption x severity, at most
MIN_SUBSET = 4
BUDGET_S = 20.0  # seconds the comparison may take, predicted from the entry's measured throughput
TOP_CLASSES = 5
COLOURS = ("#2563eb", "#f97316", "#16a34a", "#dc2626")  # the report's palette (raycifar.report.html.PALETTE)


def gather_robustness(entry_folder: Path, sweep_dir: Path | None, data_dir: Path, promoted: str | None) -> dict | None:
    """The section's figures, or None when the entry has no ``robustness.json``; ``promoted``:
    the entry's source checkpoint (marked among the top trials)."""
    from raycifar.entries.robustness import most_hurt
    from raycifar.results.leaderboard import read_robustness

    figures = read_robustness(entry_folder)
    if figures is None:
        return None
    return {**figures, "most_hurt": most_hurt(figures, TOP_CLASSES), "top_k": compare_top_k(figures, sweep_dir, data_dir, promoted)}


def _subset(figures: dict, trials: int) -> int:
    """Images per cell that fit :data:`BUDGET_S` for ``trials`` models (0: none fit)."""
    speed = figures.get("images_per_s") or 0.0
    cells = len(figures["by_corruption"]) * len(figures["by_severity"])
    fit = math.floor(BUDGET_S * speed / max(trials * (cells + 1), 1))
    subset = min(SUBSET, fit, int(figures["corrupted_set"]["images"]))
    return subset if subset >= MIN_SUBSET else 0


def compare_top_k(figures: dict, sweep_dir: Path | None, data_dir: Path, promoted: str | None = None) -> dict:
    """``{"trials": [{trial_id, val_acc, clean_acc, corrupted_acc, checkpoint, promoted}], "images_per_cell",
    "clean_from"}`` for the top-k trials, or ``{"note": why not}``."""
    if sweep_dir is None:
        return {"note": "no sweep: no trials to compare"}
    from raycifar.data.corrupted_reader import read_corrupted_set
    from raycifar.data.readers import ImageSet, read_part
    from raycifar.entries.evaluate import predict_labelled
    from raycifar.entries.from_sweep import choose
    from raycifar.entries.robustness import score_corrupted
    from raycifar.models.files import rebuild
    from raycifar.results.trial_files import local_checkpoint, read_trials

    try:
        found = read_corrupted_set(Path(figures["corrupted_set"]["folder"]))
        trials = read_trials(sweep_dir)
    except UserError as err:
        return {"note": f"the corrupted set or the trials cannot be read ({err})"}
    best = []
    for history in trials.histories:
        try:
            best.append(choose(trials, history.trial_id))
        except UserError:
            continue
    best = sorted(best, key=lambda c: -c.val_acc)[:TOP_K]
    if len(best) < 2:
        return {"note": f"{len(best)} trial(s) left a checkpoint on disk; nothing to compare"}
    subset = _subset(figures, len(best))
    if not subset:
        return {"note": f"scoring {len(best)} trials would take over {BUDGET_S:.0f} s at the measured throughput"}
    clean_images = None
    if figures.get("clean_matched"):
        try:
            clean_images = read_part(data_dir, "test", found.dataset, found.label_mode)
        except UserError:
            clean_images = None
    rows = []
    for chosen in best:
        folder = local_checkpoint(sweep_dir, chosen.trial_id, chosen.checkpoint)
        if folder is None:
            continue
        model, config = rebuild(folder)
        scores = score_corrupted(model, config, found, limit=subset)
        clean = None
        if clean_images is not None:
            first = ImageSet(clean_images.images[:subset], clean_images.labels[:subset], clean_images.class_names)
            clean = float((predict_labelled(model, first, config.dataset).predicted == first.labels).mean())
        rows.append({
            "trial_id": chosen.trial_id, VAL_ACC: chosen.val_acc, "clean_acc": clean,
            "corrupted_acc": scores["corrupted_acc"], "checkpoint": chosen.checkpoint,
            "promoted": chosen.checkpoint == promoted,
        })  # fmt: skip
    clean_from = (
        f"the same {subset} clean test images" if clean_images is not None else "val_acc (the set's clean images are not known)"
    )
    return {"trials": rows, "images_per_cell": subset, "clean_from": clean_from,
            "corrupted_images": int(subset * len(found.corruptions) * len(found.severities)),
            "spread": float(np.ptp([r["corrupted_acc"] for r in rows])) if rows else None}  # fmt: skip


# ---------------------------------------------------------------------- figures (styled by raycifar.report.html)


def heatmap_figure(found: dict) -> go.Figure:
    """Accuracy by corruption (rows) and severity (columns), written in the cells."""
    names = list(found["by_corruption_severity"])
    severities = list(found["by_severity"])
    z = [[found["by_corruption_severity"][n].get(s) for s in severities] for n in names]
    fig = go.Figure(go.Heatmap(
        z=z, x=[f"severity {s}" for s in severities], y=names, colorscale="RdYlGn", zmin=0, zmax=1,
        texttemplate="%{z:.0%}", hovertemplate="%{y} · %{x}: %{z:.2%}<extra></extra>",
        colorbar={"title": {"text": "accuracy"}, "tickformat": ".0%"},
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    return fig


def severity_figure(found: dict) -> go.Figure:
    """Mean corrupted accuracy per severity, against the clean accuracy on the same images."""
    severities = list(found["by_severity"])
    fig = go.Figure(go.Scatter(
        x=severities, y=[found["by_severity"][s] for s in severities], mode="lines+markers", name="corrupted (mean)",
        line={"color": COLOURS[3], "width": 2}, hovertemplate="severity %{x}: %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    if found.get("clean_acc") is not None:
        fig.add_hline(y=found["clean_acc"], line={"dash": "dash", "color": COLOURS[0]},
                      annotation_text=f"clean {100 * found['clean_acc']:.1f}%", annotation_position="top right")  # fmt: skip
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return fig


def top_k_figure(top: dict) -> go.Figure:
    """Each top trial's clean against corrupted accuracy; the diagonal is no loss."""
    rows = top["trials"]
    x_key = "clean_acc" if all(r["clean_acc"] is not None for r in rows) else VAL_ACC
    fig = go.Figure(go.Scatter(
        x=[r[x_key] for r in rows], y=[r["corrupted_acc"] for r in rows], mode="markers+text", name="trials",
        text=[r["trial_id"] for r in rows], textposition="top center",
        marker={"size": 12, "color": [COLOURS[1] if r.get("promoted") else COLOURS[0] for r in rows]},
        hovertemplate="%{text}<br>clean %{x:.2%}<br>corrupted %{y:.2%}<extra></extra>",
    ))  # fmt: skip
    fig.add_trace(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="no loss",
                             line={"dash": "dot", "color": "#9ca3af"}, hoverinfo="skip"))  # fmt: skip
    fig.update_xaxes(tickformat=".0%")
    fig.update_yaxes(tickformat=".0%")
    return fig
