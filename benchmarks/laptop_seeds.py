"""The laptop sweep on an older checkout and on this one, seed by seed, side by side in one run:
how much of a sweep's wall time goes to raycifar's own overhead, and what test accuracy it
promotes.

    python benchmarks/laptop_seeds.py --baseline ../base              # seeds 0 1 2, ~45 min on 2 cores
    python benchmarks/laptop_seeds.py --baseline ../base --seeds 0 --space smoke_space   # a quick look

Each sweep runs as a user runs it (``raycifar sweep SPACE --seed S --time-budget 10m``, a local
Ray of its own, 2 trials at a time on 2 cores, W&B off), with the checkout's own ``.venv``;
the versions alternate seed by seed, so that a slower stretch of the machine hits both. From
each sweep's closing line: its wall time, and the overhead, (concurrency x wall - training
seconds - evaluation seconds), as seconds per trial and as a share of concurrency x wall.
The promoted entry's ``test_acc`` comes from ``raycifar leaderboard --format json`` (one
score of the 2,000-image test subset has a 95% interval of about +-1.9 points).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweep_runs import cli_env, default_data
from trial_overhead import CLOSING, CONCURRENCY
from trial_overhead import overhead as per_trial

HERE = Path(__file__).resolve().parent


def run_sweep(checkout: Path, space: str, seed: int, data_dir: Path, results: Path, time_budget: str) -> dict:
    """One ``raycifar sweep`` of ``checkout`` (its ``.venv``); its closing line's figures, the
    command's own seconds and the promoted ``test_acc``."""
    python = checkout / ".venv" / "bin" / "python"
    with tempfile.TemporaryDirectory(prefix="rcl", dir="/tmp") as tmp:
        env = {**cli_env(tmp), "PYTHONPATH": str(checkout)}  # its code in the command and in Ray's workers
        command = [str(python), "-m", "raycifar", "sweep", space, "--seed", str(seed), "--data-dir", str(data_dir),
                   "--results-dir", str(results), "--time-budget", time_budget, "--wandb", "off", "--no-dashboard"]  # fmt: skip
        started = time.time()
        done = subprocess.run(command, cwd=checkout, env=env, capture_output=True, text=True, check=False)
        command_s = time.time() - started
        if done.returncode != 0:
            raise SystemExit(f"{checkout}: raycifar sweep failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
        found = CLOSING.search(done.stdout)
        if found is None:
            raise SystemExit(f"{checkout}: no closing line in:\n{done.stdout[-2000:]}")
        board = subprocess.run([str(python), "-m", "raycifar", "leaderboard", "--results-dir", str(results), "--format", "json"],
                               cwd=checkout, env=env, capture_output=True, text=True, check=True)  # fmt: skip
    wall, trials, train, evaluation = (int(x) for x in found.groups())
    (row,) = json.loads(board.stdout)
    return {"wall": wall, "command": command_s, "trials": trials, "work": train + evaluation, "test_acc": row["test_acc"]}


def overhead_share(run: dict) -> float:
    """The share of concurrency x wall that was neither training nor evaluation."""
    return (CONCURRENCY * run["wall"] - run["work"]) / (CONCURRENCY * run["wall"])


def report(runs: dict[str, dict[int, dict]], space: str, time_budget: str) -> None:
    """One column per version: each seed's figures, then the means over seeds."""
    names = list(runs)
    width = 34
    print(f"{space}, --time-budget {time_budget}, {CONCURRENCY} trials at a time; means over seeds last")
    print(f"{'':{width}}" + "".join(f"{name:>20}" for name in names))
    seeds = sorted(next(iter(runs.values())))
    rows: list[tuple[str, dict[str, str]]] = []
    for seed in seeds:
        for label, cell in (("wall (s)", lambda r: f"{r['wall']}"), ("command (s)", lambda r: f"{r['command']:.0f}"),
                            ("trials", lambda r: f"{r['trials']}"), ("training + evaluation (s)", lambda r: f"{r['work']}"),
                            ("overhead, % of wall", lambda r: f"{100 * overhead_share(r):.1f}"),
                            ("per-trial overhead (s)", lambda r: f"{per_trial(r):.2f}"),
                            ("promoted test_acc", lambda r: f"{r['test_acc']:.4f}")):  # fmt: skip
            rows.append((f"seed {seed}: {label}", {name: cell(runs[name][seed]) for name in names}))
    for label, value in (("mean overhead, % of wall", lambda rs: f"{100 * statistics.mean(map(overhead_share, rs)):.1f}"),
                         ("mean per-trial overhead (s)", lambda rs: f"{statistics.mean(map(per_trial, rs)):.2f}"),
                         ("mean promoted test_acc", lambda rs: f"{statistics.mean(r['test_acc'] for r in rs):.4f}")):  # fmt: skip
        rows.append((label, {name: value(list(runs[name].values())) for name in names}))
    for label, cells in rows:
        print(f"{label:{width}}" + "".join(f"{cells[name]:>20}" for name in names))
    if len(names) == 2:
        base, new = (statistics.mean(r["test_acc"] for r in runs[name].values()) for name in names)
        print(f"\nmean test_acc, {names[1]} - {names[0]}: {100 * (new - base):+.2f} points")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="an older checkout (with .venv) to run first")
    parser.add_argument("--space", default="laptop_space")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time-budget", default="10m")
    parser.add_argument("--data-dir", type=Path, default=default_data(Path("~/.cache/raycifar").expanduser()))
    args = parser.parse_args()
    versions = {"baseline": args.baseline.resolve()} if args.baseline else {}
    versions["this checkout"] = HERE.parent
    runs: dict[str, dict[int, dict]] = {name: {} for name in versions}
    with tempfile.TemporaryDirectory(prefix="rc-laptop") as tmp:
        for seed in args.seeds:
            for name, checkout in versions.items():
                print(f"seed {seed}: {name} ({checkout}) ...", file=sys.stderr, flush=True)
                results = Path(tmp) / f"{name.replace(' ', '-')}-{seed}"
                runs[name][seed] = run_sweep(checkout, args.space, seed, args.data_dir.resolve(), results, args.time_budget)
    report(runs, args.space, args.time_budget)


if __name__ == "__main__":
    main()
