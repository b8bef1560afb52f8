"""Where a sweep's time goes besides training: the in-trial path, the ``TorchTrainer`` path
and a plain loop without Ray, side by side in one run, on the same trials.

    python benchmarks/trial_overhead.py                 # the micro sweep (6 x 2 epochs, ~6 min)
    python benchmarks/trial_overhead.py --space laptop_space --num-samples 6 --paths in-trial,torch-trainer

Each sweep runs as a user runs it (``raycifar sweep``, a local Ray of its own, 2 trials at a
time on 2 cores) with the debug timeline on (``RAYCIFAR_TIMELINE=1``, :mod:`raycifar.timeline`);
the phase table comes from its marks. The plain loop runs the same trial configs with
:func:`raycifar.train.worker.run_worker` in two processes (one per slot), without Ray.

The headline figure is the per-trial fixed overhead, counted from the sweep's own closing
line: (concurrency x wall - training seconds - evaluation seconds) / trials, so that the
first trial of each slot and the sweep's start and end are included. W&B's cost per trial is
the in-trial sweep with ``--wandb offline`` minus the same with ``--wandb off``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sweep_runs import cli_env, default_data

MICRO_SPACE = """\
description: overhead measurement space; tiny ResNet-8 width 8, lr searched
dataset: cifar10
budget: 5000000
num_samples: 6
val_fraction: 0.1
arch: {depths: [1, 1, 1], base_width: 8, se_ratio: 0}
train:
  optimizer: sgd
  lr: {loguniform: [0.05, 0.4]}
  momentum: 0.9
  nesterov: true
  weight_decay: 5.0e-4
  batch_size: 256
  epochs: 2
  schedule: onecycle
  label_smoothing: 0.1
  precision: auto
  channels_last: false
  compile: false
scheduler: {name: fifo}
"""
CLOSING = re.compile(  # a sweep's closing line, also one its --time-budget ended
    r"sweep (?:finished in|ended by its time budget after) (\d+) s: (\d+) trials.*\((\d+) s training, (\d+) s evaluation\)"
)
CONCURRENCY = 2

PLAIN = """
import json, sys, time
started = time.time()
import torch
from pathlib import Path
from raycifar.train.checkpoints import CheckpointFolder
from raycifar.train.worker import run_worker
from contextlib import contextmanager

class Session:
    rank, world_size, held, device = 0, 1, {"CPU": 1.0}, torch.device("cpu")
    def __init__(self, folder): self.checkpoints, self.seconds = CheckpointFolder(folder, "val_acc"), 0.0
    def wrap(self, model): return model
    @contextmanager
    def own_checkpoint(self): yield None
    @contextmanager
    def staging(self): yield self.checkpoints.staging()
    def report(self, metrics, checkpoint):
        if checkpoint is not None: self.checkpoints.commit(checkpoint)
        self.seconds += metrics["train_seconds"] + metrics["eval_seconds"]

torch.set_num_threads(1)
configs, folder, fingerprint = json.loads(sys.argv[1]), Path(sys.argv[2]), sys.argv[3]
work = 0.0
for index, config in enumerate(configs):
    session = Session(folder / str(index))
    run_worker(config, session, fingerprint)
    work += session.seconds
