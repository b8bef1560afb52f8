"""--results-dir must be a folder every node mounts: an object-store URI is refused with one
line and exit 2, before anything is written (it used to become a local folder named 's3:')."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from raycifar.cli import app


@pytest.mark.parametrize(
    "command",
    [
        ["sweep", "smoke_space"],
        ["leaderboard"],
        ["evaluate", "some-entry"],
        ["status"],
    ],
)
@pytest.mark.parametrize("uri", ["s3://bucket/rc", "gs://bucket/rc"])
def test_a_uri_results_dir_is_refused_before_anything_is_written(
    command: list[str], uri: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(
        app, [*command, "--results-dir", uri], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 2, result.output
    scheme = uri.split("//")[0]
    assert f"--results-dir {scheme}//…: URIs are not supported" in result.output
    assert list(tmp_path.iterdir()) == [], "nothing is created in the working directory"


def test_a_folder_named_like_a_plain_path_is_still_accepted(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["leaderboard", "--results-dir", str(tmp_path / "rc:1")]
    )
    assert result.exit_code == 0 and "no leaderboard yet" in result.output
