"""Training time until the test accuracy first reaches a target, for one raycifar config, with
a per-epoch log; then the same config for the same epochs through ``raycifar train`` on Ray
Train, so that Ray's overhead is visible next to it.

The in-process run is raycifar's own loop (:class:`raycifar.train.loop.Training`, the code each
Ray Train worker runs) on the whole training set, evaluated on the test set after every
epoch; only training counts as time (evaluation does not). Before it, a few untimed steps
on a throwaway model compile the model and tune cuDNN, as the fast CIFAR trainers do.
The accuracy that counts is ``test_acc_tta`` when the config has test-time augmentation.

    python benchmarks/time_to_accuracy.py                      # fast_space, 94% on CIFAR-10 (a GPU job)
    python benchmarks/time_to_accuracy.py --config benchmarks/fast_cpu.yaml --target 0.5 \\
        --train-subset 5000 --test-subset 1000 --data-dir ../shared/data/cifar10     # a CPU-sized check
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from raycifar.config import TrialConfig, with_settings
from raycifar.data import DeviceLoader, ImageSet, default_data_dir, read_part, stratified_split
from raycifar.errors import UserError
from raycifar.results.layout import run_dir
from raycifar.search.sample import trial_config_from_file
from raycifar.train.epoch import train_epoch
from raycifar.train.loop import Training
from raycifar.train.run import RUN_METRICS_FILE
from raycifar.train.runtime import global_settings
from raycifar.train.scoring import EVAL_BATCH_SIZE

WARMUP_STEPS = 3


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--config", default="fast_space", help="space file with one value per key (path or shipped name)"
    )
    parser.add_argument("--data-dir", type=Path, default=default_data_dir())
    parser.add_argument("--target", type=float, default=0.94, help="test accuracy to reach")
    parser.add_argument(
        "--set", dest="settings", action="append", default=[], help="KEY=VALUE training key, as raycifar train"
    )
    parser.add_argument("--train-subset", type=int, help="use only the first N training images")
    parser.add_argument("--test-subset", type=int, help="use only the first N test images")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-ray", dest="ray", action="store_false", help="skip the raycifar train comparison")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    return parser.parse_args()


def load_data(args: argparse.Namespace) -> tuple[ImageSet, ImageSet]:
    train, test = read_part(args.data_dir, "train"), read_part(args.data_dir, "test")
    if args.train_subset:
        train = train.subset(np.arange(min(args.train_subset, len(train))))
    if args.test_subset:
        test = test.subset(np.arange(min(args.test_subset, len(test))))
    return train, test


def warm_up(config: TrialConfig, train: ImageSet, device: torch.device) -> float:
    """A few steps on a throwaway model: compiles kernels and tunes cuDNN before timing."""
    steps = train.subset(np.arange(min(len(train), WARMUP_STEPS * config.train.batch_size)))
    loader = DeviceLoader(steps, config.train.batch_size, device, train=True, seed=config.seed)
    started = time.perf_counter()
    with global_settings(config.train, config.seed):
        run = Training(config, loader, loader, device)
        train_epoch(run.model, loader, run.optimizer, run.schedule, config.train, run.batch_loss, run.runtime, run.average)
    return time.perf_counter() - started


def in_process(config: TrialConfig, train: ImageSet, test: ImageSet, args: argparse.Namespace) -> dict:
    """Train until the test accuracy reaches the target (or the config's epochs run out)."""
    device = torch.device(args.device)
    warmup_seconds = warm_up(config, train, device)
    started = time.perf_counter()
    train_loader = DeviceLoader(train, config.train.batch_size, device, train=True, seed=config.seed)
    test_loader = DeviceLoader(test, EVAL_BATCH_SIZE, device, train=False)
    log, train_seconds, reached = [], 0.0, None
    with global_settings(config.train, config.seed):
        run = Training(config, train_loader, test_loader, device)
        for epoch in range(config.train.epochs):
            metrics = run.run_epoch(epoch)
            train_seconds += metrics["train_seconds"]
            accuracy = metrics.get("val_acc_tta", metrics["val_acc"])
            log.append({"epoch": epoch + 1, "train_s": train_seconds, "test_acc": metrics["val_acc"],
                        "test_acc_tta": metrics.get("val_acc_tta"), "train_loss": metrics["train_loss"]})  # fmt: skip
            if args.format == "table":
                print(_epoch_line(log[-1]), flush=True)
            if accuracy >= args.target:
                reached = train_seconds
                break
    return {
        "epochs": len(log),
        "train_images": len(train) * len(log),
        "train_s": train_seconds,
        "wall_s": time.perf_counter() - started,
        "warmup_s": warmup_seconds,
        "reached_s": reached,
        "final_acc": accuracy,
        "log": log,
    }


def _epoch_line(entry: dict) -> str:
    tta = "" if entry["test_acc_tta"] is None else f"  test_acc_tta {entry['test_acc_tta']:.4f}"
    return (
        f"epoch {entry['epoch']:>3}  train {entry['train_s']:8.2f} s  train_loss {entry['train_loss']:.4f}"
        f"  test_acc {entry['test_acc']:.4f}{tta}"
    )


def write_cifar_folder(train: ImageSet, test: ImageSet, root: Path) -> Path:
    """``train`` and ``test`` as a CIFAR-10 python-version folder, for ``raycifar train --data-dir``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    for name, part in (("data_batch_1", train), ("test_batch", test)):
        rows = part.images.transpose(0, 3, 1, 2).reshape(len(part), 3072)
        batch = {b"batch_label": name.encode(), b"data": rows, b"labels": part.labels.tolist()}
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    return root


def through_ray_train(
    config: TrialConfig, epochs: int, train: ImageSet, data_dir: Path, args: argparse.Namespace
) -> dict:
    """The same config for ``epochs`` epochs through the ``raycifar train`` command."""
    with tempfile.TemporaryDirectory(prefix="rcb", dir="/tmp") as scratch:  # short: Ray's socket paths
        results = Path(scratch) / "results"
        command = [sys.executable, "-m", "raycifar", "train", args.config, "--data-dir", str(data_dir),
                   "--results-dir", str(results), "--epochs", str(epochs), "--name", "bench", "--no-dashboard",
                   "--cpus-per-worker", str(torch.get_num_threads())]  # fmt: skip
        command += [f"--set={setting}" for setting in args.settings]
        if args.device.startswith("cuda"):
            command += ["--gpus-per-worker", "1"]
        started = time.perf_counter()
        done = subprocess.run(
            command, check=False, capture_output=True, text=True, env={**os.environ, "TMPDIR": scratch}
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            raise SystemExit(f"raycifar train failed ({done.returncode}):\n{done.stderr[-3000:]}")
        log = [json.loads(line) for line in (run_dir(results, "bench") / RUN_METRICS_FILE).read_text().splitlines()]
    train_split, _ = stratified_split(train.labels, config.val_fraction, config.split_seed)
    return {
        "epochs": len(log),
        "train_images": len(train_split) * len(log),
        "train_s": sum(m["train_seconds"] for m in log),
        "wall_s": wall,
        "final_acc": log[-1].get("val_acc_tta", log[-1]["val_acc"]),
    }


def print_summary(config: TrialConfig, args: argparse.Namespace, direct: dict, ray_run: dict | None) -> None:
    reached = direct["reached_s"]
    verdict = (
        f"reached {args.target:.4f} after {reached:.2f} s of training ({direct['epochs']} epochs)"
        if reached is not None
        else f"did not reach {args.target:.4f} in {direct['epochs']} epochs (final {direct['final_acc']:.4f})"
    )
    print(f"\n{verdict}; untimed warm-up {direct['warmup_s']:.1f} s")
    print(f"{'path':<30} {'epochs':>6} {'images':>9} {'train s':>9} {'images/s':>9} {'wall s':>8} {'final acc':>9}")
    rows = [("in-process (test set)", direct)] + ([("raycifar train, Ray (val split)", ray_run)] if ray_run else [])
    for label, r in rows:
        print(
            f"{label:<30} {r['epochs']:>6} {r['train_images']:>9,} {r['train_s']:>9.2f} "
            f"{r['train_images'] / r['train_s']:>9.0f} {r['wall_s']:>8.1f} {r['final_acc']:>9.4f}"
        )
    if ray_run:
        print(
            f"Ray Train vs in-process: wall x{ray_run['wall_s'] / direct['wall_s']:.2f}, "
            f"training images/s x{(ray_run['train_images'] / ray_run['train_s']) / (direct['train_images'] / direct['train_s']):.2f}"
        )


def main() -> None:
    args = parse_args()
    try:
        config = with_settings(trial_config_from_file(args.config, args.data_dir.resolve(), seed=0), args.settings)
        train, test = load_data(args)
    except UserError as err:
        raise SystemExit(f"error: {err}") from None
    if args.format == "table":
        print(f"config {args.config}: {config.params:,} params, batch {config.train.batch_size}, up to "
              f"{config.train.epochs} epochs; {len(train):,} train / {len(test):,} test images; device {args.device}, "
              f"{torch.get_num_threads()} threads; target {args.target}")  # fmt: skip
    direct = in_process(config, train, test, args)
    ray_run = None
    if args.ray:
        subset = args.train_subset or args.test_subset
        with tempfile.TemporaryDirectory() as scratch:
            data_dir = write_cifar_folder(train, test, Path(scratch)) if subset else args.data_dir.resolve()
            ray_run = through_ray_train(config, direct["epochs"], train, data_dir, args)
    if args.format == "json":
        print(json.dumps({"config": config.model_dump(mode="json"), "target": args.target, "in_process": direct,
                          "raycifar_train": ray_run}, indent=2))  # fmt: skip
        return
    print_summary(config, args, direct, ray_run)


if __name__ == "__main__":
    main()
