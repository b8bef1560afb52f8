"""Training-step throughput (images/s) of a few models on this machine's device, with and
without channels-last and torch.compile, side by side in one run.

Each variant runs raycifar's own training step (``raycifar.train.loop.train_epoch``: batched
augmentation on the device, forward, loss, backward, SGD step, schedule step) on random
images held on the device. Every variant is built and warmed up first (compilation happens
there and is reported apart; dynamo reuses what it compiled for an earlier variant of the same
model class). Then the variants take turns, ``--rounds`` times ``--steps`` timed batches
each, and the median round counts: a busy machine slows every variant alike.

    python benchmarks/train_throughput.py
    python benchmarks/train_throughput.py --models resnet8-w16 --variants eager,channels_last --steps 5
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import DeviceLoader, ImageSet
from raycifar.models.registry import model_name
from raycifar.train.epoch import train_epoch
from raycifar.train.loop import Training
from raycifar.train.runtime import global_settings

MODELS = {
    model_name(config): config
    for config in (
        ModelConfig(depths=(1, 1, 1), widths=(16, 32, 64)),
        ModelConfig(depths=(1, 1, 1, 1), widths=(32, 64, 128, 256)),
        ModelConfig(depths=(2, 2, 2), widths=(64, 128, 256)),
    )
}
VARIANTS = {
    "eager": {"channels_last": False, "compile": False},
    "channels_last": {"channels_last": True, "compile": False},
    "compile": {"channels_last": False, "compile": True},
    "compile+channels_last": {"channels_last": True, "compile": True},
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--models", default=",".join(list(MODELS)[:2]), help=f"comma-separated, from {', '.join(MODELS)}"
    )
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated, from {', '.join(VARIANTS)}")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per variant")
    parser.add_argument("--warmup-steps", type=int, default=3, help="untimed steps first (compilation happens here)")
    parser.add_argument(
        "--rounds", type=int, default=5, help="timed rounds per variant, taken in turns; the median counts"
    )
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default="auto", help="as train.precision")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    for name in args.models.split(","):
        if name not in MODELS:
            parser.error(f"--models: unknown model {name!r} (known: {', '.join(MODELS)})")
    for name in args.variants.split(","):
        if name not in VARIANTS:
            parser.error(f"--variants: unknown variant {name!r} (known: {', '.join(VARIANTS)})")
    return args


def random_loader(batches: int, batch_size: int, device: torch.device, seed: int) -> DeviceLoader:
    rng = np.random.default_rng(seed)
    n = batches * batch_size
    images = ImageSet(rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, n))
    return DeviceLoader(images, batch_size, device, train=True, seed=seed)


@dataclass
class Measured:
    """One model in one variant, built and warmed up, with its timed rounds."""

    model: str
    variant: str
    run: Training
    loader: DeviceLoader
    warmup_s: float
    rounds_s: list[float] = field(default_factory=list)


def timed_epoch(run: Training, loader: DeviceLoader) -> float:
    started = time.perf_counter()
    train_epoch(run.model, loader, run.optimizer, run.schedule, run.train, run.batch_loss, run.runtime, run.average)
    return time.perf_counter() - started


def build(model: ModelConfig, variant: str, args: argparse.Namespace) -> Measured:
    """A warmed-up training run of ``model`` in ``variant``."""
    device = torch.device(args.device)
    train = TrainConfig(batch_size=args.batch_size, precision=args.precision, **VARIANTS[variant])
    config = TrialConfig(space="bench", data_dir="-", params=0, model=model, train=train)
    timed = random_loader(args.steps, args.batch_size, device, seed=1)
    run = Training(config, timed, timed, device)
    warmup_s = timed_epoch(run, random_loader(args.warmup_steps, args.batch_size, device, seed=2))
    return Measured(model_name(model), variant, run, timed, warmup_s)


def measure(args: argparse.Namespace) -> list[dict]:
    """Images/s (median round) and warm-up seconds of every model and variant."""
    with global_settings(TrainConfig(), seed=0):
        variants = [build(MODELS[m], v, args) for m in args.models.split(",") for v in args.variants.split(",")]
        for _ in range(args.rounds):
            for entry in variants:
                entry.rounds_s.append(timed_epoch(entry.run, entry.loader))
    rows = []
    for entry in variants:
        rows.append({
            "model": entry.model,
            "params": sum(p.numel() for p in entry.run.net.parameters()),
            "variant": entry.variant,
            "images_per_s": args.steps * args.batch_size / statistics.median(entry.rounds_s),
            "warmup_s": entry.warmup_s,
        })  # fmt: skip
    return rows


def main() -> None:
    args = parse_args()
    rows = measure(args)
    for row in rows:
        baseline = next(r for r in rows if r["model"] == row["model"])
        row["vs_first"] = row["images_per_s"] / baseline["images_per_s"]
    device = torch.cuda.get_device_name() if args.device.startswith("cuda") else f"{platform.processor() or 'cpu'}"
    header = {
        "device": device,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "batch_size": args.batch_size,
        "steps": args.steps,
        "rounds": args.rounds,
        "precision": args.precision,
    }
    if args.format == "json":
        print(json.dumps({**header, "results": rows}, indent=2))
        return
    print("  ".join(f"{k}={v}" for k, v in header.items()))
    print("images/s: median round; x first: relative to the model's first variant; warm-up: includes compiling")
    print(f"{'model':<14} {'params':>10} {'variant':<22} {'images/s':>10} {'x first':>8} {'warm-up s':>10}")
    for r in rows:
        print(
            f"{r['model']:<14} {r['params']:>10,} {r['variant']:<22} {r['images_per_s']:>10.1f} "
            f"{r['vs_first']:>8.2f} {r['warmup_s']:>10.1f}"
        )


if __name__ == "__main__":
    main()
