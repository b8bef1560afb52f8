"""``raycifar data info`` and ``raycifar data prepare``: look at a data folder, write loader files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import typer

from raycifar.cli.common import (
    DataDirOption,
    FormatOption,
    console,
    exit_codes,
    fail,
    print_json,
    print_record,
    resolve_data_dir,
    table,
)
from raycifar.config import DatasetName, LabelMode

data_app = typer.Typer(help="Inspect a data folder and prepare loader files.", no_args_is_help=True)
DatasetOption = Annotated[DatasetName, typer.Option(help="cifar10 or cifar100.")]
LabelModeOption = Annotated[LabelMode, typer.Option(help="CIFAR-100 labels: fine (100 classes) or coarse (20).")]
ValFractionOption = Annotated[float, typer.Option(help="Share of the training part held out for validation, as in a sweep.")]
SplitSeedOption = Annotated[int, typer.Option(min=0, help="Seed (0 or more) of the validation split (a sweep's --seed).")]


def _checked_folder(data_dir: Path | None, val_fraction: float) -> Path:
    if not 0 < val_fraction < 0.5:
        fail(f"--val-fraction {val_fraction:g}: must be above 0 and below 0.5")
    return resolve_data_dir(data_dir)


@data_app.command("info")
def data_info(
    data_dir: DataDirOption = None,
    dataset: DatasetOption = "cifar10",
    label_mode: LabelModeOption = "fine",
    val_fraction: ValFractionOption = 0.1,
    seed: SplitSeedOption = 0,
    output_format: FormatOption = "table",
) -> None:
    """Show the detected layout, images per split and per class, and channel mean/std."""
    from raycifar.data.info import describe

    folder = _checked_folder(data_dir, val_fraction)
    with exit_codes():
        info = describe(folder, dataset, label_mode, val_fraction, seed)
    if output_format == "json":
        print_json(info)
        return
    splits = info.pop("splits")
    if not info.get("ignored"):
        info.pop("ignored", None)
    info["images"] = ", ".join(f"{name} {split['count']:,}" for name, split in splits.items())
    print_record(info)
    labeled = {name: split for name, split in splits.items() if split["labeled"]}
    if labeled:
        counts = table("class", *labeled)
        for name in next(iter(labeled.values()))["per_class"]:
            counts.add_row(name, *(f"{split['per_class'][name]:,}" for split in labeled.values()))
        console.print(counts)


@data_app.command("prepare")
def data_prepare(
    output_format: Annotated[Literal["ffcv"], typer.Option("--format", help="What to write: ffcv (.beton files).")],
    data_dir: DataDirOption = None,
    dataset: DatasetOption = "cifar10",
    label_mode: LabelModeOption = "fine",
    val_fraction: ValFractionOption = 0.1,
    seed: SplitSeedOption = 0,
) -> None:
    """Write train/val/test .beton files for the ffcv loader, split as a sweep with this
    --val-fraction and --seed splits them, under <data-dir>/ffcv/."""
    from raycifar.data.ffcv_loader import prepare_ffcv

    folder = _checked_folder(data_dir, val_fraction)
    with exit_codes():
        prepared = prepare_ffcv(folder, dataset, label_mode, val_fraction, seed, workers=2)
    state = "wrote" if prepared.written else "up to date:"
    counts = ", ".join(f"{name} {count:,}" for name, count in prepared.counts.items())
    console.print(f"{state} {prepared.folder} ({counts} images)")
