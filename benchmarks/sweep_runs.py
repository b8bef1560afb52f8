"""What the sweep benchmarks (``sweep_efficiency.py``, ``soak.py``) share: a local Ray they
hold for their sweeps, ``raycifar sweep`` as a subprocess, and a finished sweep read back
from its folder (``sweeps/<name>/sweep_record.json`` and each ``trial_*/result.json``).

Not a benchmark itself: ``python benchmarks/sweep_efficiency.py`` imports it from its folder.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

# A child process holds the Ray: ray.init, print its addresses as one JSON line, wait for
# stdin to close (or the benchmark to die), then shut it down.
HOLD_RAY = """
import json, sys, ray
context = ray.init(num_cpus=int(sys.argv[1]), include_dashboard=True, dashboard_host="127.0.0.1")
url = context.dashboard_url if context.dashboard_url.startswith("http") else "http://" + context.dashboard_url
print(json.dumps({"gcs": context.address_info["gcs_address"], "dashboard": url}), flush=True)
sys.stdin.read()
ray.shutdown()
"""


SHARED_CIFAR10 = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10"


def default_data(fallback: Path) -> Path:
    """The real CIFAR-10 subset next to the checkout (``../shared/data/cifar10``) when it is
    there, else ``fallback`` (raycifar's default folder)."""
    return SHARED_CIFAR10 if SHARED_CIFAR10.is_dir() else fallback


def cli_env(tmpdir: str) -> dict[str, str]:
    """This environment without W&B keys or RAY_ADDRESS, with a short TMPDIR (Ray's socket
    paths must stay under 107 bytes) and wide Rich output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    return {**env, "TMPDIR": tmpdir, "COLUMNS": "200"}


class HeldRay:
    """A local Ray on 127.0.0.1 with ``cpus`` CPUs and its dashboard, for the sweeps to join
    with ``--address``; ``with HeldRay(2) as ray: ray.gcs, ray.dashboard``. Only this Ray is
    stopped on exit (never ``ray stop``)."""

    def __init__(self, cpus: int, keep: Path | None = None) -> None:
        """``keep``: a short folder (Ray's socket paths) that keeps Ray's session logs
        (``ray/session_*/logs``) after the Ray stops; default: a temp folder, removed."""
        self.cpus = cpus
        self.gcs = self.dashboard = ""
        self._folder = (
            None if keep else tempfile.TemporaryDirectory(prefix="rcb", dir="/tmp", ignore_cleanup_errors=True)
        )
        self.tmpdir = str(keep) if keep else self._folder.name
        Path(self.tmpdir).mkdir(parents=True, exist_ok=True)
        self._holder: subprocess.Popen | None = None

    def __enter__(self) -> HeldRay:
        started = time.perf_counter()
        with open(Path(self.tmpdir) / "holder.log", "w") as log:
            self._holder = subprocess.Popen(
                [sys.executable, "-c", HOLD_RAY, str(self.cpus)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=log, text=True, env=cli_env(self.tmpdir),
            )  # fmt: skip
        line = self._holder.stdout.readline()
        if not line.startswith("{"):
            tail = (Path(self.tmpdir) / "holder.log").read_text()[-3000:]
            self.__exit__()
            raise SystemExit(f"the local Ray did not start:\n{tail}")
        addresses = json.loads(line)
        self.gcs, self.dashboard = addresses["gcs"], addresses["dashboard"]
        self.start_seconds = time.perf_counter() - started
        return self

    def __exit__(self, *exc: object) -> None:
        if self._holder is not None:
            self._holder.stdin.close()
            try:
                self._holder.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self._holder.kill()
                self._holder.wait(timeout=30)
            self._holder = None
        if self._folder is not None:
            self._folder.cleanup()


def sweep_command(space: Path | str, data_dir: Path, results: Path, name: str, address: str, *extra: str) -> list[str]:
    """``python -m raycifar sweep`` of ``space`` joining ``address``, W&B off."""
    return [sys.executable, "-m", "raycifar", "sweep", str(space), "--data-dir", str(data_dir), "--results-dir",
            str(results), "--name", name, "--address", address, "--wandb", "off", "--no-dashboard", *extra]  # fmt: skip


def run_cli(command: list[str], env: dict[str, str], log: Path, timeout: float | None = None) -> float:
    """Run ``command``, its output into ``log``; returns its wall seconds. A failure (or
    ``timeout`` seconds passing) stops the benchmark with the log's tail."""
    started = time.perf_counter()
    with open(log, "w") as stream:
        try:
            done = subprocess.run(command, env=env, stdout=stream, stderr=subprocess.STDOUT, timeout=timeout)
            code = done.returncode
        except subprocess.TimeoutExpired:
            code = "timeout"
    if code != 0:
        raise SystemExit(f"{' '.join(command[2:6])} ... failed ({code}); {log}:\n{log.read_text()[-3000:]}")
    return time.perf_counter() - started


def stop_process(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Send ``sig`` to a process this benchmark started and reap it."""
    if process.poll() is None:
        process.send_signal(sig)
    process.wait(timeout=60)


@dataclass
class Trial:
    """One trial folder: its id, config (``params.json``) and reported results, in order."""

    trial_id: str
    config: dict
    results: list[dict] = field(default_factory=list)
    state: str = "unknown"  # the sweep record's state

    def best_val_acc(self) -> float:
        accuracies = [r["val_acc"] for r in self.results if r.get("val_acc") == r.get("val_acc")]  # NaN != NaN
        return max(accuracies, default=float("nan"))

    def searched(self) -> tuple[float, float]:
        return self.config["train"]["lr"], self.config["train"]["label_smoothing"]


@dataclass
class SweepRun:
    """A sweep read from ``<results>/sweeps/<name>``; times in seconds since its record's start."""

    name: str
    record: dict
    trials: dict[str, Trial]
    started: float  # the record's started_at, as a POSIX time
    ended: float | None

    @property
    def wall_seconds(self) -> float:
        """The driver's sweep time: from its record's start (before Tune) to its end (after Tune)."""
        return (self.ended or time.time()) - self.started

    def epochs(self) -> int:
        return sum(len(t.results) for t in self.trials.values())

    def timeline(self) -> list[tuple[float, float]]:
        """(seconds since the sweep started, val_acc) of every reported epoch, in time order."""
        points = [(r["timestamp"] - self.started, r["val_acc"]) for t in self.trials.values() for r in t.results]
        return sorted(p for p in points if p[1] == p[1])


def _posix(stamp: str | None) -> float | None:
    return None if stamp is None else datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def read_results(path: Path) -> list[dict]:
    """The complete JSON lines of a ``result.json`` (a line being written is skipped)."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.endswith("}")]


def read_sweep(results_dir: Path, name: str) -> SweepRun:
    """The sweep ``name`` as its files describe it now (running or ended)."""
    folder = results_dir / "sweeps" / name
    record = json.loads((folder / "sweep_record.json").read_text())
    trials = {}
    for trial_dir in sorted(folder.glob("trial_*")):
        if not (trial_dir / "params.json").is_file():
            continue
        trial_id = trial_dir.name.removeprefix("trial_")
        state = record["trials"].get(trial_id, {}).get("state", "unknown")
        trials[trial_id] = Trial(trial_id, json.loads((trial_dir / "params.json").read_text()),
                                 read_results(trial_dir / "result.json"), state)  # fmt: skip
    return SweepRun(name, record, trials, _posix(record["started_at"]), _posix(record.get("ended_at")))