print(json.dumps({"wall": time.time() - started, "work": work}))
"""


def run_sweep(space: Path, data_dir: Path, results: Path, name: str, extra: list[str], num_samples: int | None) -> dict:
    """``raycifar sweep`` with the timeline on; its closing line's figures, its marks, and the
    seconds from the command's start to its exit."""
    with tempfile.TemporaryDirectory(prefix="rct", dir="/tmp") as tmp:
        env = {**cli_env(tmp), "RAYCIFAR_TIMELINE": "1"}
        command = [sys.executable, "-m", "raycifar", "sweep", str(space), "--seed", "0", "--data-dir", str(data_dir),
                   "--results-dir", str(results), "--name", name, "--no-dashboard", *extra]  # fmt: skip
        if num_samples:
            command += ["--num-samples", str(num_samples)]
        started = time.time()
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        ended = time.time()
    if done.returncode != 0:
        raise SystemExit(f"{name}: raycifar sweep failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    found = CLOSING.search(done.stdout)
    if found is None:
        raise SystemExit(f"{name}: no closing line in:\n{done.stdout[-2000:]}")
    wall, trials, train, evaluation = (int(x) for x in found.groups())
    marks = [json.loads(line) for line in (results / "sweeps" / name / "timeline.jsonl").read_text().splitlines()]
    return {"wall": wall, "trials": trials, "work": train + evaluation, "marks": marks, "started": started, "ended": ended}


def overhead(run: dict) -> float:
    """Per-trial fixed overhead: (concurrency x wall - training - evaluation) / trials."""
    return (CONCURRENCY * run["wall"] - run["work"]) / run["trials"]


def _first(marks: list[dict], event: str) -> float | None:
    times = [m["t"] for m in marks if m["event"] == event]
    return min(times) if times else None


def phases(run: dict) -> dict[str, float | None]:
    """The phase table of one sweep from its marks (seconds; medians over trials)."""
    marks, started = run["marks"], run["started"]
    by_trial: dict[str, dict[str, float]] = {}
    for m in sorted(marks, key=lambda m: m["t"]):  # every trial and rank-0 worker mark names its trial
        if "trial" not in m or m.get("rank", 0) != 0:
            continue
        times = by_trial.setdefault(m["trial"], {})
        if m["event"] == "epoch_end":
            times["last_epoch_end"] = m["t"]
        else:
            times.setdefault(m["event"], m["t"])

    def median(start: str, end: str) -> float | None:
        values = [t[end] - t[start] for t in by_trial.values() if start in t and end in t]
        return statistics.median(values) if values else None

    trial_ends = [t["trial_end"] for t in by_trial.values() if "trial_end" in t]
    first_ready = _first(marks, "worker_ready")
    return {
        "command -> Ray up": (_first(marks, "ray_up") or started) - started,
        "command -> first trial's first step": (first_ready - started) if first_ready else None,
        "proposal -> trial process runs it": median("trial_proposed", "trial_start"),
        "trial runs -> worker started": median("trial_start", "worker_start"),
        "worker started -> first step": median("worker_start", "worker_ready"),
        "last epoch -> trial ended": median("last_epoch_end", "trial_end"),
        "last trial ended -> command exit": run["ended"] - max(trial_ends) if trial_ends else None,
        "  of which: -> Tune returned": _since(marks, "sweep_end", max(trial_ends, default=None)),
        "  of which: promotion, Ray shut down": _between(marks, "sweep_end", "ray_down"),
        "  of which: report written": _between(marks, "ray_down", "report_written"),
        "  of which: -> command exit": run["ended"] - (_first(marks, "report_written") or run["ended"]),
    }


def _since(marks: list[dict], event: str, start: float | None) -> float | None:
    at = _first(marks, event)
    return at - start if at is not None and start is not None else None


def _between(marks: list[dict], start: str, end: str) -> float | None:
    return _since(marks, end, _first(marks, start))


def run_plain(space: Path, data_dir: Path, folder: Path, num_samples: int | None) -> dict:
    """The same trials as the sweep with ``--seed 0``, run without Ray: one process per slot."""
    from raycifar.data.fingerprint import data_fingerprint
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space

    loaded = load_space(str(space))
    count = num_samples or loaded.spec.num_samples
    configs = [c.model_dump(mode="json") for c in sample_configs(loaded, count, 0, data_dir).configs]
    slots = [configs[i::CONCURRENCY] for i in range(CONCURRENCY)]
    fingerprint = data_fingerprint(data_dir, loaded.spec.dataset, loaded.spec.label_mode)
    started = time.time()
    procs = [
        subprocess.Popen([sys.executable, "-c", PLAIN, json.dumps(slot), str(folder / f"slot{i}"), fingerprint],
                         stdout=subprocess.PIPE, text=True)  # fmt: skip
        for i, slot in enumerate(slots)
    ]
    outputs = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    wall = time.time() - started
    return {"wall": wall, "trials": count, "work": sum(o["work"] for o in outputs)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--space", default=None, help="a space file or shipped name (default: the micro sweep)")
    parser.add_argument("--data-dir", type=Path, default=default_data(Path("~/.cache/raycifar").expanduser()))
    parser.add_argument("--num-samples", type=int, default=None)
    parser.add_argument("--paths", default="in-trial,torch-trainer,plain,wandb", help="which to run, comma-separated")
    args = parser.parse_args()
    paths = args.paths.split(",")
    with tempfile.TemporaryDirectory(prefix="rc-overhead") as tmp:
        work = Path(tmp)
        space = Path(args.space) if args.space else work / "micro.yaml"
        if args.space is None:
            space.write_text(MICRO_SPACE)
        runs: dict[str, dict] = {}
        flags = {"in-trial": ["--wandb", "off"], "torch-trainer": ["--wandb", "off", "--torch-trainer"],
                 "wandb": ["--wandb", "offline"]}  # fmt: skip
        for path in paths:
            print(f"running {path} ...", file=sys.stderr, flush=True)
            if path == "plain":
                runs[path] = run_plain(space, args.data_dir, work / "plain", args.num_samples)
            else:
                runs[path] = run_sweep(space, args.data_dir, work / path, path, flags[path], args.num_samples)
    report(runs)


def report(runs: dict[str, dict]) -> None:
    """Print the table: one column per path."""
    names = list(runs)
    width = 38
    print(f"{'':{width}}" + "".join(f"{n:>16}" for n in names))
    rows = {
        "wall (s)": {n: r["wall"] for n, r in runs.items()},
        "training + evaluation (s)": {n: r["work"] for n, r in runs.items()},
        "per-trial fixed overhead (s)": {n: overhead(r) for n, r in runs.items()},
    }
    for name, run in runs.items():
        if "marks" in run:
            for phase, value in phases(run).items():
                rows.setdefault(phase, {})[name] = value
    for label, values in rows.items():
        cells = "".join(f"{values[n]:>16.2f}" if values.get(n) is not None else f"{'-':>16}" for n in names)
        print(f"{label:{width}}{cells}")
    if "wandb" in runs and "in-trial" in runs:
        print(f"\nW&B offline per trial: {overhead(runs['wandb']) - overhead(runs['in-trial']):+.2f} s")
    if "torch-trainer" in runs and "in-trial" in runs:
        ratio = overhead(runs["torch-trainer"]) / max(overhead(runs["in-trial"]), 1e-9)
        print(f"TorchTrainer / in-trial per-trial overhead: {ratio:.1f}x")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
