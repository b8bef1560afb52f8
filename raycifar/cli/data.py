"""``raycifar data info``, ``data prepare`` and ``data corrupt``: look at a data folder, write loader
files, write a corrupted copy of the test split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Optional

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
    stderr,
    table,
)
from raycifar.config import DatasetName, LabelMode

data_app = typer.Typer(help="Inspect a data folder, prepare loader files, write corrupted test sets.", no_args_is_help=True)
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


@data_app.command("corrupt")
def data_corrupt(
    data_dir: DataDirOption = None,
    dataset: DatasetOption = "cifar10",
    label_mode: LabelModeOption = "fine",
    out: Annotated[Optional[Path], typer.Option("--out", help="Folder to write. Default: <data-dir>/corrupted/<dataset>-test-corrupted-seed<seed>[-first<N>].")] = None,
    seed: Annotated[int, typer.Option(min=0, help="Seed (0 or more) of every random draw; the same seed writes the same images.")] = 0,
    limit: Annotated[Optional[int], typer.Option("--limit", min=1, help="Corrupt only the first N test images.")] = None,
    corruptions: Annotated[str, typer.Option("--corruptions", help="Comma list of corruption names, or all (the 19), benchmark (the 15 test corruptions), validation (speckle_noise, gaussian_blur, spatter, saturate).")] = "all",
    severities: Annotated[str, typer.Option("--severities", help="Comma list of severities, 1 (mild) to 5.")] = "1,2,3,4,5",
) -> None:
    """Write a CIFAR-10-C-style corrupted copy of the test split: one <corruption>.npy per
    corruption (severities x images, 32, 32, 3, uint8), labels.npy and metadata.json.

    The constants are those of hendrycks/robustness make_cifar_c.py (its commit is recorded); motion blur and snow are reimplemented with OpenCV; frost needs the photographs of the imagecorruptions wheel. A second run with the same data, seed and severities reuses what is there.
    """  # noqa: E501 - typer keeps a later paragraph's line breaks
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from raycifar.data.corrupted_set import corrupt_test_set, default_out, parse_corruptions, parse_severities

    with exit_codes():
        names = parse_corruptions(corruptions)
        levels = parse_severities(severities)
    folder = resolve_data_dir(data_dir)
    target = (out or default_out(folder, dataset, seed, limit)).expanduser().resolve()
    columns = (TextColumn("{task.description:<18}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=stderr, transient=True, disable=not stderr.is_terminal) as bar:
        task = bar.add_task("corrupting", total=None)

        def advance(name: str, done: int, total: int) -> None:
            bar.update(task, description=name, completed=done, total=total)

        with exit_codes():
            written = corrupt_test_set(folder, dataset, label_mode, target, seed, limit, names, levels, advance)
    reused = f"; reused {len(written.reused)} already there" if written.reused else ""
    seconds = sum(written.seconds.values())
    console.print(
        f"wrote {len(written.written)} corruptions × {len(written.severities)} severities × {written.images:,} images "
        f"in {seconds:.1f} s{reused}: {written.folder} (metadata.json beside them)",
        highlight=False, soft_wrap=True,
    )  # fmt: skip
