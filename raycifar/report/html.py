"""The report as one self-contained HTML page: :func:`render` turns what
:func:`raycifar.report.gather` found into HTML with plotly's offline bundle inlined once.

Each chart is a plotly figure stored as JSON in a ``<script type="application/json">``
block next to its ``<div class="chart">``; one script at the end draws them all
(responsive). Images are base64 PNGs. Nothing is fetched when the page opens.
"""

from __future__ import annotations

import json
from html import escape

import plotly.graph_objects as go

from raycifar.report.page import (
    FONT,
    PALETTE,
    SECTIONS,
    _cards,
    _layout,
    _note,
    _section,
    _table,
    chart,
    count,
    duration,
    pct,
)
from raycifar.report.robustness import heatmap_figure, severity_figure, top_k_figure
from raycifar.report.sweep_charts import curves, hyperparameters, size
from raycifar.results.cost import hours_unit
from raycifar.results.schema import VAL_ACC

COUNTS_SHOWN_UP_TO = 20  # classes
CSS = (
    """
:root { --ink: #1f2937; --muted: #6b7280; --line: #e5e7eb; --accent: #2563eb; --soft: #f8fafc; }
* { box-sizing: border-box; }
body { margin: 0; font-family: %s; color: var(--ink); background: #fff; line-height: 1.5; }
main { max-width: 1100px; margin: 0 auto; padding: 32px 24px 64px; }
h1 { font-size: 1.7rem; margin: 0 0 4px; } h2 { font-size: 1.3rem; margin: 40px 0 12px; padding-bottom: 6px;
  border-bottom: 1px solid var(--line); } h3 { font-size: 1.02rem; margin: 20px 0 8px; }
.sub, .note { color: var(--muted); font-size: .92rem; } .note { margin: 6px 0 12px; }
nav.toc { display: flex; flex-wrap: wrap; gap: 6px 16px; margin: 16px 0 8px; padding: 10px 14px;
  background: var(--soft); border: 1px solid var(--line); border-radius: 8px; font-size: .92rem; }
nav.toc a { color: var(--accent); text-decoration: none; } nav.toc a:hover { text-decoration: underline; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(190px, 1fr)); gap: 12px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; background: var(--soft); }
.card .k { color: var(--muted); font-size: .8rem; text-transform: uppercase; letter-spacing: .04em; }
.card .v { font-size: 1.15rem; font-weight: 600; font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
.chart { width: 100%%; } .row2 { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
@media (max-width: 800px) { .row2 { grid-template-columns: 1fr; } }
table { border-collapse: collapse; font-size: .92rem; font-variant-numeric: tabular-nums; }
th, td { text-align: left; padding: 4px 14px 4px 0; border-bottom: 1px solid var(--line); }
th { color: var(--muted); font-weight: 600; }
pre { background: var(--soft); border: 1px solid var(--line); border-radius: 8px; padding: 12px;
  font-size: .8rem; overflow: auto; max-height: 420px; }
.grid { display: flex; flex-wrap: wrap; gap: 12px; }
figure { margin: 0; padding: 8px; border: 1px solid var(--line); border-radius: 8px; text-align: center; }
figure img { width: 96px; height: 96px; image-rendering: pixelated; margin: 0 2px; }
figcaption { font-size: .8rem; color: var(--muted); }
code { font-size: .88em; background: var(--soft); padding: 1px 4px; border-radius: 4px; }
"""
    % FONT
)
DRAW = """
for (const el of document.querySelectorAll('div.chart')) {
  const fig = JSON.parse(document.getElementById(el.id + '-data').textContent);
  Plotly.newPlot(el, fig.data, fig.layout, {responsive: true, displaylogo: false});
}
"""



def confusion_figure(entry: dict) -> go.Figure:
    """Counts by true (rows) and predicted (columns) class; written in the cells up to
    ``COUNTS_SHOWN_UP_TO`` classes (CIFAR-100's 100 show them on hover only)."""
    names = entry["class_names"]
    few = len(names) <= COUNTS_SHOWN_UP_TO
    fig = go.Figure(go.Heatmap(
        z=entry["confusion"], x=names, y=names, colorscale="Blues", texttemplate="%{z}" if few else None,
        showscale=not few, hovertemplate="true %{y} → predicted %{x}: %{z}<extra></extra>",
    ))  # fmt: skip
    fig.update_yaxes(autorange="reversed")
    size = max(420, 36 * len(names) + 140) if few else 900
    return _layout(fig, "confusion matrix (test images)", "predicted", "true", size)


def per_class_figure(entry: dict) -> go.Figure:
    fig = go.Figure(go.Bar(x=entry["class_names"], y=entry["per_class"], marker_color=PALETTE[2],
                           texttemplate="%{y:.0%}", textposition="outside"))  # fmt: skip
    fig.update_yaxes(range=[0, 1.1], tickformat=".0%")
    return _layout(fig, "per-class test accuracy", "class", "accuracy")


