"""The report page's building blocks shared by its sections: the palette and font, numbers
as text, a plotly chart embedded as JSON, cards, tables, notes, and the line a chart or
statistic shows in its place when it is skipped ("Skipped: what: why.")."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import plotly.graph_objects as go

FONT = '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
PALETTE = ("#2563eb", "#f97316", "#16a34a", "#dc2626", "#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")
SECTIONS = (
    ("summary", "Summary"), ("curves", "Learning curves"), ("size", "Accuracy against size"),
    ("hyperparameters", "Hyperparameters"), ("model", "Promoted model"), ("robustness", "Robustness"),
    ("mistakes", "Mistakes"),
    ("provenance", "Provenance"),
)  # fmt: skip


# ---------------------------------------------------------------------- numbers


def pct(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{100 * value:.{digits}f}%"


def count(value: int | None) -> str:
    return "–" if value is None else f"{value:,}"


def duration(seconds: float | None) -> str:
    """``seconds`` as ``1 h 02 min``, ``3 min 12 s`` or ``45 s``."""
    if seconds is None:
        return "–"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s" if minutes else f"{secs} s"


# ---------------------------------------------------------------------- charts


def _layout(fig: go.Figure, title: str, x: str, y: str, height: int = 380) -> go.Figure:
    fig.update_layout(
        title={"text": title, "font": {"size": 15}}, template="plotly_white", height=height, autosize=True,
        font={"family": FONT, "size": 12}, margin={"l": 56, "r": 20, "t": 48, "b": 48},
        xaxis_title=x, yaxis_title=y, legend={"font": {"size": 11}},
    )  # fmt: skip
    return fig


def chart(chart_id: str, fig: go.Figure) -> str:
    """The chart's div and its figure as JSON (``</`` escaped so it cannot close the script)."""
    data = fig.to_json().replace("</", "<\\/")
    return (
        f'<div class="chart" id="{chart_id}"></div><script type="application/json" id="{chart_id}-data">{data}</script>'
    )


def _cards(items: list[tuple[str, str]]) -> str:
    cells = "".join(
        f'<div class="card"><div class="k">{escape(k)}</div><div class="v">{escape(v)}</div></div>' for k, v in items
    )
    return f'<div class="cards">{cells}</div>'


def _table(header: tuple[str, ...], rows: list[tuple[Any, ...]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _section(section_id: str, body: str) -> str:
    title = dict(SECTIONS)[section_id]
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>{body}</section>'


def _note(text: str) -> str:
    return f'<p class="note">{escape(text)}</p>'


def skipped(what: str, why: str) -> str:
    """The line shown in place of a chart or statistic that has nothing to show:
    ``Skipped: <what>: <why>.``"""
    return f'<p class="note skipped">Skipped: {escape(what)}: {escape(why)}.</p>'
