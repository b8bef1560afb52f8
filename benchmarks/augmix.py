"""What AugMix costs, side by side in one run: images/s of the device loader plain, with AugMix
(``augment.augmix``), and with AugMix's two views for the consistency loss
(``augment.augmix_jsd`` > 0), beside torchvision's per-image ``AugMix(all_ops=False)`` in a
``DataLoader`` with the same thread budget; then the training step of a small model with each
(the consistency loss runs the model on 3 views of every image).

    python benchmarks/augmix.py --data-dir ../shared/data/cifar10
    python benchmarks/augmix.py --data-dir ../shared/data/cifar10 --format json

Loader rounds are interleaved (each setting runs round k before any runs k + 1), so load from
other processes spreads over all settings alike. Reported: median images/s (training images,
not views) over the timed rounds, the range, and the ratio to the plain device loader.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from raycifar.config import AugmentConfig, ModelConfig, TrainConfig, TrialConfig
from raycifar.data import CATALOG, DeviceLoader, read_part
from raycifar.data.augmix import AugMixSettings
from raycifar.models.resnet import build_model
from raycifar.train.loss import BatchLoss

REPO = Path(__file__).resolve().parents[1]
STATS = CATALOG["cifar10"]


def device_batches(images, batch: int, augmix: bool, views: int) -> Callable[[], Iterator]:
    loader = DeviceLoader(
        images, batch, torch.device("cpu"), True, seed=0, mean=STATS.mean, std=STATS.std,
        augmix=AugMixSettings() if augmix else None, views=views,
    )  # fmt: skip
    return lambda: iter(loader)


def torchvision_batches(images, batch: int, threads: int) -> Callable[[], Iterator]:
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    transform = v2.Compose([
        v2.RandomCrop(32, padding=4), v2.RandomHorizontalFlip(), v2.AugMix(all_ops=False),
        v2.ToDtype(torch.float32, scale=True), v2.Normalize(STATS.mean, STATS.std),
    ])  # fmt: skip
    tensors = torch.from_numpy(images.images).permute(0, 3, 1, 2).contiguous()

    class Images(Dataset):
        def __len__(self) -> int:
            return len(tensors)

        def __getitem__(self, k: int):
            return transform(tensors[k]), int(images.labels[k])

    loader = DataLoader(Images(), batch_size=batch, shuffle=True, num_workers=threads, persistent_workers=threads > 0)
    return lambda: iter(loader)


def images_per_second(make: Callable[[], Iterator], count: int) -> float:
    started = time.perf_counter()
    for _ in make():
        pass
    return count / (time.perf_counter() - started)


def train_steps_per_second(views: int, augmix: bool, images, batch: int, steps: int) -> float:
    """Training images/s of a small ResNet (widths 16/32/64) on the loader's batches."""
    config = TrialConfig(
        space="bench", data_dir="/", params=1, model=ModelConfig(depths=(1, 1, 1), widths=(16, 32, 64)),
        train=TrainConfig(epochs=1), augment=AugmentConfig(augmix=augmix, augmix_jsd=12.0 if views == 3 else 0.0),
    )  # fmt: skip
    model, loss = build_model(config.model), BatchLoss.for_trial(config, torch.device("cpu"))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    batches = device_batches(images, batch, augmix, views)()
    started, seen = time.perf_counter(), 0
    for _ in range(steps):
        x, y = next(batches)
        optimizer.zero_grad()
        loss(model, x, y).backward()
        optimizer.step()
        seen += len(y)
    return seen / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--images", type=int, default=4096, help="training images per round")
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads / DataLoader workers")
    parser.add_argument("--train-steps", type=int, default=8)
    parser.add_argument("--format", choices=["table", "json"], default="table")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    data = read_part(args.data_dir, "train")
    data = type(data)(data.images[: args.images], data.labels[: args.images], data.class_names)
    settings = {
        "device, plain": device_batches(data, args.batch, False, 1),
        "device, AugMix": device_batches(data, args.batch, True, 1),
        "device, AugMix + 2 views (JSD)": device_batches(data, args.batch, True, 3),
        "torchvision AugMix(all_ops=False), per image": torchvision_batches(data, args.batch, args.threads),
    }
    rates: dict[str, list[float]] = {name: [] for name in settings}
    for _ in range(args.rounds + 1):  # the first round warms up
        for name, make in settings.items():
            rates[name].append(images_per_second(make, len(data)))
    rows = []
    base = statistics.median(rates["device, plain"][1:])
    for name, values in rates.items():
        timed = values[1:]
        rows.append({"loader": name, "images_per_s": statistics.median(timed), "low": min(timed), "high": max(timed),
                     "ratio": statistics.median(timed) / base})  # fmt: skip
    training = {
        name: train_steps_per_second(views, augmix, data, args.batch, args.train_steps)
        for name, views, augmix in (("plain", 1, False), ("AugMix", 1, True), ("AugMix + JSD", 3, True))
    }
    if args.format == "json":
        print(json.dumps({"loaders": rows, "training_images_per_s": training, "threads": args.threads}))
        return
    print(f"{len(data)} images, batch {args.batch}, {args.threads} thread(s), median of {args.rounds} rounds")
    print(f"{'loader':48} {'images/s':>10} {'range':>17} {'vs plain':>9}")
    for row in rows:
        print(f"{row['loader']:48} {row['images_per_s']:10,.0f} {row['low']:8,.0f}-{row['high']:<8,.0f} {row['ratio']:9.3f}")
    print("training a 3-stage ResNet (16/32/64), images/s: " + ", ".join(f"{k} {v:,.0f}" for k, v in training.items()))


if __name__ == "__main__":
    main()
