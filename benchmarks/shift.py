"""Selection that survives a shift, measured side by side: two sweeps under the same parameter
budget and time budget, for each seed, each winner scored on the clean test images and on a
corrupted test set (the 15 benchmark corruptions of ``raycifar data corrupt``):

- A: the base space as it is, selected on ``val_acc``;
- B: the same space plus AugMix as a dimension (``augment.augmix: {choice: [false, true]}``),
  selected on ``mean`` (of clean and shifted validation accuracy).

    python benchmarks/shift.py --data-dir ../shared/data/cifar10                       # 3 seeds x 2 sweeps x 10 min
    python benchmarks/shift.py --seeds 0 --time-budget 2m --space smoke_space --out /tmp/shift   # a quick look

It runs ``raycifar`` as a user would (one sweep at a time, on a local Ray), writes everything
under ``--out``, and prints clean accuracy, corrupted accuracy and the gap for A and B: per seed
with 95% intervals over the test images (Wilson; for the corrupted accuracy the images of all
cells count as independent draws, which makes that interval too narrow when cells share
images), then the mean and the spread (min–max) over seeds.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"


def wilson(successes: float, trials: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson interval of a proportion ``successes / trials``."""
    p = successes / trials
    centre = (p + z * z / (2 * trials)) / (1 + z * z / trials)
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / (1 + z * z / trials)
    return centre - half, centre + half


def raycifar(*args: str) -> str:
    """``python -m raycifar ARGS``; its output, or exit with its last lines when it fails."""
    done = subprocess.run([sys.executable, "-m", "raycifar", *args], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        sys.exit(f"raycifar {' '.join(args)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return done.stdout


def space_files(base: str, out: Path) -> dict[str, Path]:
    """The two spaces: A (the base) and B (AugMix as a dimension, select: mean)."""
    shipped = REPO / "search_spaces" / f"{base}.yaml"
    spec = yaml.safe_load((shipped if shipped.is_file() else Path(base)).read_text())
    a = {**spec, "select": "val_acc"}
    b = {**spec, "select": "mean", "augment": {**(spec.get("augment") or {}), "augmix": {"choice": [False, True]}}}
    paths = {}
    for name, content in (("A", a), ("B", b)):
        paths[name] = out / f"space_{name}.yaml"
        paths[name].write_text(yaml.safe_dump(content, sort_keys=False))
    return paths


def scored(results: Path) -> dict:
    """The promoted row's clean and corrupted figures, with their intervals."""
    (row,) = json.loads(raycifar("leaderboard", "--results-dir", str(results), "--format", "json"))
    entry = results / "leaderboard" / row["entry_id"]
    robustness = json.loads((entry / "robustness.json").read_text())
    cells = len(robustness["mean_over"]) * len(robustness["by_severity"])
    n = robustness["images_per_cell"] * cells
    clean_n = robustness["clean_images"]
    return {
        "entry": row["entry_id"], "augmix": json.loads(row["config_json"]).get("augment", {}).get("augmix"),
        "clean": robustness["clean_acc"], "clean_ci": wilson(robustness["clean_acc"] * clean_n, clean_n),
        "corrupted": robustness["corrupted_acc"], "corrupted_ci": wilson(robustness["corrupted_acc"] * n, n),
        "gap": robustness["gap"],
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=SHARED_CIFAR10)
    parser.add_argument("--space", default="laptop_space", help="the base space A (B adds AugMix and select: mean)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--time-budget", default="10m")
    parser.add_argument("--out", type=Path, default=Path("shift-benchmark"))
    parser.add_argument("--format", choices=["table", "json"], default="table")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    corrupted = args.out / "corrupted"
    print(f"corrupted test set (15 benchmark corruptions x 5 severities) in {corrupted}", file=sys.stderr, flush=True)
    raycifar("data", "corrupt", "--data-dir", str(args.data_dir), "--out", str(corrupted), "--corruptions", "benchmark")
    spaces = space_files(args.space, args.out)
    figures: dict[str, dict[int, dict]] = {"A": {}, "B": {}}
    for seed in args.seeds:
        for name, space in spaces.items():
            results = args.out / f"{name}-seed{seed}"
            print(f"sweep {name}, seed {seed}: {results}", file=sys.stderr, flush=True)
            raycifar("sweep", str(space), "--data-dir", str(args.data_dir), "--results-dir", str(results), "--seed", str(seed),
                     "--time-budget", args.time_budget, "--corrupted", str(corrupted), "--robustness",
                     "--wandb", "off", "--no-dashboard")  # fmt: skip
            figures[name][seed] = scored(results)
    if args.format == "json":
        print(json.dumps(figures, indent=1))
        return
    print(f"{args.space}, --time-budget {args.time_budget}, seeds {args.seeds}; 95% Wilson intervals over test images")
    print(f"{'':4} {'seed':>4} {'AugMix':>6} {'clean acc':>22} {'corrupted acc':>22} {'gap':>7}")
    for name in figures:
        for seed, f in figures[name].items():
            clean, corr = f["clean_ci"], f["corrupted_ci"]
            print(f"{name:4} {seed:4} {str(f['augmix']):>6} {f['clean']:.4f} [{clean[0]:.3f}, {clean[1]:.3f}]"
                  f" {f['corrupted']:.4f} [{corr[0]:.3f}, {corr[1]:.3f}] {f['gap']:7.4f}")  # fmt: skip
    for key in ("clean", "corrupted", "gap"):
        line = []
        for name in figures:
            values = [f[key] for f in figures[name].values()]
            line.append(f"{name} {statistics.mean(values):.4f} ({min(values):.4f}–{max(values):.4f})")
        print(f"mean over seeds, {key}: " + ";  ".join(line))


if __name__ == "__main__":
    main()
