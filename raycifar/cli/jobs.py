"""Submitted sweeps: ``raycifar sweep --submit`` (see :func:`submit`), ``raycifar logs NAME``,
``raycifar stop NAME``, and the submitted-sweeps table of ``raycifar status --address``."""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.markup import escape

from raycifar.cli.common import console, exit_codes, fail, print_json, stderr

ADDRESS_ENV = "RAY_API_SERVER_ADDRESS"
AddressOption = Annotated[
    Optional[str],
    typer.Option(
        "--address", envvar=ADDRESS_ENV,
        help="The Ray dashboard's URL, e.g. http://127.0.0.1:8265 (default: $RAY_API_SERVER_ADDRESS).",
    ),
]  # fmt: skip
NameArgument = Annotated[str, typer.Argument(help="The sweep's name (its --name; printed by sweep --submit).")]


def dashboard_address(address: str | None) -> str:
    """``--address``, else $RAY_API_SERVER_ADDRESS; a one-line error (exit 2) when neither is set."""
    address = address or os.environ.get(ADDRESS_ENV)
    if not address:
        fail(f"no cluster given: pass --address http://HEAD:8265 (the Ray dashboard's URL) or set {ADDRESS_ENV}")
    return address


def _words(param: Any, value: object) -> list[str]:
    """``value`` of option ``param`` (a Click option) as command-line words (``[]`` for an unset flag)."""
    if param.is_flag:
        if value:
            return [param.opts[0]]
        return [param.secondary_opts[0]] if param.secondary_opts else []
    values = value if param.multiple else [value]
    return [word for v in values for word in (param.opts[0], str(getattr(v, "value", v)))]


def given_options(ctx: typer.Context) -> dict[str, list[str]]:
    """The options given on the command line or through their environment variable, by
    parameter name in the command's order, as command-line words (arguments excluded).

    Typer runs on its own copy of Click: parameters and sources are matched by their names.
    """
    given = {}
    for param in ctx.command.params:
        source = ctx.get_parameter_source(param.name)
        if param.param_type_name == "option" and getattr(source, "name", "") in ("COMMANDLINE", "ENVIRONMENT"):
            given[param.name] = _words(param, ctx.params[param.name])
    return given


def submit(ctx: typer.Context, space: str | None, address: str | None, output_format: str) -> None:
    """``raycifar sweep SPACE --submit`` (or ``--resume NAME --submit``): submit the sweep as a
    Ray job and print how to follow it."""
    from raycifar.pipeline.submit_job import STOP_GRACE_S, submit_sweep, sweep_job

    url = dashboard_address(address).rstrip("/")
    with exit_codes():
        job = sweep_job(space, given_options(ctx))
        submission_id = submit_sweep(url, job)
    where = f"--address {url}"
    lines = {
        "job": submission_id,
        "dashboard": f"{url}/#/jobs",
        "follow": f"raycifar logs {job.name} {where}",
        "status": f"raycifar status {where}",
        "stop": f"raycifar stop {job.name} {where}",
        "results": f"{job.results_dir}/sweeps/{job.name} (on the cluster)",
    }
    if output_format == "json":
        print_json({"sweep": job.name, "submission_id": submission_id, "address": url, "entrypoint": job.entrypoint})
        return
    console.print(f"submitted sweep [bold]{escape(job.name)}[/] to {escape(url)}", highlight=False)
    for key, value in lines.items():
        console.print(f"  {key:<10}{escape(value)}", highlight=False, soft_wrap=True)
    console.print(
        "The sweep runs on the cluster: disconnecting this machine does not stop it. "
        f"`raycifar stop` stops its trials (up to {STOP_GRACE_S} s) and promotes nothing.",
        highlight=False, soft_wrap=True,
    )  # fmt: skip


def logs(
    name: NameArgument,
    address: AddressOption = None,
    follow: Annotated[bool, typer.Option(help="Keep printing until the job ends (--no-follow: print what there is and return).")] = True,
) -> None:
    """Print a submitted sweep's output and follow it until its job ends (exit 1 if it failed)."""
    from raycifar.pipeline.submit_job import job_logs

    url = dashboard_address(address)

    def write(chunk: str) -> None:
        sys.stdout.write(chunk)
        sys.stdout.flush()

    try:
        with exit_codes():
            status = job_logs(url, name, write, follow)
    except KeyboardInterrupt:
        stderr.print(f"stopped following; sweep {escape(name)} goes on (raycifar stop {escape(name)} stops it)", highlight=False)
        raise typer.Exit(130) from None
    stderr.print(f"job of sweep {escape(name)}: {status}", highlight=False)
    if status == "FAILED":
        raise typer.Exit(1)


def stop(
    name: NameArgument,
    address: AddressOption = None,
    wait: Annotated[float, typer.Option(min=0, help="Seconds to wait for the sweep to end (0: return at once).")] = 360,
) -> None:
    """Stop a submitted sweep: its trials stop, nothing is promoted, its results so far stay."""
    from raycifar.pipeline.submit_job import stop_sweep

    url = dashboard_address(address)
    with exit_codes():
        status, stopped = stop_sweep(url, name, wait)
    if not stopped:
        console.print(f"sweep {escape(name)} is not running: its job ended {status}", highlight=False)
    elif status == "STOPPED":
        console.print(f"sweep {escape(name)} stopped: trials stopped, nothing promoted", highlight=False)
    else:
        console.print(f"stop sent to sweep {escape(name)}; its job is still {status} (see raycifar status --address {url})", highlight=False)


def _when(ms: int | None) -> str:
    return datetime.fromtimestamp(ms / 1000, timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if ms else "-"


def print_submitted(out: Console, url: str, submitted: list, notes: list[str]) -> None:
    """The submitted sweeps (``SubmittedSweep``) as a table: job status, then the sweep's own
    state, trials and best val_acc as read on the cluster."""
    from raycifar.cli.status_view import titled_table

    if not submitted:
        out.print(f"no sweeps submitted to {escape(url)}", highlight=False)
    else:
        columns = ("sweep", "job", "state", "trials", "best val_acc", "leaderboard entry", "started (UTC)", "job id")
        table = titled_table(f"sweeps submitted to {url}", columns)
        for s in submitted:
            sweep = s.sweep or {}
            counts = ", ".join(f"{n} {state}" for state, n in sorted((sweep.get("counts") or {}).items())) or "-"
            best = sweep.get("best_val_acc")
            table.add_row(
                s.name, s.job_status, sweep.get("state", "-"), counts, "-" if best is None else f"{best:.4f}",
                sweep.get("promoted_entry") or "-", _when(s.start_time), s.submission_id,
            )  # fmt: skip
        out.print(table)
    for note in notes:
        out.print(f"[yellow]note:[/] {escape(note)}", soft_wrap=True, highlight=False)
