"""How much a sweep gains from its scheduler and searcher, and what Ray costs, side by side
from one run of four ``raycifar sweep`` commands on one local Ray:

(a) the same N configs (the random searcher with one --seed) under ASHA and under FIFO to
    the end: total epochs, wall time, and the rank of ASHA's winner among the full trainings;
(b) random vs TPE at the same --time-budget: best val_acc reached, and the time each took to
    reach the random search's best;
(c) Ray's overhead: each sweep's wall time against the sum of its trials' training and
    evaluation seconds divided by the concurrency.

The space is written by the script: airbench fitted to ~100k parameters, bf16 + channels-last
on the CPU, a few epochs, with ``lr`` and ``label_smoothing`` searched.

    python benchmarks/sweep_efficiency.py --data-dir ../shared/data/cifar10          # ~20 min on 2 cores
    python benchmarks/sweep_efficiency.py --quick                                  # ~3 min smoke run
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from sweep_runs import HeldRay, SweepRun, cli_env, default_data, read_sweep, run_cli, sweep_command  # noqa: E402

from raycifar.data import default_data_dir  # noqa: E402

SPACE = """\
description: sweep_efficiency benchmark; airbench fitted to {budget} parameters, lr and label smoothing searched
budget: {budget}
num_samples: {num_samples}
arch: {{model: airbench, base_width: fit, width_multiple: 8}}
train:
  optimizer: sgd
  lr: {{loguniform: [0.02, 0.8]}}
  nesterov: true
  weight_decay: 5.0e-4
  decay_norm_and_bias: false
  batch_size: 256
  epochs: {epochs}
  schedule: onecycle
  label_smoothing: {{uniform: [0.0, 0.3]}}
  precision: {precision}
  channels_last: true
  compile: false
augment: {{crop_padding: 4, flip: true, cutout: 0}}
scheduler: {{grace_period: {grace_period}, reduction_factor: {reduction_factor}}}
{searcher}"""

QUICK = {"configs": 3, "epochs": 2, "budget_s": 60, "grace_period": 1}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=default_data(default_data_dir()),
        help="default: ../shared/data/cifar10 if there, else raycifar's",
    )
    parser.add_argument("--configs", type=int, default=8, help="(a): configs run under ASHA and under FIFO")
    parser.add_argument("--epochs", type=int, default=6, help="epochs of every trial")
    parser.add_argument("--budget-s", type=int, default=240, help="(b): the --time-budget of each searcher, seconds")
    parser.add_argument("--tpe-startup", type=int, default=3, help="(b): TPE's random proposals before it models")
    parser.add_argument("--grace-period", type=int, default=1, help="ASHA's grace period (epochs)")
    parser.add_argument("--reduction-factor", type=int, default=2, help="ASHA's reduction factor")
    parser.add_argument("--params", type=int, default=100_000, help="the parameter budget the model is fitted to")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16", help="bf16 needs AVX512-BF16 or AMX")
    parser.add_argument("--concurrency", type=int, default=2, help="trials at once (1 CPU each)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help=f"a smoke run: {QUICK}")
    parser.add_argument(
        "--keep",
        type=Path,
        help="keep the space files, logs and results/ in this folder (default: a temp folder, removed)",
    )
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    if args.quick:
        args.configs, args.epochs, args.budget_s, args.grace_period = QUICK.values()
    return args


def write_space(folder: Path, args: argparse.Namespace, name: str, num_samples: int | str, searcher: str = "") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(SPACE.format(
        budget=args.params, num_samples=num_samples, epochs=args.epochs, precision=args.precision,
        grace_period=args.grace_period, reduction_factor=args.reduction_factor, searcher=searcher,
    ))  # fmt: skip
    return path


def say(args: argparse.Namespace, line: str) -> None:
    if args.format == "table":
        print(line, flush=True)


def run_sweeps(args: argparse.Namespace, folder: Path, results: Path) -> tuple[dict[str, SweepRun], dict, Path]:
    """The four sweeps, one after another on one held Ray; returns them, each command's wall
    seconds, and (a)'s space file."""
    fixed = write_space(folder, args, "bench_fixed", args.configs)
    budget = write_space(folder, args, "bench_budget", "unlimited")
    tpe = write_space(
        folder, args, "bench_tpe", "unlimited", f"searcher: {{name: tpe, n_startup_trials: {args.tpe_startup}}}\n"
    )
    common = ["--seed", str(args.seed), "--max-concurrent-trials", str(args.concurrency), "--cpus-per-trial", "1"]
    plans = {
        "asha": (fixed, ["--scheduler", "asha"]),
        "fifo": (fixed, ["--scheduler", "fifo"]),
        "random": (budget, ["--time-budget", f"{args.budget_s}s"]),
        "tpe": (tpe, ["--time-budget", f"{args.budget_s}s"]),
    }
    sweeps, command_wall = {}, {}
    with HeldRay(args.concurrency) as ray:
        say(args, f"local Ray with {args.concurrency} CPUs up in {ray.start_seconds:.1f} s; results in {results}")
        for name, (space, extra) in plans.items():
            say(args, f"sweep {name} ...")
            command = sweep_command(space, args.data_dir, results, name, ray.gcs, *common, *extra)
            command_wall[name] = run_cli(command, cli_env(ray.tmpdir), folder / f"{name}.log")
            sweeps[name] = read_sweep(results, name)
            say(args, f"  {len(sweeps[name].trials)} trials, {sweeps[name].epochs()} epochs, "
                      f"{command_wall[name]:.0f} s (command log {folder / (name + '.log')})")  # fmt: skip
    return sweeps, command_wall, fixed


