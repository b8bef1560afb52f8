"""Loader throughput, side by side in one run: images/s of each loader on the same data with
the same augmentation (random 4-pixel translation + horizontal flip, then normalization to
float32 N x 3 x 32 x 32), batch 512, over several epochs after a warm-up.

    python benchmarks/loaders.py --data-dir ../shared/data/cifar10          # a table
    python benchmarks/loaders.py --data-dir ../shared/data/cifar10 --format json

Loaders, each given the same CPU budget (``--threads``: torch threads, DataLoader worker
processes, or FFCV's numba threads):

- ``torchvision``: raycifar's torchvision loader, a ``DataLoader`` with per-image v2 transforms;
- ``ffcv-example``: FFCV with the CIFAR example's tail (``Convert`` + torchvision ``Normalize``);
- ``ffcv-native``: FFCV with its JIT ``NormalizeImage`` (raycifar's ffcv loader);
- ``device``: raycifar's device loader (whole split as one tensor, batched augmentation),
  which on a CPU makes its batches on one thread;
- ``device-threads``: the same with ``--threads`` threads, to show why it uses one.

Epochs are interleaved round by round (each loader runs epoch k before any runs k+1), so
load from other processes spreads over all loaders alike. Reported: median images/s
over the timed epochs, the range, and the ratio to ``torchvision``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch

from raycifar.config import AugmentConfig
from raycifar.data import CATALOG, DeviceLoader, ImageSet, read_part
from raycifar.data.ffcv_loader import FfcvLoader, write_beton
from raycifar.data.torchvision_loader import TorchvisionLoader

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"
STATS = CATALOG["cifar10"]


def _ffcv_example(beton: Path, batch_size: int, device: torch.device, threads: int):
    """FFCV's CIFAR example pipeline, without cutout: flip, translate, Convert, torchvision Normalize."""
    import torchvision.transforms
    from ffcv.fields.decoders import IntDecoder, SimpleRGBImageDecoder
    from ffcv.loader import Loader, OrderOption
    from ffcv.transforms import (
        Convert,
        RandomHorizontalFlip,
        RandomTranslate,
        Squeeze,
        ToDevice,
        ToTensor,
        ToTorchImage,
    )

    to_device = [ToDevice(device, non_blocking=True)] if device.type != "cpu" else []
    image = [
        SimpleRGBImageDecoder(), RandomHorizontalFlip(), RandomTranslate(padding=4, fill=(0, 0, 0)),
        ToTensor(), *to_device, ToTorchImage(), Convert(torch.float32),
        torchvision.transforms.Normalize([m * 255 for m in STATS.mean], [s * 255 for s in STATS.std]),
    ]  # fmt: skip
    label = [IntDecoder(), ToTensor(), Squeeze(), *to_device]
    return Loader(
        str(beton), batch_size=batch_size, num_workers=threads, order=OrderOption.RANDOM, seed=0,
        drop_last=False, pipelines={"image": image, "label": label},
    )  # fmt: skip


def make_loaders(
    images: ImageSet, beton: Path | None, args: argparse.Namespace
) -> dict[str, Iterable]:
    """Every loader under test, on the same images, with the same augmentation."""
    device, size = torch.device(args.device), args.batch_size
    stats = {"mean": STATS.mean, "std": STATS.std}
    crop_flip = AugmentConfig(crop_padding=4, flip=True)
    loaders: dict[str, Iterable] = {
        "torchvision": TorchvisionLoader(
            images, size, device, True, augment=crop_flip, workers=args.threads, **stats
        ),
    }
    if beton is not None:
        loaders["ffcv-example"] = _ffcv_example(beton, size, device, args.threads)
        loaders["ffcv-native"] = FfcvLoader(
            beton,
            size,
            device,
            True,
            padding=4,
            flip=True,
            workers=args.threads,
            **stats,
        )
    loaders["device"] = DeviceLoader(
        images, size, device, True, padding=4, flip=True, **stats
    )
    if device.type == "cpu" and args.threads > 1:
        loaders["device-threads"] = DeviceLoader(
            images,
            size,
            device,
            True,
            padding=4,
            flip=True,
            **stats,
            threads=args.threads,
        )
    return loaders


