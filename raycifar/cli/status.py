"""``raycifar status``: the sweeps in a results folder and, optionally, the Ray cluster."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from raycifar.cli.common import FormatOption, ResultsDir, console, exit_codes, fail, print_json


def status(
    results_dir: ResultsDir = Path("raycifar_results"),
    sweep_name: Annotated[Optional[str], typer.Option("--sweep", help="Show this sweep's trials one by one.")] = None,
    dashboard_url: Annotated[Optional[str], typer.Option(envvar="RAY_API_SERVER_ADDRESS", help="Also show the nodes and jobs of the Ray cluster whose dashboard is here (e.g. http://127.0.0.1:8265).")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw the sweeps every 2 s until no sweep shown is running (Ctrl+C to stop watching; the sweeps go on).")] = False,
    output_format: FormatOption = "table",
) -> None:
    """Show the sweeps in a results folder (trials by state, best val_acc) and, with
    --dashboard-url, the Ray cluster's nodes and jobs."""
    from raycifar import status as report
    from raycifar.cluster_status import print_cluster, read_cluster

    results_dir = results_dir.expanduser()
    if watch:
        if output_format == "json":
            fail("--watch draws the table; it does not go with --format json")
        with exit_codes():
            try:
                report.watch_sweeps(console, results_dir, sweep_name)
            except KeyboardInterrupt:
                pass
        return
    with exit_codes():
        sweeps = report.read_sweeps(results_dir, sweep_name)
        cluster = read_cluster(dashboard_url) if dashboard_url else None
    if output_format == "json":
        print_json(report.as_json(sweeps, cluster))
        return
    report.print_sweeps(console, sweeps, results_dir)
    if sweep_name:
        report.print_trials(console, sweeps[0])
    if cluster:
        print_cluster(console, cluster)
