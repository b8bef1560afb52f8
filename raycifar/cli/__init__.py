"""The ``raycifar`` command line: each command parses its options, calls the library
(:mod:`raycifar.pipeline` for the long jobs), and prints; nothing here holds the pipeline.

=============  ======================================================
module         commands
=============  ======================================================
``run``        ``sweep``, ``train``
``results``    ``leaderboard [show]``, ``promote``, ``evaluate``
``predict``    ``predict``
``catalog``    ``model list|info``, ``space show|sample``
``data``       ``data info|prepare|corrupt``
``status``     ``status``
``jobs``       ``logs``, ``stop`` (and ``sweep --submit``)
``report``     ``report``
``clusters``   ``k8s``, ``slurm`` (write a cluster's job files)
``common``     consoles, one-line errors, shared options, tables
=============  ======================================================

Every usage error (unknown option, bad value) is one line on stderr with exit code 2.

May import: every package (the pipeline for long jobs, the readers for the rest); commands
import what they use inside the command, so that ``--help`` and read-only commands stay instant.
"""

from __future__ import annotations

import atexit
import os
import sys

import typer
from rich.markup import escape
from typer.core import TyperGroup
from typer.exceptions import TyperException

from raycifar.cli import catalog, clusters, data, jobs, predict, report, results, run, status
from raycifar.cli.common import stderr

_ended_with: int | None = None  # the console script's exit code, once its command has returned


@atexit.register  # registered before Ray, torch and W&B register theirs: runs after them all
def _skip_native_teardown() -> None:
    """In the ``raycifar`` process, after a command that used Ray has returned and every
    other exit handler has run: end the process without the interpreter's own finalization
    (Ray's and torch's native teardown, about 2.5 s after a sweep), with nothing left to
    write (every file is closed, Ray is down; stdout and stderr are flushed here). A command
    that raised, and the CLI called in-process (tests' ``CliRunner``), end the usual way."""
    if _ended_with is None or "ray" not in sys.modules:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(_ended_with)


def _given(error: TyperException, message: str) -> str:
    """`` (got '-1')``: the value a bad option was given, where Typer's validation kept it
    (the pydantic error it raised from) and ``message`` does not already show it."""
    errors = getattr(error.__cause__, "errors", None)
    first = errors()[0] if callable(errors) and errors() else {}
    if "input" not in first or repr(first["input"]) in message:
        return ""
    return f" (got {first['input']!r})"


def _one_line(error: TyperException) -> str:
    """A usage error as one line: the problem, the value given, and where to read the
    command's help."""
    message = " ".join(error.format_message().replace("Value error, ", "").split())
    context = getattr(error, "ctx", None)
    where = f" (see {context.command_path} --help)" if context is not None else ""
    return f"{message}{_given(error, message)}{where}"


class _OneLineErrors(TyperGroup):
    """The top-level group: every usage error (unknown option, bad value, missing argument)
    is one line on stderr with exit code 2, for ``raycifar`` and for test runners alike."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True, **extra):  # noqa: ANN001
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra)
        except TyperException as error:
            if type(error).__name__ == "NoArgsIsHelpError":  # a bare group: its help, as Typer shows it
                sys.stdout.write(error.format_message() + "\n")
                sys.exit(0)
            stderr.print(f"[bold red]error:[/] {escape(_one_line(error))}", highlight=False, soft_wrap=True)
            sys.exit(getattr(error, "exit_code", 2) or 2)
        except typer.Abort:
            stderr.print("aborted")
            sys.exit(130)
        sys.exit(code if isinstance(code, int) else 0)


app = typer.Typer(
    cls=_OneLineErrors,
    help="Find the best CIFAR classifier under a parameter budget with Ray Tune + Ray Train.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(run.sweep)
app.command()(run.train)
app.add_typer(results.leaderboard_app, name="leaderboard")
app.command("promote")(results.promote_command)
app.command("evaluate")(results.evaluate_command)
app.command("predict")(predict.predict_command)
app.command()(status.status)
app.command()(jobs.logs)
app.command()(jobs.stop)
app.command()(report.report)
app.command()(clusters.k8s)
app.command()(clusters.slurm)
app.add_typer(catalog.model_app, name="model")
app.add_typer(catalog.space_app, name="space")
app.add_typer(data.data_app, name="data")


def main() -> None:
    """The ``raycifar`` console script (and ``python -m raycifar``)."""
    global _ended_with
    try:
        app(prog_name="raycifar")
    except SystemExit as done:
        if done.code is None or isinstance(done.code, int):
            _ended_with = done.code or 0
        raise