def time_epoch(loader: Iterable, device: torch.device) -> tuple[float, int]:
    """Seconds for one full pass (every batch received, on the device) and images seen."""
    seen = 0
    started = time.perf_counter()
    for batch, _ in loader:
        seen += len(batch)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - started, seen


def run(
    loaders: dict[str, Iterable],
    warmup: int,
    epochs: int,
    device: torch.device,
    log: Callable,
) -> dict:
    """Warm-up epochs, then ``epochs`` timed rounds; images/s per loader and epoch."""
    rates: dict[str, list[float]] = {name: [] for name in loaders}
    for round_index in range(warmup + epochs):
        for name, loader in loaders.items():
            seconds, seen = time_epoch(loader, device)
            if round_index >= warmup:
                rates[name].append(seen / seconds)
            log(
                f"{'warm-up' if round_index < warmup else 'epoch'} {round_index}: {name} {seen / seconds:,.0f} images/s"
            )
    return rates


def summarise(rates: dict[str, list[float]]) -> list[dict]:
    baseline = statistics.median(rates["torchvision"])
    return [
        {
            "loader": name,
            "images_per_s": round(statistics.median(values)),
            "min": round(min(values)),
            "max": round(max(values)),
            "vs_torchvision": round(statistics.median(values) / baseline, 2),
        }
        for name, values in rates.items()
    ]


def load_images(data_dir: Path | None, count: int) -> tuple[ImageSet, str]:
    """The training part of ``data_dir`` (default: the shared real subset), else random images."""
    folder = data_dir or (SHARED_CIFAR10 if SHARED_CIFAR10.exists() else None)
    if folder is not None:
        images = read_part(folder, "train")
        return images.subset(np.arange(min(count, len(images)))), str(folder)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, size=(count, 32, 32, 3), dtype=np.uint8)
    return ImageSet(pixels, rng.integers(0, 10, size=count)), "random images"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=None,
        help="CIFAR-10 folder (default: ../shared/data/cifar10)",
    )
    parser.add_argument(
        "--images", type=int, default=10_000, help="images per epoch (default 10000)"
    )
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument(
        "--epochs", type=int, default=5, help="timed epochs per loader (default 5)"
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=1,
        help="untimed epochs first (FFCV compiles in its first)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="CPU threads/workers each loader may use (default 2)",
    )
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--format", choices=("table", "json"), default="table")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    images, origin = load_images(args.data_dir, args.images)
    log = (
        (lambda line: print(line, file=sys.stderr)) if args.format == "json" else print
    )
    with tempfile.TemporaryDirectory() as scratch:
        beton = None
        try:
            beton = Path(scratch) / "train.beton"
            write_beton(images, beton, workers=args.threads)
        except Exception as err:  # noqa: BLE001 - FFCV missing or broken: benchmark the others
            log(f"FFCV unavailable, skipped ({err})")
            beton = None
        loaders = make_loaders(images, beton, args)
        rates = run(loaders, args.warmup, args.epochs, torch.device(args.device), log)
    rows = summarise(rates)
    setup = {
        "data": origin, "images": len(images), "batch_size": args.batch_size, "epochs": args.epochs,
        "threads": args.threads, "device": args.device, "torch_threads": torch.get_num_threads(),
    }  # fmt: skip
    if args.format == "json":
        print(json.dumps({"setup": setup, "results": rows}, indent=2))
        return
    print("\n" + ", ".join(f"{k}={v}" for k, v in setup.items()))
    print(f"{'loader':<16}{'images/s':>12}{'min':>12}{'max':>12}{'x torchvision':>15}")
    for row in rows:
        print(
            f"{row['loader']:<16}{row['images_per_s']:>12,}{row['min']:>12,}{row['max']:>12,}"
            f"{row['vs_torchvision']:>14.2f}x"
        )


if __name__ == "__main__":
    main()