# ---------------------------------------------------------------------- sections


def scheduler_text(scheduler: dict) -> str:
    """``ASHA (grace_period 1, reduction_factor 2)``: the scheduler and its settings."""
    shown = {k: v for k, v in scheduler.items() if k not in ("name", "key", "max_t", "source")}
    return f"{scheduler['name']} ({', '.join(f'{k} {v}' for k, v in shown.items())})" if shown else scheduler["name"]


def summary(report: dict) -> str:
    sweep, entry = report["sweep"], report["entry"]
    items: list[tuple[str, str]] = []
    if sweep:
        s, c = sweep["scheduler"], sweep["counts"]
        items += [("sweep", sweep["name"]), ("space", sweep["space"]),
                  ("scheduler", scheduler_text(s)),
                  ("trials run", count(c["run"])), ("stopped early", count(c["stopped_early"])),
                  ("failed", count(c["failed"])), ("wall time", duration(sweep["wall_s"]))]  # fmt: skip
    if entry:
        row = entry["row"]
        hours = row.get("device_hours")
        spent = "–" if hours is None else f"{hours:.3g} {hours_unit(row.get('device'))}"
        items += [("device-hours", spent), ("promoted entry", row["entry_id"]),
                  ("model", f"{row['model']} · {count(row['params'])} params"),
                  ("test accuracy", f"{pct(entry['acc'])} ({pct(entry['ci'][0])}–{pct(entry['ci'][1])})")]  # fmt: skip
    notes = []
    if not sweep:
        notes.append(_note(f"{report['target']} did not come from a sweep in {report['results_dir']}/sweeps "
                           "(e.g. raycifar train --promote): the sweep sections are empty."))  # fmt: skip
    if not entry:
        notes.append(_note("no leaderboard entry was promoted from this sweep: the model sections are empty."))
    if sweep:
        notes.append(_note(f"Scheduler settings from {sweep['scheduler']['source']}; sweep folder {sweep['folder']}."))
    return _section("summary", _cards(items) + "".join(notes))


def model(entry: dict | None) -> str:
    if not entry:
        return _section("model", _note("no promoted model."))
    low, high = entry["ci"]
    tta = f"; with test-time augmentation {pct(entry['tta_acc'], 2)}" if entry["tta_acc"] is not None else ""
    head = (f"<p><strong>Test accuracy {pct(entry['acc'], 2)}</strong> ({count(entry['correct'])} of "
            f"{count(entry['total'])} test images), 95% confidence interval {pct(low, 2)}–{pct(high, 2)} "
            f"(Wilson){escape(tta)}.</p>")  # fmt: skip
    row = entry.get("row") or {}
    if row.get("seeds") and row.get("test_acc_mean") is not None:
        spread = f" ± {pct(row['test_acc_std'], 2)}" if row.get("test_acc_std") is not None else ""
        head += (f"<p>Retrained with {row['seeds']} seeds (<code>raycifar train --seeds</code>): test accuracy "
                 f"{pct(row['test_acc_mean'], 2)}{spread} (mean ± standard deviation over the seeds).</p>")  # fmt: skip
    confused = _table(("true class", "predicted as", "images", "rate"),
                      [(c["true"], c["predicted"], f"{c['count']} of {c['total']}", pct(c["rate"])) for c in entry["confused"]])  # fmt: skip
    absent = [name for name, acc in zip(entry["class_names"], entry["per_class"], strict=True) if acc is None]
    if absent:
        head += _note(f"No test images of {len(absent)} class(es) ({', '.join(absent[:10])}{', …' if len(absent) > 10 else ''}): no bar.")
    charts = chart("chart-per-class", per_class_figure(entry)) + chart("chart-confusion", confusion_figure(entry))
    return _section("model", head + charts + "<h3>Most confused classes</h3>" + confused)


