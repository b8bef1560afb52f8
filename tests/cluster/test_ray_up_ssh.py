"""The real cluster-launcher path on this machine: ``ray up`` with the ``local`` provider
reaches the head over SSH (an sshd this test starts on 127.0.0.1), ``ray exec`` runs a
smoke sweep there, and ``ray down`` stops it.

It all runs inside private PID, network and mount namespaces (``unshare``, as root), so
the launcher's own ``ray stop`` and Ray's default ports cannot touch any other Ray on the
machine, and the kernel ends every process of the run when it finishes or times out.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import REPO, TINY_SPACE

from raycifar.results.leaderboard import read_table

pytestmark = pytest.mark.slow

SCRIPT = Path(__file__).parent.parent / "ray_up_over_ssh.sh"
NAMESPACES = [
    "unshare",
    "--pid",
    "--net",
    "--mount",
    "--fork",
    "--mount-proc",
    "--kill-child=SIGKILL",
]
TOOLS = ("unshare", "ip", "ssh", "ssh-keygen", "rsync", "/usr/sbin/sshd")


def _missing_requirement() -> str | None:
    """Why this machine cannot run the test, or None."""
    if os.geteuid() != 0:
        return "needs root for unshare and sshd"
    missing = [tool for tool in TOOLS if shutil.which(tool) is None]
    if missing:
        return f"missing {', '.join(missing)} (apt-get install openssh-server openssh-client rsync iproute2)"
    probe = subprocess.run(
        [*NAMESPACES, "true"], capture_output=True, text=True, timeout=30, check=False
    )
    if probe.returncode != 0:
        return f"cannot create namespaces here: {probe.stderr.strip()}"
    return None


def test_ray_up_exec_and_down_over_ssh_on_loopback(cifar_dir: Path) -> None:
    reason = _missing_requirement()
    if reason:
        pytest.skip(reason)
    venv = Path(sys.executable).parent.parent
    with tempfile.TemporaryDirectory(prefix="rc", dir="/tmp") as work:
        env = {
            k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "WANDB_"))
        }
        env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
        run = subprocess.run(
            [*NAMESPACES, "bash", str(SCRIPT), work, str(TINY_SPACE), str(cifar_dir), str(venv), str(REPO)],
            env=env, capture_output=True, text=True, timeout=540, check=False,
        )  # fmt: skip
        output = run.stdout + run.stderr
        assert run.returncode == 0, output[-4000:]
        assert "Stopped all" in output, "ray down ran ray stop on the head"
        rows = read_table(Path(work) / "results")
        assert len(rows) == 1 and rows[0]["space"] == "tiny_space", (
            "the sweep on the head promoted a model"
        )
        leftovers = subprocess.run(
            ["pgrep", "-f", work], capture_output=True, text=True, check=False
        ).stdout
        assert not leftovers.strip(), f"processes of the run outlived it: {leftovers}"
