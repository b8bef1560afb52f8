"""DDP trial start-up: from a trial's proposal to the first optimizer step of both of its
workers, for an older checkout and this one, in one run.

    python benchmarks/ddp_startup.py --baseline ../base      # a checkout with its own .venv
    python benchmarks/ddp_startup.py                          # this checkout only

Each version runs the same sweep as a user runs it: ``raycifar sweep`` with its own local
Ray, ``--workers-per-trial 2 --cpus-per-trial 2`` (one trial at a time on 2 cores), the micro
space of ``trial_overhead.py`` at 1 epoch, W&B off. The times come from a probe
(``benchmarks/probe/sitecustomize.py``) that hooks Tune's and torch's functions as they
load, so both versions are timed by the same marks without changing either. A version's
Python is ``<checkout>/.venv/bin/python`` (an editable install of that checkout).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from sweep_runs import cli_env, default_data
from trial_overhead import MICRO_SPACE

HERE = Path(__file__).resolve().parent
PHASES = (
    ("proposal -> trial process set up", "trial_process", 1),
    ("proposal -> Train controller starts", "controller", 1),
    ("proposal -> both worker actors start", "worker_actor", 2),
    ("proposal -> both handed the train fn", "train_fn", 2),
    ("proposal -> both process groups up", "process_group", 2),
    ("proposal -> both workers' first step", "first_step", 2),
)


def run_version(checkout: Path, space: Path, data_dir: Path, trials: int, work: Path) -> list[dict[str, float]]:
    """Run the DDP sweep with ``checkout``'s raycifar; per trial, seconds from its proposal to each mark."""
    probe = work / "probe.jsonl"
    with tempfile.TemporaryDirectory(prefix="rcd", dir="/tmp") as tmp:
        env = {**cli_env(tmp), "RAYCIFAR_PROBE": str(probe), "PYTHONPATH": str(HERE / "probe")}
        python = checkout / ".venv" / "bin" / "python"
        command = [str(python if python.exists() else sys.executable), "-m", "raycifar", "sweep", str(space),
                   "--seed", "0", "--data-dir", str(data_dir), "--results-dir", str(work / "results"),
                   "--name", "ddp", "--no-dashboard", "--wandb", "off", "--num-samples", str(trials),
                   "--workers-per-trial", "2", "--cpus-per-trial", "2"]  # fmt: skip
        done = subprocess.run(command, env=env, cwd=checkout, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{checkout}: raycifar sweep failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return per_trial([json.loads(line) for line in probe.read_text().splitlines()])


def per_trial(marks: list[dict]) -> list[dict[str, float]]:
    """Split the marks at each proposal (one trial runs at a time) and time each phase: the
    latest of the first two worker marks (both workers), the first trial-process mark."""
    marks.sort(key=lambda m: m["t"])
    proposals = [m["t"] for m in marks if m["event"] == "proposal"]
    rows = []
    for start, end in zip(proposals, [*proposals[1:], float("inf")], strict=True):
        inside = [m for m in marks if start < m["t"] < end]
        row = {}
        for label, event, needed in PHASES:
            times = [m["t"] for m in inside if m["event"] == event]
            if len(times) >= needed:
                row[label] = times[needed - 1] - start
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline", type=Path, default=None, help="an older checkout (with .venv) to time first")
    parser.add_argument("--data-dir", type=Path, default=default_data(Path("~/.cache/raycifar").expanduser()))
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    versions = {"baseline": args.baseline.resolve()} if args.baseline else {}
    versions["this checkout"] = HERE.parent
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="rc-ddp") as tmp:
        space = Path(tmp) / "micro.yaml"
        space.write_text(MICRO_SPACE.replace("epochs: 2", "epochs: 1"))
        for name, checkout in versions.items():
            print(f"running {name} ({checkout}) ...", file=sys.stderr, flush=True)
            work = Path(tmp) / name.replace(" ", "-")
            work.mkdir()
            results[name] = run_version(checkout, space, args.data_dir, args.trials, work)
    report(results)


def report(results: dict[str, list[dict[str, float]]]) -> None:
    """Medians over trials (seconds), one column per version, and the change against the baseline."""
    names = list(results)
    print(f"{'median over trials (s)':40}" + "".join(f"{n:>16}" for n in names))
    for label, _, _ in PHASES:
        values = [statistics.median(r[label] for r in results[n] if label in r) if any(label in r for r in results[n])
                  else None for n in names]  # fmt: skip
        cells = "".join(f"{v:>16.2f}" if v is not None else f"{'-':>16}" for v in values)
        change = ""
        if len(values) == 2 and None not in values:
            change = f"   {100 * (values[1] - values[0]) / values[0]:+.0f}%"
        print(f"{label:40}{cells}{change}")
    for name in names:
        firsts = ", ".join(f"{r.get(PHASES[-1][0], float('nan')):.2f}" for r in results[name])
        print(f"{name}: per trial {firsts}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