def robustness(entry: dict | None) -> str:
    found, where = (entry or {}).get("robustness"), ((entry or {}).get("robustness") or {}).get("corrupted_set")
    if not found:
        return _section("robustness", _note("no robustness figures: the promoted model was not scored on a corrupted "
                                            "test set (raycifar data corrupt writes one; then raycifar evaluate ENTRY "
                                            "--corrupted DIR, or promote with --corrupted DIR)."))  # fmt: skip
    cards = _cards([("clean accuracy", pct(found["clean_acc"], 2)), ("corrupted accuracy", pct(found["corrupted_acc"], 2)),
                    ("gap (clean − corrupted)", pct(found["gap"], 2)), ("scored", f"{len(where['corruptions'])} "
                     f"corruptions × {len(where['severities'])} severities × {count(where['images'])}")])  # fmt: skip
    text = (f"On {where['name']} ({where['folder']}): the mean over {', '.join(found['mean_over'])} (the benchmark's 15 where "
            f"present) at every severity, equal weights, no TTA; clean accuracy on {found['clean_reference']} (robustness.json).")
    hurt = _table(("class", "clean", "corrupted", "drop"),
                  [(h["class"], pct(h["clean"]), pct(h["corrupted"]), pct(h["drop"])) for h in found["most_hurt"]])  # fmt: skip
    body = _note(text) + cards + chart("chart-robustness", _layout(heatmap_figure(found), "accuracy by corruption and severity", "", "", max(360, 26 * len(found["by_corruption"]) + 140)))
    body += chart("chart-robustness-severity", _layout(severity_figure(found), "accuracy by severity", "severity", "accuracy"))
    body += "<h3>Most hurt classes</h3>" + hurt + "<h3>Top trials: clean vs corrupted</h3>"
    if "note" in (top := found["top_k"]):
        return _section("robustness", body + _note(f"Not compared: {top['note']}."))
    body += _note(f"The best checkpoint of each of the top {len(top['trials'])} trials by val_acc on the first "
                  f"{top['images_per_cell']} images of every corruption and severity ({count(top['corrupted_images'])} "
                  f"images); clean accuracy from {top['clean_from']}. A subset: read the order, not the decimals. "
                  "Orange: the promoted trial.")  # fmt: skip
    x_title = "clean accuracy" if all(r["clean_acc"] is not None for r in top["trials"]) else VAL_ACC
    body += chart("chart-robustness-topk", _layout(top_k_figure(top), "top trials: clean vs corrupted", x_title, "corrupted accuracy"))
    rows = [(r["trial_id"], f"{r[VAL_ACC]:.4f}", pct(r["clean_acc"]), pct(r["corrupted_acc"]), "promoted" if r["promoted"] else "")
            for r in top["trials"]]  # fmt: skip
    return _section("robustness", body + _table(("trial", VAL_ACC, "clean", "corrupted (subset)", ""), rows))


def mistakes(entry: dict | None) -> str:
    if not entry:
        return _section("mistakes", _note("no promoted model."))
    grids = entry["grids"]
    if "note" in grids:
        return _section("mistakes", _note(grids["note"]))
    parts = [_note("Misclassified test images of the most confused pairs, most confident first; beside each, the "
                   "Grad-CAM heat map of the predicted class on the last block of the last stage (red: the regions "
                   f"that drove the prediction). Images from {grids['data_dir']}.")]  # fmt: skip
    for pair in grids["pairs"]:
        parts.append(f"<h3>{escape(pair['true'])} → {escape(pair['predicted'])} "
                     f"<span class=\"sub\">({pair['count']} of {pair['total']}, {pct(pair['rate'])})</span></h3>")  # fmt: skip
        figures = "".join(
            f'<figure><img src="{i["image"]}" alt="test image {i["index"]}"><img src="{i["cam"]}" alt="Grad-CAM">'
            f'<figcaption>#{i["index"]} · {escape(pair["true"])} → {escape(pair["predicted"])} · {pct(i["confidence"])}</figcaption></figure>'
            for i in pair["images"]
        )  # fmt: skip
        parts.append(f'<div class="grid">{figures}</div>')
    return _section("mistakes", "".join(parts))


def provenance_section(found: dict | None) -> str:
    if not found:
        return _section("provenance", _note("no promoted model: no provenance."))
    rows = [("seed", found["seed"]), ("git commit", found["git_sha"] or "– (not recorded)"),
            ("raycifar (trained)", found["entry_raycifar"] or "–"), ("raycifar (this report)", found["raycifar"] or "–"),
            ("Ray", found["ray"] or "–"), ("Python", found["python"]), ("host", found["host"] or "–")]  # fmt: skip
    config = escape(json.dumps(found["config"], indent=2, sort_keys=True))
    return _section("provenance", _table(("", ""), rows) + "<h3>Resolved config</h3>" + f"<pre>{config}</pre>")


def render(report: dict) -> str:
    """The whole page for a :func:`raycifar.report.gather` dict."""
    from plotly.offline import get_plotlyjs

    sweep, entry = report["sweep"], report["entry"]
    toc = "".join(f'<a href="#{sid}">{escape(title)}</a>' for sid, title in SECTIONS)
    body = "".join([summary(report), curves(sweep), size(sweep), hyperparameters(sweep), model(entry),
                    robustness(entry), mistakes(entry), provenance_section(report["provenance"])])  # fmt: skip
    title = f"raycifar report: {report['target']}"
    return (
        f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><title>{escape(title)}</title>'
        f"<style>{CSS}</style><script>{get_plotlyjs()}</script></head><body><main>"
        f'<h1>{escape(title)}</h1><p class="sub">generated {escape(report["generated_at"])} from '
        f"{escape(report['results_dir'])} · regenerate with <code>raycifar report {escape(report['target'])}</code></p>"
        f'<nav class="toc">{toc}</nav>{body}</main><script>{DRAW}</script></body></html>'
    )
