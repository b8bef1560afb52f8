"""docs/cluster.md's worked examples are what the commands write: the example command of
`raycifar slurm` and of `raycifar k8s` is run, and its file must be in the page verbatim."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raycifar.cli import app

PAGE = Path(__file__).resolve().parents[2] / "docs" / "cluster.md"


@pytest.mark.parametrize("command", ["slurm", "k8s"])
def test_the_worked_example_is_what_the_command_writes(tmp_path: Path, command: str) -> None:
    page = PAGE.read_text(encoding="utf-8")
    (line,) = [line for line in page.splitlines() if line.startswith(f"raycifar {command} resnet_space ")]
    args = shlex.split(line)[1:]
    if "--out" in args:  # the example's own output file name, written here instead
        index = args.index("--out")
        del args[index : index + 2]
    out = tmp_path / "written"
    result = CliRunner().invoke(app, [args[0], "--out", str(out), *args[1:]], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    written = out.read_text().rstrip("\n")
    assert f"\n{written}\n```" in page, f"docs/cluster.md's {command} example differs from what `{line}` writes"
