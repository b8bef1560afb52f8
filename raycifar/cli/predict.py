"""``raycifar predict``: a leaderboard entry's predictions on new images, as a CSV file; and the
per-class accuracy table and the ``--on FILE`` scores that ``raycifar evaluate`` prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from raycifar.cli.common import ResultsDir, console, exit_codes, fail, print_json, print_record, stderr, table

if TYPE_CHECKING:
    from raycifar.entries.competition import ArrayInputs, Ensemble
    from raycifar.entries.submission import Columns, Like

LabelStyle = Literal["name", "index"]
DeviceChoice = Literal["auto", "cpu", "cuda"]


def predict_command(
    entry_id: Annotated[str, typer.Argument(help="The leaderboard entry whose model predicts.")],
    images: Annotated[
        list[Path],
        typer.Argument(
            help="A folder of image files, flat or nested (id: the path under IMAGES without its suffix, "
            "e.g. cat/0001), or a test set in a batch layout (official python or binary batches, "
            "as folder or .tar.gz, or test.npz; ids 0..N-1); or one or more image array files "
            "(.npy, .npz, or a pickle: .pkl/.pickle/.p) or corrupted-set folders (labels.npy beside "
            "one .npy per corruption), read in batches (see docs/competitions.md)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The CSV file to write (replaced only when complete).")
    ] = Path("submission.csv"),
    labels: Annotated[
        Optional[LabelStyle],
        typer.Option(
            "--labels",
            help="The label column: class name, or class index (0..C-1). Default: name, or with --like "
            "index when the sample's labels are all integers.",
        ),
    ] = None,
    id_column: Annotated[str, typer.Option("--id-column", help="The name of the id column.")] = "id",
    label_column: Annotated[str, typer.Option("--label-column", help="The name of the label column.")] = "label",
    like: Annotated[
        Optional[Path],
        typer.Option(
            "--like",
            help="A sample submission (CSV: id, label) to copy: its header and row order; every image id "
            "must be one of its ids and each of its ids an image's (else exit 2, nothing written).",
        ),
    ] = None,
    ids: Annotated[
        Optional[str],
        typer.Option(
            "--ids",
            help="Ids of array-file images from a template over {stem}, {file}, {row}, {block}, {block1} "
            "and {index} (e.g. {stem}_{block1}_{index}). Default: the file's own id array, else {row} "
            "(several files: {stem}_{row}).",
        ),
    ] = None,
    block_size: Annotated[
        Optional[int],
        typer.Option(
            "--block-size", min=1, help="Images per block of an array file (e.g. 10000 per severity): {block} and {index} count in blocks."
        ),
    ] = None,
    device: Annotated[
        DeviceChoice,
        typer.Option("--device", help="Where the model runs: auto (a CUDA GPU when there is one), cpu, or cuda."),
    ] = "auto",
    ensemble: Annotated[
        int,
        typer.Option(
            "--ensemble", min=1, help="Average the softmax probabilities of the K best entries (test_acc) of ENTRY_ID's dataset."
        ),
    ] = 1,
    probabilities: Annotated[
        bool,
        typer.Option("--probabilities", help="Add one column per class (its name): softmax probability, 6 decimals."),
    ] = False,
    tta: Annotated[
        bool,
        typer.Option(
            "--tta",
            help="Average the logits over the entry's test-time augmentation views (flip when its config has none).",
        ),
    ] = False,
    resize: Annotated[
        bool,
        typer.Option(
            "--resize",
            help="Resize images that are not 32x32 to 32x32 with Pillow's bilinear filter (antialiased); "
            "without it they are refused.",
        ),
    ] = False,
    strict: Annotated[
        bool, typer.Option("--strict", help="Stop at the first unreadable file (exit 2) instead of skipping it.")
    ] = False,
    threads: Annotated[
        Optional[int],
        typer.Option("--threads", min=1, help="CPU threads for the model. Default: all cores this process may use."),
    ] = None,
    results_dir: ResultsDir = Path("raycifar_results"),
) -> None:
    """Predict the class of every image with a leaderboard entry's model and write id,label as CSV.

    Folder rows are sorted by id in natural order (2 before 10); array-file rows come in file order (--like: the sample's order). The model runs in float32 on --device (the CPU path gives the figures of `raycifar evaluate`). Unreadable image files are skipped and listed at the end (--strict: stop at the first); a bad array file stops the run.
    """
    from raycifar.entries.competition import choose_device, is_array_input, load_predictor, open_inputs
    from raycifar.entries.predict import tta_mode
    from raycifar.entries.submission import Columns, read_like

    results_dir, output, paths = results_dir.expanduser(), output.expanduser(), [p.expanduser() for p in images]
    with exit_codes():
        predictor = load_predictor(results_dir, entry_id, choose_device(device), tta_mode if tta else None, ensemble)
        sample = read_like(like.expanduser()) if like else None
        columns = Columns(id_column, label_column, labels or (sample.labels if sample else "name"), probabilities)
        if any(is_array_input(path) for path in paths):
            inputs = open_inputs(paths, ids, block_size)
            summary = _predict_arrays(predictor, inputs, output, columns, sample, threads)
        elif ids is not None or block_size is not None:
            fail(f"{images[0]}: --ids and --block-size apply to image array files (.npy, .npz, pickle), not to this input")
        else:
            summary = _predict_folder(predictor, paths, output, columns, sample, resize, strict, threads)
    members = f" · ensemble of {len(predictor.entries)}: {', '.join(predictor.entries)}" if len(predictor.entries) > 1 else ""
    views = tta_mode(predictor.config) if tta else "none"
    console.print(f"{summary} · TTA {views} · {predictor.members[0].device.type}{members}", highlight=False, soft_wrap=True)


def _predict_arrays(predictor: Ensemble, inputs: ArrayInputs, output: Path, columns: Columns, like: Like | None, threads: int | None) -> str:
    """Write the submission of array-file inputs; the summary line."""
    from raycifar.entries.competition import write_array_submission

    try:
        with _progress_bar(len(inputs)) as advance:
            timing = write_array_submission(output, predictor, inputs, columns, like, advance, threads)
    finally:
        inputs.close()
    seconds = max(timing["read_s"] + timing["model_s"], 1e-9)
    return (
        f"wrote {len(inputs):,} predictions to {escape(str(output))} from {len(inputs.files)} file(s) · "
        f"{len(inputs) / seconds:,.0f} images/s (reading {timing['read_s']:.1f} s, model {timing['model_s']:.1f} s)"
    )


def _predict_folder(
    predictor: Ensemble, paths: list[Path], output: Path, columns: Columns, like: Like | None, resize: bool, strict: bool, threads: int | None
) -> str:  # fmt: skip
    """Write the submission of an image folder or a test set in a batch layout; the summary line."""
    from raycifar.entries.predict import find_inputs, predict_images, write_csv_atomically
    from raycifar.entries.submission import submission_rows

    if len(paths) != 1:
        fail(f"{paths[1]}: several inputs must all be array files (.npy, .npz, pickle) or corrupted-set folders")
    inputs = find_inputs(paths[0], predictor.config)
    with _progress_bar(len(inputs)) as advance:
        found = predict_images(
            predictor.members[0].model, predictor.config, inputs, resize=resize, strict=strict, progress=advance, threads=threads, predictor=predictor
        )
    for line in found.skipped:
        stderr.print(f"[yellow]skipped[/] {escape(line)}", highlight=False, soft_wrap=True)
    if not found.ids:
        fail(f"{paths[0]}: none of the {len(inputs):,} images could be read; nothing written")
    if like is not None:
        like.check((image_id, f"{paths[0]}: image {image_id}") for image_id in found.ids)
    write_csv_atomically(output, submission_rows([(found.ids, found.probabilities)], found.class_names, columns, like))
    skipped = f", {len(found.skipped):,} skipped" if found.skipped else ""
    ignored = f", {inputs.ignored:,} other files ignored" if inputs.ignored else ""
    return (
        f"wrote {len(found.ids):,} predictions to {escape(str(output))}{skipped}{ignored} · "
        f"{found.images_per_second:,.0f} images/s (reading {found.decode_seconds:.1f} s, model {found.model_seconds:.1f} s)"
    )


@contextmanager
def _progress_bar(total: int) -> Iterator[Callable[[int], None]]:
    """A Rich progress bar on stderr over ``total`` images, shown when stderr is a terminal and
    there is more than one batch; yields the function that advances it by a number of images."""
    from raycifar.train.scoring import EVAL_BATCH_SIZE

    columns = (TextColumn("predicting"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    shown = stderr.is_terminal and total > EVAL_BATCH_SIZE
    with Progress(*columns, console=stderr, transient=True, disable=not shown) as bar:
        task = bar.add_task("predicting", total=total)
        yield lambda done: bar.advance(task, done)


def evaluate_on_files(entry_id: str, results_dir: Path, on: list[Path], block_size: int | None, device: str, output_format: str) -> None:
    """``raycifar evaluate --on``: the entry's accuracy on labelled array files, per file and block."""
    from raycifar.entries.competition import choose_device, load_predictor, open_inputs, score_arrays

    with exit_codes():
        predictor = load_predictor(results_dir, entry_id, choose_device(device))
        inputs = open_inputs([path.expanduser() for path in on], "{file}_{row}", block_size, predictor.config.label_mode)
        try:
            rows = score_arrays(predictor, inputs)
        finally:
            inputs.close()
    n, correct = sum(r["n"] for r in rows if r["block"] == "all"), sum(r["correct"] for r in rows if r["block"] == "all")
    report = {"entry_id": entry_id, "n": n, "correct": correct, "acc": correct / max(n, 1), "device": predictor.members[0].device.type}
    if output_format == "json":
        print_json({**report, "per_file": rows})
        return
    print_record(report)
    shown = table("file", "block", "n", "correct", "accuracy")
    for row in rows:
        shown.add_row(escape(row["file"]), row["block"], f"{row['n']:,}", f"{row['correct']:,}", f"{row['accuracy']:.4f}")
    console.print(shown)


def print_per_class(rows: list[dict]) -> None:
    """The per-class accuracy table: class, n, correct, accuracy."""
    shown = table("class", "n", "correct", "accuracy")
    for row in rows:
        shown.add_row(escape(row["class"]), f"{row['n']:,}", f"{row['correct']:,}", f"{row['accuracy']:.4f}")
    console.print(shown)
