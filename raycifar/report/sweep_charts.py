"""The report's sweep sections: learning curves, accuracy against size, hyperparameters
(parallel coordinates and fANOVA importance). A chart that has nothing to show (no trial
with a finite value, a single trial, no hyperparameter that varies, zero variance) is
replaced by one "Skipped: what: why." line (:func:`raycifar.report.page.skipped`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from html import escape

import plotly.graph_objects as go

from raycifar.report.page import FONT, PALETTE, _layout, _note, _section, chart, skipped
from raycifar.results.schema import EPOCH, TRAIN_LOSS, VAL_ACC, VAL_ACC_SHIFT


def curves_figure(sweep: dict, metric: str) -> go.Figure:
    """One line per trial of ``metric`` by epoch; an X where ASHA stopped a trial; rungs dashed."""
    fig = go.Figure()
    for i, trial in enumerate(sweep["trials"]):
        stopped = trial["state"] == "stopped_early"
        last = len(trial["epochs"]) - 1
        sizes = [11 if stopped and j == last else 5 for j in range(len(trial["epochs"]))]
        symbols = ["x" if stopped and j == last else "circle" for j in range(len(trial["epochs"]))]
        fig.add_trace(go.Scatter(
            x=trial["epochs"], y=trial[metric], mode="lines+markers", name=f"{trial['trial_id']} ({trial['model']})",
            line={"color": PALETTE[i % len(PALETTE)], "width": 2}, marker={"size": sizes, "symbol": symbols},
            hovertemplate=f"trial {escape(trial['trial_id'])} · {trial['state']}<br>epoch %{{x}}: %{{y:.4f}}<extra></extra>",
        ))  # fmt: skip
    for rung in sweep["rungs"]:
        fig.add_vline(x=rung, line={"dash": "dash", "color": "#9ca3af", "width": 1},
                      annotation_text=f"rung {rung}", annotation_position="top", annotation_font_size=10)  # fmt: skip
    fig.update_xaxes(dtick=1 if sweep["scheduler"]["max_t"] <= 20 else None)
    return _layout(fig, metric, EPOCH, metric)


def size_figure(sweep: dict, key: str) -> go.Figure:
    """Best val_acc of every trial against ``key`` (params or macs); on params, the Pareto
    front and the budget line."""
    trials = [t for t in sweep["trials"] if t["best_val_acc"] is not None and t[key] is not None]
    fig = go.Figure(go.Scatter(
        x=[t[key] for t in trials], y=[t["best_val_acc"] for t in trials], mode="markers", name="trials",
        text=[f"{t['trial_id']} · {t['model']} · {t['state']}" for t in trials],
        marker={"size": 10, "color": PALETTE[0], "opacity": .8, "line": {"width": 1, "color": "#fff"}},
        hovertemplate="%{text}<br>" + key + " %{x:,}<br>best val_acc %{y:.4f}<extra></extra>",
    ))  # fmt: skip
    if key == "params":
        by_id = {t["trial_id"]: t for t in trials}
        front = [by_id[i] for i in sweep["pareto"] if i in by_id]
        fig.add_trace(go.Scatter(
            x=[t["params"] for t in front], y=[t["best_val_acc"] for t in front], mode="lines+markers",
            name="Pareto front", line={"shape": "hv", "color": PALETTE[1], "width": 2},
            marker={"size": 13, "symbol": "diamond-open", "color": PALETTE[1]}, hoverinfo="skip",
        ))  # fmt: skip
        if sweep["budget"]:
            fig.add_vline(x=sweep["budget"], line={"dash": "dot", "color": PALETTE[3]},
                          annotation_text=f"budget {sweep['budget']:,}", annotation_position="bottom left")  # fmt: skip
    title = "val_acc vs parameters" if key == "params" else "val_acc vs MACs (per 32×32 image)"
    return _layout(fig, title, "parameters" if key == "params" else "MACs", "best val_acc")


def shift_figure(sweep: dict) -> go.Figure:
    """Clean against shifted validation accuracy, a point per trial at its best epoch by the
    selected score; the Pareto front (both maximised) and the line where the two are equal."""
    trials = [t for t in sweep["trials"] if t["shift_pair"] is not None]
    fig = go.Figure(go.Scatter(
        x=[t["shift_pair"][0] for t in trials], y=[t["shift_pair"][1] for t in trials], mode="markers", name="trials",
        text=[f"{t['trial_id']} · {t['model']} · {t['state']}" for t in trials],
        marker={"size": 10, "color": PALETTE[0], "opacity": .8, "line": {"width": 1, "color": "#fff"}},
        hovertemplate="%{text}<br>val_acc %{x:.4f}<br>val_acc_shift %{y:.4f}<extra></extra>",
    ))  # fmt: skip
    by_id = {t["trial_id"]: t for t in trials}
    front = sorted((by_id[i]["shift_pair"] for i in sweep["shift_pareto"] if i in by_id), key=lambda pair: pair[0])
    fig.add_trace(go.Scatter(
        x=[p[0] for p in front], y=[p[1] for p in front], mode="lines+markers", name="Pareto front",
        line={"shape": "vh", "color": PALETTE[1], "width": 2},
        marker={"size": 13, "symbol": "diamond-open", "color": PALETTE[1]}, hoverinfo="skip",
    ))  # fmt: skip
    low = min(min(t["shift_pair"]) for t in trials)
    high = max(max(t["shift_pair"]) for t in trials)
    fig.add_shape(type="line", x0=low, y0=low, x1=high, y1=high, line={"dash": "dot", "color": PALETTE[3]})
    return _layout(fig, "val_acc vs val_acc_shift", "val_acc (clean validation)", "val_acc_shift (its corrupted twin)")


def _axis(key: str, values: list) -> dict:
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return {"label": key, "values": values}
    labels = sorted({str(v) for v in values})
    return {"label": key, "values": [labels.index(str(v)) for v in values],
            "tickvals": list(range(len(labels))), "ticktext": labels}  # fmt: skip


def parallel_figure(sweep: dict) -> go.Figure:
    """One line per scored trial across the varying hyperparameters, ending at best val_acc."""
    trials = [t for t in sweep["trials"] if t["best_val_acc"] is not None]
    scores = [t["best_val_acc"] for t in trials]
    dimensions = [_axis(k, [t["hyperparameters"].get(k) for t in trials]) for k in sweep["varying"]]
    dimensions.append({"label": "best val_acc", "values": scores})
    fig = go.Figure(go.Parcoords(
        line={"color": scores, "colorscale": "Viridis", "showscale": True, "colorbar": {"title": {"text": VAL_ACC}}},
        dimensions=dimensions, labelangle=-20, labelfont={"size": 11},
    ))  # fmt: skip
    fig.update_layout(margin={"l": 60, "r": 60, "t": 90, "b": 30}, height=420, font={"family": FONT, "size": 11})
    return fig


def importance_figure(values: dict[str, float]) -> go.Figure:
    items = sorted(values.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color=PALETTE[0], texttemplate="%{x:.2f}", textposition="outside"))  # fmt: skip
    return _layout(fig, "hyperparameter importance (fANOVA)", "share of val_acc variance", "", 120 + 28 * len(items))


def _finite(values: list) -> list[float]:
    return [v for v in values if isinstance(v, (int, float)) and math.isfinite(v)]


def curve_skip(sweep: dict, metric: str) -> str | None:
    """Why the curves of ``metric`` are not drawn (no trial has a finite value of it), or None."""
    if not sweep["trials"]:
        return "the sweep has no trial folders"
    if not any(_finite(t[metric]) for t in sweep["trials"]):
        return f"no trial reported a finite {metric} (all missing, NaN or infinite)"
    return None


def size_skip(sweep: dict, key: str) -> str | None:
    """Why best val_acc against ``key`` is not drawn (no trial has both), or None."""
    if not any(t["best_val_acc"] is not None for t in sweep["trials"]):
        return "no trial has a finite val_acc"
    if not any(t["best_val_acc"] is not None and t[key] is not None for t in sweep["trials"]):
        return f"no scored trial has a known {'parameter count' if key == 'params' else 'MAC count'}"
    return None


def parallel_skip(sweep: dict) -> str | None:
    """Why the parallel coordinates are not drawn (under 2 scored trials, nothing varies), or None."""
    scored = sum(t["best_val_acc"] is not None for t in sweep["trials"])
    if scored < 2:
        return f"needs at least 2 trials with a finite val_acc ({scored})"
    if not sweep["varying"]:
        return "no hyperparameter varies across the scored trials (every trial has the same values)"
    return None


def _drawn(chart_id: str, what: str, why: str | None, figure: Callable[[], go.Figure]) -> str:
    return skipped(what, why) if why else chart(chart_id, figure())


def curves(sweep: dict | None) -> str:
    if not sweep:
        return _section("curves", _note("no sweep: no learning curves."))
    stopper = sweep["scheduler"]["name"]
    text = f"{len(sweep['trials'])} trials, one line each. ✕ marks the last epoch of a trial {stopper} stopped early"
    if sweep["rungs"]:
        text += (f"; dashed lines are ASHA's rungs (epochs {', '.join(map(str, sweep['rungs']))}), where it "
                 "keeps the best 1/reduction_factor of the trials that reach them")  # fmt: skip
    text += ". Missing, NaN and infinite values are gaps in a line."
    charts = "".join(
        _drawn(
            f"chart-{metric}", f"{metric} curves", curve_skip(sweep, metric), lambda m=metric: curves_figure(sweep, m)
        )
        for metric in (VAL_ACC, *([VAL_ACC_SHIFT] if _scored_shift(sweep) else []), TRAIN_LOSS)
    )
    return _section("curves", _note(text) + charts)


def _scored_shift(sweep: dict) -> bool:
    """Whether a trial of the sweep scored the shifted validation twin."""
    return any(t["shift_pair"] is not None for t in sweep["trials"])


def size(sweep: dict | None) -> str:
    if not sweep:
        return _section("size", _note("no sweep: nothing to compare."))
    front = ", ".join(sweep["pareto"]) or "none"
    text = (f"Each point is a trial at its best val_acc. Pareto front (no other trial has as few or fewer parameters "
            f"and as high or higher accuracy): {front}. The dotted line is the space's parameter budget.")  # fmt: skip
    params = _drawn(
        "chart-params", "val_acc vs parameters", size_skip(sweep, "params"), lambda: size_figure(sweep, "params")
    )
    macs = _drawn("chart-macs", "val_acc vs MACs", size_skip(sweep, "macs"), lambda: size_figure(sweep, "macs"))
    shift = _shift(sweep) if _scored_shift(sweep) else ""
    return _section("size", _note(text) + f'<div class="row2">{params}{macs}</div>' + shift)


def _shift(sweep: dict) -> str:
    """The clean-against-shifted chart and its note (a sweep that scored the shifted twin)."""
    front = ", ".join(sweep["shift_pareto"]) or "none"
    text = (f"Clean against shifted validation accuracy (the validation split's corrupted twin), each trial at its "
            f"best epoch by the selected score. Pareto front (no other trial is as good or better on both): {front}. "
            "Points below the dotted line lose accuracy under the shift.")  # fmt: skip
    return _note(text) + chart("chart-shift", shift_figure(sweep))


def hyperparameters(sweep: dict | None) -> str:
    if not sweep:
        return _section("hyperparameters", _note("no sweep: no hyperparameters to compare."))
    found = sweep["importance"]
    text = (f"The hyperparameters that vary across the trials ({len(sweep['varying'])}), each trial a line coloured "
            "by its best val_acc. The importance ranking is computed by optuna's fANOVA evaluator "
            "(optuna.importance.FanovaImportanceEvaluator) on an in-memory study built from the trials' configs "
            "and best val_acc: the sweep keeps no Optuna study. With few trials, read it as a hint.")  # fmt: skip
    body = _drawn("chart-parallel", "parallel coordinates", parallel_skip(sweep), lambda: parallel_figure(sweep))
    body += _drawn("chart-importance", "hyperparameter importance", found.get("note"),
                   lambda: importance_figure(found["values"]))  # fmt: skip
    return _section("hyperparameters", _note(text) + body)
