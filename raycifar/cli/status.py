"""``raycifar status``: the sweeps in a results folder and, optionally, the Ray cluster with the
sweeps submitted to it."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from raycifar.cli.common import FormatOption, ResultsDir, console, exit_codes, fail, print_json


def status(
    results_dir: ResultsDir = Path("raycifar_results"),
    sweep_name: Annotated[Optional[str], typer.Option("--sweep", help="Show this sweep's trials one by one.")] = None,
    dashboard_url: Annotated[Optional[str], typer.Option("--address", "--dashboard-url", envvar="RAY_API_SERVER_ADDRESS", help="Also show the nodes and jobs of the Ray cluster whose dashboard is here (e.g. http://127.0.0.1:8265), and the sweeps submitted to it with their progress read on the cluster.")] = None,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw the sweeps every 2 s until no sweep shown is running (Ctrl+C to stop watching; the sweeps go on).")] = False,
    output_format: FormatOption = "table",
) -> None:
    """Show the sweeps in a results folder and, with --address, a cluster's nodes, jobs and submitted sweeps."""
    from raycifar.cli import status_view
    from raycifar.cli.jobs import print_submitted
    from raycifar.cli.status_view import print_cluster
    from raycifar.cluster.dashboard import read_cluster
    from raycifar.results import status as report

    results_dir = results_dir.expanduser()
    if watch:
        if output_format == "json":
            fail("--watch draws the table; it does not go with --format json")
        with exit_codes():
            try:
                status_view.watch_sweeps(console, results_dir, sweep_name)
            except KeyboardInterrupt:
                pass
        return
    local = not dashboard_url or results_dir.is_dir() or sweep_name is not None  # with --address: only if here
    with exit_codes():
        sweeps = report.read_sweeps(results_dir, sweep_name) if local else []
        cluster = read_cluster(dashboard_url, "--address") if dashboard_url else None
        submitted, notes = _submitted(dashboard_url) if dashboard_url else ([], [])
    if output_format == "json":
        answer = status_view.as_json(sweeps, cluster)
        answer["slurm_jobs"] = _slurm_jobs(results_dir) if local else {}
        if dashboard_url:
            answer["submitted"] = [asdict(s) for s in submitted]
            answer["notes"] = notes
        print_json(answer)
        return
    if local:
        status_view.print_sweeps(console, sweeps, results_dir)
        for name, job in _slurm_jobs(results_dir).items():
            console.print(f"{name}: Slurm job {job['job']}, run {job['run']} on {job['host']} (started {job['started']})", highlight=False)
    if sweep_name:
        status_view.print_trials(console, sweeps[0])
    if cluster:
        print_cluster(console, cluster)
        print_submitted(console, cluster.url, submitted, notes)


def _submitted(url: str) -> tuple[list, list[str]]:
    """The sweeps submitted to the dashboard at ``url``, with their progress (raycifar.pipeline.submit_job)."""
    from raycifar.pipeline.submit_job import submitted_sweeps

    return submitted_sweeps(url, "--address")


def _slurm_jobs(results_dir: Path) -> dict[str, dict[str, str]]:
    """The Slurm job of each sweep that a ``raycifar slurm`` script ran (raycifar.cluster.slurm)."""
    from raycifar.cluster.slurm import slurm_jobs

    return slurm_jobs(results_dir) if results_dir.is_dir() else {}
