"""What ``raycifar status`` draws: the sweeps table, a sweep's trials, ``--watch``, the
cluster's nodes and jobs, and the JSON of ``--format json``."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from raycifar.cli.tables import FREE_TEXT, FittedTable
from raycifar.data.file_names import shown
from raycifar.results import layout
from raycifar.results.cost import Cost
from raycifar.results.schema import EPOCH, VAL_ACC
from raycifar.results.status import LIVE_STATES, SweepStatus, describe_state, read_sweeps, resume_line

if TYPE_CHECKING:
    from raycifar.cluster.dashboard import ClusterStatus



def _score(value: float | None) -> str:
    return "-" if value is None else f"{value:.4f}"


def titled_table(title: str, columns: tuple[str, ...], drop: tuple[str, ...] = (), text: tuple[str, ...] = FREE_TEXT) -> Table:
    """A table that fits the terminal without cutting an id or a number (ids and numbers whole;
    ``drop``: the columns left out first in a narrow terminal; ``text``: columns that may fold)."""
    return FittedTable(*columns, drop=drop, text=text, box=box.SIMPLE_HEAD, pad_edge=False, title=title, title_justify="left")


def print_sweeps(console: Console, sweeps: list[SweepStatus], results_dir: Path) -> None:
    """One line per readable sweep, then one line per unreadable sweep folder with the reason."""
    console.print(sweeps_view(sweeps, results_dir), soft_wrap=True)


def sweeps_view(sweeps: list[SweepStatus], results_dir: Path, trials_of: str | None = None) -> RenderableType:
    """What :func:`print_sweeps` prints (and, for the sweep ``trials_of``, :func:`print_trials`)."""
    if not sweeps:
        return f"no sweeps yet in {layout.sweeps_dir(results_dir)}"
    parts: list[RenderableType] = []
    readable = [s for s in sweeps if s.problem is None]
    if readable:
        columns = ("sweep", "state", "trials", "best val_acc", "cost", "updated (UTC)", "leaderboard entry")
        table = titled_table(f"sweeps in {results_dir}", columns, drop=("updated (UTC)", "cost", "trials"))
        for sweep in readable:
            counts = ", ".join(f"{n} {state}" for state, n in sorted(sweep.counts.items())) or "-"
            updated = sweep.updated.replace("+00:00", "") if sweep.updated else "-"
            cost = "-" if sweep.cost is None else sweep.cost.spent()
            table.add_row(
                escape(shown(sweep.name)), escape(describe_state(sweep)), counts, _score(sweep.best_val_acc), cost, updated,
                escape(sweep.promoted_entry or "-"),
            )  # fmt: skip
        parts.append(table)
        hints = [resume_line(sweep, results_dir) for sweep in readable]
        parts.extend(escape(hint) for hint in hints if hint)
    for sweep in sweeps:
        if sweep.problem is not None:
            parts.append(f"[bold yellow]unreadable sweep {escape(sweep.name)}:[/] {escape(sweep.problem)}")
    for sweep in readable:
        if sweep.name == trials_of:
            parts.extend(trials_view(sweep))
    return Group(*parts)


def watch_sweeps(
    console: Console,
    results_dir: Path,
    sweep: str | None = None,
    every_s: float = 2.0,
    sleep: Callable[[float], None] = time.sleep,
) -> list[SweepStatus]:
    """Redraw the sweeps view (and ``sweep``'s trials) every ``every_s`` seconds until no
    sweep shown is starting or running; returns the last statuses read. Damaged files are
    UserError as for ``raycifar status``."""
    sweeps = read_sweeps(results_dir, sweep)
    with Live(sweeps_view(sweeps, results_dir, sweep), console=console, auto_refresh=False) as live:
        while any(s.state in LIVE_STATES for s in sweeps):
            sleep(every_s)
            sweeps = read_sweeps(results_dir, sweep)
            live.update(sweeps_view(sweeps, results_dir, sweep), refresh=True)
    return sweeps


def print_trials(console: Console, sweep: SweepStatus) -> None:
    """One line per trial of ``sweep``; then the error file of each errored trial."""
    for part in trials_view(sweep):
        console.print(part, soft_wrap=True, highlight=False)


def trials_view(sweep: SweepStatus) -> list[RenderableType]:
    """What :func:`print_trials` prints: the trials table, then why each failed or diverged
    trial ended, and its error file."""
    best = f"best {sweep.metric}"  # the score the sweep selects on (`select` in its space)
    columns = ("trial", "state", "model", "params", EPOCH, VAL_ACC, best)
    table = titled_table(f"trials of {sweep.name}", columns, drop=("model", "params", VAL_ACC, EPOCH))
    for t in sweep.trials:
        params = f"{t.params:,}" if t.params is not None else "-"
        epochs = f"{t.epoch}/{t.epochs if t.epochs is not None else '?'}"
        table.add_row(escape(shown(t.trial_id)), t.state, escape(shown(t.model)), params, epochs, _score(t.val_acc), _score(t.best_score))  # fmt: skip
    lines: list[RenderableType] = [table]
    for t in sweep.trials:
        if t.reason:
            lines.append(f"trial {escape(shown(t.trial_id))} {'failed: ' if t.state == 'error' else ''}{escape(shown(t.reason))}")
        if t.error_file:
            lines.append(f"trial {escape(shown(t.trial_id))} error: {escape(shown(t.error_file))}")
    return lines


def print_cluster(console: Console, cluster: ClusterStatus) -> None:
    """Nodes with their CPUs and GPUs, then the submitted jobs."""
    nodes = titled_table(f"Ray nodes at {cluster.url}", ("node", "ip", "role", "CPUs", "GPUs"), drop=("role", "ip"))
    for n in cluster.nodes:
        role = "head" if n["is_head"] else "worker"
        nodes.add_row(n["node_id"], n["node_ip"], role, f"{n['cpus']:g}", f"{n['gpus']:g}")
    console.print(nodes, soft_wrap=True)
    if not cluster.jobs:
        console.print("no jobs submitted")
        return
    jobs = titled_table("Ray jobs", ("submission id", "status", "started (UTC)", "entrypoint"), drop=("started (UTC)",))
    for j in cluster.jobs:
        started = (j["start_time"] or "-").replace("+00:00", "")
        jobs.add_row(j["submission_id"], j["status"], started, j["entrypoint"])
    console.print(jobs, soft_wrap=True)


def as_json(sweeps: list[SweepStatus], cluster: ClusterStatus | None = None) -> dict:
    """Everything ``raycifar status --format json`` prints."""
    report: dict = {
        "sweeps": [
            {
                **asdict(s),
                "counts": s.counts,
                "best_val_acc": s.best_val_acc,
                "metric": s.metric,
                "best_score": s.best_score,
                "cost": _cost_json(s.cost),
                "trials": [{**asdict(t), "cost": _cost_json(t.cost)} for t in s.trials],
            }
            for s in sweeps
        ]
    }
    if cluster is not None:
        report["cluster"] = asdict(cluster)
    return report


def _cost_json(cost: Cost | None) -> dict | None:
    """A cost as JSON: ``hours`` by kind, the seconds, and ``device``/``device_hours`` when one kind."""
    if cost is None:
        return None
    return {**asdict(cost), "device": cost.device, "device_hours": cost.device_hours}
