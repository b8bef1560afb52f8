"""How fast ``raycifar predict`` runs on the CPU: a folder of PNG files through a smoke-sized
model (resnet8, width 16) and a ~5M-parameter one (resnet18 fitted to 5M), side by side, with
the time spent reading images and the time spent in the model apart.

    python benchmarks/predict_speed.py [--images 10000] [--data-dir D] [--budget 5000000]
                                       [--tta] [--threads N] [--format table|json]

The PNGs are the test images of --data-dir (default: the shared CIFAR-10 subset when it is
there, else synthetic images) repeated up to --images, written once to a temporary folder.
Weights are random: speed does not depend on them. Runs :func:`raycifar.predict.predict`, the
function the command calls, in batches of 500 on all cores (float32).
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from raycifar.cluster.session import available_cpus
from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import read_part
from raycifar.entries.predict import find_inputs, predict_images
from raycifar.models.budget import count_macs, count_params, fit_widths
from raycifar.models.registry import model_name, variant_config
from raycifar.models.resnet import build_model

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10"


def source_images(data_dir: Path | None) -> tuple[np.ndarray, str]:
    """uint8 N x 32 x 32 x 3 test images and where they came from."""
    folder = data_dir or (SHARED if SHARED.is_dir() else None)
    if folder is not None:
        return read_part(folder, "test").images, str(folder)
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, size=(1000, 32, 32, 3), dtype=np.uint8), "synthetic (uniform noise)"


def write_pngs(folder: Path, images: np.ndarray, count: int) -> float:
    """``count`` PNGs named 0.png, 1.png, ... (``images`` repeated); returns the seconds taken."""
    started = time.perf_counter()
    for index in range(count):
        Image.fromarray(images[index % len(images)]).save(folder / f"{index}.png")
    return time.perf_counter() - started


def models(budget: int) -> list[ModelConfig]:
    """The smoke-sized resnet8 (width 16) and resnet18 fitted to ``budget`` parameters."""
    return [variant_config("resnet20", depths=(1, 1, 1)), fit_widths(variant_config("resnet18"), budget)]


def measure(folder: Path, model_config: ModelConfig, tta: bool, threads: int) -> dict:
    config = TrialConfig(
        space="bench", data_dir=str(folder), params=count_params(model_config), model=model_config,
        train=TrainConfig(epochs=1),
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(model_config).eval()
    inputs = find_inputs(folder, config)
    started = time.perf_counter()
    found = predict_images(model, config, inputs, tta="flip" if tta else "none", threads=threads)
    total = time.perf_counter() - started
    return {
        "model": model_name(model_config),
        "params": count_params(model_config),
        "mmacs_per_image": count_macs(model_config) / 1e6,
        "images": len(found.ids),
        "read_s": found.decode_seconds,
        "model_s": found.model_seconds,
        "total_s": total,
        "images_per_s": len(found.ids) / total,
        "model_images_per_s": len(found.ids) / found.model_seconds,
        "read_images_per_s": len(found.ids) / found.decode_seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--data-dir", type=Path, default=None)
    parser.add_argument("--budget", type=int, default=5_000_000)
    parser.add_argument("--tta", action="store_true", help="flip TTA (two forward passes per image)")
    parser.add_argument("--threads", type=int, default=available_cpus())
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()
    images, origin = source_images(args.data_dir)
    with tempfile.TemporaryDirectory(prefix="predict_speed") as tmp:
        folder = Path(tmp)
        written = write_pngs(folder, images, args.images)
        rows = [measure(folder, config, args.tta, args.threads) for config in models(args.budget)]
    if args.format == "json":
        print(json.dumps(rows, indent=2))
        return
    print(f"{args.images:,} PNGs from {origin} (written in {written:.1f} s); {args.threads} threads; TTA {args.tta}")
    header = f"{'model':<18}{'params':>11}{'MMACs/img':>11}{'read s':>8}{'model s':>9}{'total s':>9}"
    print(header + f"{'images/s':>10}{'model img/s':>13}")
    for r in rows:
        print(
            f"{r['model']:<18}{r['params']:>11,}{r['mmacs_per_image']:>11.1f}{r['read_s']:>8.1f}{r['model_s']:>9.1f}"
            f"{r['total_s']:>9.1f}{r['images_per_s']:>10,.0f}{r['model_images_per_s']:>13,.0f}"
        )


if __name__ == "__main__":
    main()
