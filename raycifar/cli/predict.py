"""``raycifar predict``: a leaderboard entry's predictions on new images, as a CSV file; and the
per-class accuracy table that ``raycifar evaluate`` prints."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from raycifar.cli.common import ResultsDir, console, exit_codes, fail, stderr, table

LabelStyle = Literal["name", "index"]


def predict_command(
    entry_id: Annotated[str, typer.Argument(help="The leaderboard entry whose model predicts.")],
    images: Annotated[
        Path,
        typer.Argument(
            help="A folder of image files, flat or nested (id: the path under IMAGES without its suffix, "
            "e.g. cat/0001), or a test set in a batch layout (official python or binary batches, "
            "as folder or .tar.gz, or test.npz; ids 0..N-1)."
        ),
    ],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="The CSV file to write (replaced only when complete).")
    ] = Path("submission.csv"),
    labels: Annotated[
        LabelStyle, typer.Option("--labels", help="The label column: class name, or class index (0..C-1).")
    ] = "name",
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

    Rows are sorted by id in natural order (2 before 10). The model runs on the CPU in float32, as `raycifar evaluate` runs it. Unreadable files are skipped and listed at the end (--strict: stop at the first).
    """
    from raycifar.entries.predict import csv_rows, find_inputs, predict_images, tta_mode, write_csv_atomically
    from raycifar.models.files import rebuild
    from raycifar.results.layout import entry_dir
    from raycifar.results.leaderboard import find_entry

    results_dir, output = results_dir.expanduser(), output.expanduser()
    with exit_codes():
        find_entry(results_dir, entry_id)
        model, config = rebuild(entry_dir(results_dir, entry_id))
        inputs = find_inputs(images.expanduser(), config)
        views = tta_mode(config) if tta else "none"
        with _progress_bar(len(inputs)) as advance:
            found = predict_images(
                model, config, inputs, tta=views, resize=resize, strict=strict, progress=advance, threads=threads
            )
        for line in found.skipped:
            stderr.print(f"[yellow]skipped[/] {escape(line)}", highlight=False, soft_wrap=True)
        if not found.ids:
            fail(f"{images}: none of the {len(inputs):,} images could be read; nothing written")
        write_csv_atomically(output, csv_rows(found, labels, probabilities))
    skipped = f", {len(found.skipped):,} skipped" if found.skipped else ""
    ignored = f", {inputs.ignored:,} other files ignored" if inputs.ignored else ""
    console.print(
        f"wrote {len(found.ids):,} predictions to {escape(str(output))}{skipped}{ignored} · TTA {views} · "
        f"{found.images_per_second:,.0f} images/s (reading {found.decode_seconds:.1f} s, model {found.model_seconds:.1f} s)",
        highlight=False,
        soft_wrap=True,
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


def print_per_class(rows: list[dict]) -> None:
    """The per-class accuracy table: class, n, correct, accuracy."""
    shown = table("class", "n", "correct", "accuracy")
    for row in rows:
        shown.add_row(escape(row["class"]), f"{row['n']:,}", f"{row['correct']:,}", f"{row['accuracy']:.4f}")
    console.print(shown)
