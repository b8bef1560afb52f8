"""A long CPU sweep of tiny trials with faults injected: Ray Train workers SIGKILLed at a
given rate, and the sweep's driver SIGKILLed once and continued with ``raycifar sweep
--resume``. Prints trials finished, retried and lost (must be 0), epochs redone, and the
leaderboard rows before the sweep, after the driver kill and after the resume.

The processes killed are the ones the running trials train in, as each trial reports them
(``worker_pid`` in its ``result.json``: the trial's own process on the in-trial path, its Ray
Train worker under ``--torch-trainer``), killed with SIGKILL like a crash or the OOM killer;
the trial restarts from its last checkpoint, up to ``--max-failures`` times (``--torch-trainer``
soaks the TorchTrainer path).

    python benchmarks/soak.py --data-dir ../shared/data/cifar10                 # 40 trials, ~3.5 min on 2 cores (in-trial)
    python benchmarks/soak.py --quick                                         # 6 trials: a smoke run
    python benchmarks/soak.py --trials 100 --kill-rate 4 --max-failures 5
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sweep_runs import HeldRay, SweepRun, cli_env, default_data, read_sweep, run_cli, stop_process, sweep_command  # noqa: E402

from raycifar.data import default_data_dir  # noqa: E402

SPACE = """\
description: soak benchmark; tiny airbench ({budget} parameters), lr searched
budget: {budget}
num_samples: {trials}
arch: {{model: airbench, base_width: fit, width_multiple: 8}}
train: {{lr: {{loguniform: [0.05, 0.4]}}, batch_size: 256, epochs: {epochs}, schedule: onecycle,
        label_smoothing: 0.1, precision: {precision}, channels_last: true, compile: false}}
"""
COMPLETED = ("finished", "stopped_early", "diverged")  # states a resume never runs again
QUICK = {"trials": 6, "epochs": 3, "kill_rate": 4.0}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data(default_data_dir()),
        help="default: ../shared/data/cifar10 if there, else raycifar's",
    )
    parser.add_argument(
        "--results-dir", type=Path, help="results folder (may hold a leaderboard already); default: a temp folder"
    )
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=3, help="epochs of every trial (FIFO: all run to the end)")
    parser.add_argument("--kill-rate", type=float, default=2.0, help="worker kills per minute (exponential gaps)")
    parser.add_argument(
        "--driver-kill-at", type=float, default=0.5, help="kill the driver once this share of trials ended"
    )
    parser.add_argument("--max-failures", type=int, default=3, help="the sweep's --max-failures")
    parser.add_argument("--torch-trainer", action="store_true", help="soak the TorchTrainer path (the sweep's --torch-trainer)")
    parser.add_argument("--params", type=int, default=30_000, help="the parameter budget the model is fitted to")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="bf16 needs AVX512-BF16 or AMX")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once (1 CPU each)")
    parser.add_argument("--seed", type=int, default=0, help="the sweep's --seed and the kill times' seed")
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    parser.add_argument(
        "--keep", type=Path, help="keep the space file, logs and results/ here (default: a temp folder)"
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    if args.quick:
        args.trials, args.epochs, args.kill_rate = QUICK.values()
    return args


def say(args: argparse.Namespace, line: str) -> None:
    if args.format == "table":
        print(line, flush=True)


def training_pids(sweep_dir: Path) -> list[int]:
    """The live processes the sweep's running trials train in: the ``worker_pid`` of each
    running trial's latest checkpoint (``train_runs/<trial id>/checkpoint_*/metrics.json``,
    written by the trial itself; Tune's ``result.json`` copy lags by seconds)."""
    try:
        record = json.loads((sweep_dir / "sweep_record.json").read_text())
    except (OSError, ValueError):
        return []
    pids = []
    for trial_id, entry in record["trials"].items():
        if entry["state"] != "running":
            continue
        latest: tuple[int, int] | None = None
        for metrics_file in (sweep_dir / "train_runs" / trial_id).glob("checkpoint_*/metrics.json"):
            try:
                metrics = json.loads(metrics_file.read_text())
            except (OSError, ValueError):
                continue
            if metrics.get("worker_pid") and (latest is None or metrics["epoch"] > latest[0]):
                latest = (metrics["epoch"], int(metrics["worker_pid"]))
        if latest and Path(f"/proc/{latest[1]}").exists():
            pids.append(latest[1])
    return pids


