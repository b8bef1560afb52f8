"""How long raycifar's commands take from start to exit, next to ``python -c pass`` and
``python -c "import torch"``, measured in one run.

Each command runs ``--rounds`` times; the rounds are interleaved (every command once per
round) so that load from other jobs spreads over all of them, and the median counts.
Read-only commands (``--help``, ``space show``, ``leaderboard``, ``status``) import neither
torch nor Ray; ``model info`` and ``space sample`` import torch (and timm for SE models).

    python benchmarks/cli_startup.py
    python benchmarks/cli_startup.py --rounds 9 --format json
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

PYTHON = sys.executable


def commands(empty: Path) -> dict[str, list[str]]:
    """Name -> argv of every measured command (``empty`` is an empty results folder)."""
    raycifar = [PYTHON, "-m", "raycifar"]
    return {
        "python -c pass": [PYTHON, "-c", "pass"],
        'python -c "import torch"': [PYTHON, "-c", "import torch"],
        "raycifar --help": [*raycifar, "--help"],
        "raycifar space show smoke_space": [*raycifar, "space", "show", "smoke_space"],
        "raycifar leaderboard (empty)": [*raycifar, "leaderboard", "--results-dir", str(empty)],
        "raycifar status (empty)": [*raycifar, "status", "--results-dir", str(empty)],
        "raycifar model info resnet20": [*raycifar, "model", "info", "resnet20"],
        "raycifar model info seresnet20": [*raycifar, "model", "info", "seresnet20"],
        "raycifar space sample smoke_space -n 3": [*raycifar, "space", "sample", "smoke_space", "-n", "3"],
    }


def time_once(argv: list[str]) -> float:
    """Wall seconds from start to exit; fails loudly if the command fails."""
    started = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()[-500:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="runs of each command (median counts)")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as empty:
        measured = commands(Path(empty))
        for argv in measured.values():  # warm the file cache once, untimed
            time_once(argv)
        times: dict[str, list[float]] = {name: [] for name in measured}
        for _ in range(args.rounds):
            for name, argv in measured.items():
                times[name].append(time_once(argv))
    medians = {name: statistics.median(values) for name, values in times.items()}
    torch_s = medians['python -c "import torch"']
    if args.format == "json":
        print(json.dumps({"rounds": args.rounds, "median_s": medians, "import_torch_s": torch_s}, indent=2))
        return
    print(f"{'command':<42} {'median s':>9} {'min s':>7} {'- import torch':>15}")
    for name, median in medians.items():
        print(f"{name:<42} {median:>9.2f} {min(times[name]):>7.2f} {median - torch_s:>+15.2f}")
    print(f"({args.rounds} interleaved rounds; medians; last column: the median minus `import torch`'s)")


if __name__ == "__main__":
    main()