def eval_seconds_per_epoch(space: Path, args: argparse.Namespace) -> float:
    """Median seconds of one validation pass of (a)'s model on the validation split, in this
    process on 1 thread (as a trial with 1 CPU): ``val_acc`` has no time of its own."""
    import torch

    from raycifar.data import DeviceLoader, read_part, stratified_split
    from raycifar.search.sample import sample_configs
    from raycifar.space.find import load_space
    from raycifar.train.loop import Training
    from raycifar.train.runtime import global_settings
    from raycifar.train.scoring import EVAL_BATCH_SIZE, score

    config = sample_configs(load_space(str(space)), 1, args.seed, args.data_dir.resolve()).configs[0]
    train = read_part(args.data_dir, "train")
    _, val_indices = stratified_split(train.labels, config.val_fraction, config.split_seed)
    device, threads = torch.device("cpu"), torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loader = DeviceLoader(train.subset(val_indices), EVAL_BATCH_SIZE, device, train=False)
        with global_settings(config.train, config.seed):
            run = Training(config, loader, loader, device)
            times = []
            for _ in range(3):
                started = time.perf_counter()
                score(run.evaluated, loader, config.train.tta, run.runtime)
                times.append(time.perf_counter() - started)
    finally:
        torch.set_num_threads(threads)
    return statistics.median(times)


def compare_schedulers(asha: SweepRun, fifo: SweepRun) -> dict:
    """(a): per config (matched by trial seed), epochs and best val_acc under each scheduler;
    the FIFO rank of ASHA's winner (1 = FIFO's best)."""
    fifo_by_seed = {t.config["seed"]: t for t in fifo.trials.values()}
    rows = []
    for trial in sorted(asha.trials.values(), key=lambda t: t.config["seed"]):
        full = fifo_by_seed.get(trial.config["seed"])
        rows.append({"seed": trial.config["seed"], "lr": trial.searched()[0], "label_smoothing": trial.searched()[1],
                     "same_config": full is not None and full.searched() == trial.searched(),
                     "asha_epochs": len(trial.results), "asha_best": trial.best_val_acc(),
                     "fifo_epochs": len(full.results) if full else 0, "fifo_best": full.best_val_acc() if full else None})  # fmt: skip
    order = sorted((r for r in rows if r["fifo_best"] is not None), key=lambda r: -r["fifo_best"])
    for rank, row in enumerate(order, start=1):
        row["fifo_rank"] = rank
    winner = max(rows, key=lambda r: r["asha_best"])
    return {"configs": rows, "asha_winner_seed": winner["seed"], "asha_winner_fifo_rank": winner.get("fifo_rank"),
            "identical_configs": all(r["same_config"] for r in rows) and len(rows) == len(fifo.trials)}  # fmt: skip


def time_to_reach(sweep: SweepRun, target: float) -> float | None:
    """Seconds from the sweep's start to its first epoch with val_acc >= target (None: never)."""
    return next((seconds for seconds, acc in sweep.timeline() if acc >= target), None)


def compare_searchers(random: SweepRun, tpe: SweepRun) -> dict:
    target = max((acc for _, acc in random.timeline()), default=float("nan"))
    return {
        name: {
            "trials": len(s.trials),
            "epochs": s.epochs(),
            "best": max((acc for _, acc in s.timeline()), default=float("nan")),
            "wall_s": s.wall_seconds,
            "to_random_best_s": time_to_reach(s, target),
        }  # fmt: skip
        for name, s in (("random", random), ("tpe", tpe))
    }