class WorkerKiller(threading.Thread):
    """SIGKILLs the process of one running trial (:func:`training_pids`), chosen at random,
    after each exponential gap of mean ``60 / rate`` seconds, until :meth:`stop`. ``kills``:
    (time, pid) of each kill."""

    def __init__(self, sweep_dir: Path, rate_per_minute: float, seed: int) -> None:
        super().__init__(daemon=True)
        self.sweep_dir, self.rate, self.rng = sweep_dir, rate_per_minute, random.Random(seed)
        self.kills: list[tuple[float, int]] = []
        self.misses = 0  # gaps that ended with no worker alive
        self._halt = threading.Event()

    def run(self) -> None:
        while self.rate > 0 and not self._halt.wait(self.rng.expovariate(self.rate / 60.0)):
            pids = training_pids(self.sweep_dir)
            if not pids:
                self.misses += 1
                continue
            pid = self.rng.choice(sorted(pids))
            try:
                os.kill(pid, signal.SIGKILL)
                self.kills.append((time.time(), pid))
            except ProcessLookupError:
                self.misses += 1

    def stop(self) -> None:
        self._halt.set()
        self.join(timeout=60)


def leaderboard(results: Path, env: dict[str, str]) -> list[dict]:
    done = subprocess.run([sys.executable, "-m", "raycifar", "leaderboard", "--results-dir", str(results), "--format",
                           "json"], env=env, capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(done.stdout)


def ended_trials(sweep_dir: Path) -> int:
    try:
        record = json.loads((sweep_dir / "sweep_record.json").read_text())
    except (OSError, ValueError):
        return 0
    return sum(t["state"] in COMPLETED + ("error",) for t in record["trials"].values())


def kill_driver_when(driver: subprocess.Popen, sweep_dir: Path, ended: int, log: Path) -> float:
    """SIGKILL the sweep driver once ``ended`` trials have ended; returns when (POSIX time)."""
    while ended_trials(sweep_dir) < ended:
        if driver.poll() is not None:
            raise SystemExit(
                f"the sweep ended ({driver.returncode}) before the driver kill; {log}:\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.5)
    stop_process(driver, signal.SIGKILL)
    return time.time()


def summarize(sweep: SweepRun, killed_at: float, resumed_at: float) -> dict:
    """The soak's counts, from the sweep's files (see the module docstring)."""
    planned = sweep.record["planned_trials"]
    states = [t.state for t in sweep.trials.values()]
    redone = restarts = 0
    retried = carried = 0
    for trial in sweep.trials.values():
        seen, starts = set(), [0]
        for result in trial.results:
            redone += result["epoch"] in seen
            seen.add(result["epoch"])
            if result.get("resumed_from_epoch", 0) != starts[-1]:
                starts.append(result.get("resumed_from_epoch", 0))
        restarts += sum(start > 0 for start in starts)
        retried += any(start > 0 for start in starts)
        times = [r["timestamp"] for r in trial.results]
        carried += any(t <= killed_at for t in times) and any(t >= resumed_at for t in times)
    finished = sum(state in COMPLETED for state in states)
    return {
        "planned": planned, "trials_run": len(states), "finished": finished, "error": states.count("error"),
        "orphaned_by_driver_kill": states.count("lost"), "lost": planned - finished, "retried": retried,
        "restarts_from_checkpoint": restarts, "carried_over_resume": carried, "epochs_reported": sweep.epochs(),
        "epochs_redone": redone,
        "epochs_abandoned": sum(len(t.results) for t in sweep.trials.values() if t.state == "lost"),
        "errors": {
            t.trial_id: (sweep.record["trials"][t.trial_id].get("reason") or "")[:110]
            for t in sweep.trials.values()
            if t.state == "error"
        },
    }  # fmt: skip


def run_soak(args: argparse.Namespace, folder: Path, results: Path) -> dict:
    space = folder / "soak_space.yaml"
    space.write_text(SPACE.format(budget=args.params, trials=args.trials, epochs=args.epochs, precision=args.precision))
    name, sweep_dir = "soak", results / "sweeps" / "soak"
    boards = {"before": leaderboard(results, cli_env(str(folder)))}
    with HeldRay(args.concurrency, folder / "ray" if args.keep else None) as ray:
        env = cli_env(ray.tmpdir)
        command = sweep_command(space, args.data_dir, results, name, ray.gcs, "--seed", str(args.seed), "--scheduler",
                                "fifo", "--max-failures", str(args.max_failures), "--max-concurrent-trials",
                                str(args.concurrency), *(["--torch-trainer"] if args.torch_trainer else []))  # fmt: skip
        say(args, f"sweep {name}: {args.trials} trials x {args.epochs} epochs, {args.kill_rate}/min worker kills; "
                  f"local Ray up in {ray.start_seconds:.1f} s; results in {results}")  # fmt: skip
        killer = WorkerKiller(sweep_dir, args.kill_rate, args.seed)
        started = time.time()
        with open(folder / "sweep.log", "w") as log:
            driver = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        killer.start()
        try:
            killed_at = kill_driver_when(
                driver, sweep_dir, round(args.driver_kill_at * args.trials), folder / "sweep.log"
            )
        finally:
            stop_process(driver, signal.SIGKILL)
        say(args, f"driver SIGKILLed after {killed_at - started:.0f} s ({ended_trials(sweep_dir)} trials ended; "
                  f"{len(killer.kills)} worker kills so far); resuming")  # fmt: skip
        boards["after driver kill"] = leaderboard(results, env)
        resumed_at = time.time()
        resume = [sys.executable, "-m", "raycifar", "sweep", "--resume", name, "--results-dir", str(results),
                  "--address", ray.gcs, "--no-dashboard"]  # fmt: skip
        try:
            resume_wall = run_cli(resume, env, folder / "resume.log")
        finally:
            killer.stop()
    boards["after resume"] = leaderboard(results, cli_env(str(folder)))
    (folder / "kills.json").write_text(json.dumps([{"time": at, "pid": pid} for at, pid in killer.kills]))
    counts = summarize(read_sweep(results, name), killed_at, resumed_at)
    return {**counts, "worker_kills": len(killer.kills), "kill_misses": killer.misses,
            "wall_s": time.time() - started, "resume_wall_s": resume_wall, "leaderboards": boards}  # fmt: skip


def _board_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return ["  (empty)"]
    return [
        f"  {r['entry_id']:<24} {r['sweep']:<12} {r['trial_id']:<10} {r['val_acc']:.4f} {r['test_acc']:.4f}"
        for r in rows
    ]


def print_table(args: argparse.Namespace, soak: dict) -> None:
    print(f"\nsoak: {soak['planned']} planned trials, {args.epochs} epochs each, {args.concurrency} at a time, "
          f"--max-failures {args.max_failures}; {soak['wall_s']:.0f} s in all (the resume: {soak['resume_wall_s']:.0f} s)")  # fmt: skip
    rows = [
        ("worker kills injected", soak["worker_kills"], f"at {args.kill_rate}/min; {soak['kill_misses']} gaps found no worker"),
        ("driver kills + --resume", 1, f"at {args.driver_kill_at:.0%} of the trials ended"),
        ("trials finished", soak["finished"], f"of {soak['planned']} planned ({soak['trials_run']} trial folders)"),
        ("trials retried", soak["retried"], f"resumed from a checkpoint ({soak['restarts_from_checkpoint']} restarts; "
                                            f"{soak['carried_over_resume']} carried over the driver kill)"),
        ("trials orphaned by the kill", soak["orphaned_by_driver_kill"], f"run again as new trials; {soak['epochs_abandoned']} epochs abandoned"),
        ("trials failed (error)", soak["error"], "reasons below"),
        ("trials lost", soak["lost"], "planned trials that did not finish: must be 0"),
        ("epochs reported", soak["epochs_reported"], ""),
        ("epochs redone", soak["epochs_redone"], "an epoch number reported again by the same trial"),
    ]  # fmt: skip
    for label, value, note in rows:
        print(f"{label:<28} {value:>6}  {note}")
    for trial_id, reason in soak["errors"].items():
        print(f"  trial {trial_id} failed: {reason}")
    print(f"leaderboard rows ({'entry':<17} {'sweep':<12} {'trial':<10} val_acc test_acc):")
    for stage, board in soak["leaderboards"].items():
        print(f" {stage}: {len(board)} row(s)")
        print("\n".join(_board_lines(board)))
    print("verdict: " + ("ok, no trial lost" if soak["lost"] == 0 else f"FAILED: {soak['lost']} trial(s) lost"))


def main() -> None:
    args = parse_args()
    args.data_dir = args.data_dir.resolve()
    with tempfile.TemporaryDirectory(prefix="rcsk", dir="/tmp") as scratch:
        folder = (args.keep or Path(scratch)).resolve()  # the space file, sweep.log, resume.log
        folder.mkdir(parents=True, exist_ok=True)
        results = (args.results_dir or folder / "results").resolve()
        soak = run_soak(args, folder, results)
    if args.format == "json":
        print(json.dumps(soak, indent=2))
    else:
        print_table(args, soak)
    sys.exit(0 if soak["lost"] == 0 else 1)


if __name__ == "__main__":
    main()