def overhead(sweep: SweepRun, eval_s: float, concurrency: int) -> dict:
    """(c): the sweep's wall time against (training + evaluation seconds) / concurrency."""
    train_s = sum(r["train_seconds"] for t in sweep.trials.values() for r in t.results)
    evaluation = eval_s * sweep.epochs()
    ideal = (train_s + evaluation) / concurrency
    return {"wall_s": sweep.wall_seconds, "train_s": train_s, "eval_s": evaluation, "ideal_s": ideal,
            "overhead_s": sweep.wall_seconds - ideal, "overhead_share": 1 - ideal / sweep.wall_seconds}  # fmt: skip


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def print_tables(
    args: argparse.Namespace, sweeps: dict[str, SweepRun], walls: dict, a: dict, b: dict, c: dict, eval_s: float
) -> None:
    asha, fifo = sweeps["asha"], sweeps["fifo"]
    print(f"\n(a) the same {args.configs} configs (random searcher, seed {args.seed}), {args.epochs} epochs each, "
          f"{args.concurrency} at a time; ASHA grace {args.grace_period}, reduction {args.reduction_factor}; "
          f"configs identical in both: {'yes' if a['identical_configs'] else 'NO'}")  # fmt: skip
    print(
        f"{'trial seed':>10} {'lr':>7} {'smooth':>7} {'ASHA ep':>8} {'ASHA best':>10} {'FIFO ep':>8} {'FIFO best':>10} {'FIFO rank':>10}"
    )
    for r in a["configs"]:
        mark = "  <- ASHA's winner" if r["seed"] == a["asha_winner_seed"] else ""
        fifo_best = "-" if r["fifo_best"] is None else f"{r['fifo_best']:.4f}"
        print(f"{r['seed']:>10} {r['lr']:>7.4f} {r['label_smoothing']:>7.3f} {r['asha_epochs']:>8} {r['asha_best']:>10.4f} "
              f"{r['fifo_epochs']:>8} {fifo_best:>10} {r.get('fifo_rank', '-'):>10}{mark}")  # fmt: skip
    print(f"{'scheduler':<10} {'trials':>6} {'epochs':>7} {'sweep wall s':>13} {'command s':>10} {'best val_acc':>13}")
    for name, s in (("asha", asha), ("fifo", fifo)):
        best = max(t.best_val_acc() for t in s.trials.values())
        print(
            f"{name:<10} {len(s.trials):>6} {s.epochs():>7} {s.wall_seconds:>13.0f} {walls[name]:>10.0f} {best:>13.4f}"
        )
    print(f"ASHA: x{asha.epochs() / fifo.epochs():.2f} of FIFO's epochs, x{asha.wall_seconds / fifo.wall_seconds:.2f} of its "
          f"sweep wall time; its winner ranks {a['asha_winner_fifo_rank']} of {len(fifo.trials)} among the full trainings")  # fmt: skip

    print(f"\n(b) random vs TPE (first {args.tpe_startup} proposals random), --time-budget {args.budget_s}s each, ASHA")
    print(
        f"{'searcher':<10} {'trials':>6} {'epochs':>7} {'sweep wall s':>13} {'best val_acc':>13} {'s to random best':>17}"
    )
    for name, row in b.items():
        print(f"{name:<10} {row['trials']:>6} {row['epochs']:>7} {row['wall_s']:>13.0f} {row['best']:>13.4f} "
              f"{_seconds(row['to_random_best_s']):>17}")  # fmt: skip

    print(f"\n(c) Ray's overhead at {args.concurrency} trials at once: ideal = (train s + eval s) / {args.concurrency}; "
          f"eval {eval_s:.2f} s per epoch, measured in-process on 1 thread")  # fmt: skip
    print(
        f"{'sweep':<10} {'epochs':>7} {'train s':>8} {'eval s':>7} {'ideal s':>8} {'sweep wall s':>13} {'overhead s':>11} {'share':>6}"
    )
    for name, row in c.items():
        print(f"{name:<10} {sweeps[name].epochs():>7} {row['train_s']:>8.0f} {row['eval_s']:>7.0f} {row['ideal_s']:>8.0f} "
              f"{row['wall_s']:>13.0f} {row['overhead_s']:>11.0f} {row['overhead_share']:>6.0%}")  # fmt: skip
    print("(sweep wall: the sweep record's start to end, Tune's part of the command; the command adds "
          "reading data, promotion and the report)")  # fmt: skip


def main() -> None:
    args = parse_args()
    args.data_dir = args.data_dir.resolve()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="rcse", dir="/tmp") as scratch:
        folder = (args.keep or Path(scratch)).resolve()  # space files, command logs, results/
        folder.mkdir(parents=True, exist_ok=True)
        results = folder / "results"
        sweeps, walls, fixed = run_sweeps(args, folder, results)
        eval_s = eval_seconds_per_epoch(fixed, args)
    a = compare_schedulers(sweeps["asha"], sweeps["fifo"])
    b = compare_searchers(sweeps["random"], sweeps["tpe"])
    c = {name: overhead(s, eval_s, args.concurrency) for name, s in sweeps.items()}
    if args.format == "json":
        print(json.dumps({"schedulers": a, "searchers": b, "overhead": c, "eval_s_per_epoch": eval_s,
                          "command_wall_s": walls, "settings": {k: str(v) for k, v in vars(args).items()}}, indent=2))  # fmt: skip
        return
    print_tables(args, sweeps, walls, a, b, c, eval_s)
    print(f"\nwhole benchmark: {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
