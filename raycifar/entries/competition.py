"""Predictions on the files competitions ship (:mod:`raycifar.data.array_files`), streamed batch
by batch on the chosen device, with one model or the average of an ensemble's.

- :func:`choose_device`: ``--device auto|cpu|cuda``;
- :func:`load_predictor`: an entry's model, or the top-K entries of its dataset (``--ensemble K``);
- :func:`open_inputs`: the files (or a corrupted-set folder: its corruption files with the
  labels of its ``labels.npy``);
- :func:`array_batches`: (ids, probabilities) per batch, the input of
  :func:`raycifar.entries.submission.submission_rows`;
- :func:`score_arrays`: accuracy per file and block, for ``raycifar evaluate --on``.

On the CPU the forward pass is that of ``raycifar predict`` on image folders (float32, batches
of :data:`EVAL_BATCH_SIZE`); on a GPU the figures agree within numerical tolerance.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from raycifar.cluster.session import available_cpus
from raycifar.config import TrialConfig
from raycifar.data.array_files import ArrayFile, is_array_file, open_array_file, printable
from raycifar.data.array_ids import batch_ids, check_template, default_template
from raycifar.data.catalog import class_names
from raycifar.data.corrupted_reader import LABELS, read_corrupted_set
from raycifar.data.device_loader import cpu_threads
from raycifar.entries.predict import CPU, Classifier, write_csv_atomically
from raycifar.entries.submission import Columns, Like, submission_rows
from raycifar.errors import UserError
from raycifar.models.files import rebuild
from raycifar.results.layout import entry_dir
from raycifar.results.leaderboard import find_entry, ranked, read_table
from raycifar.train.scoring import EVAL_BATCH_SIZE


def choose_device(name: str) -> torch.device:
    """``cuda`` when ``name`` is ``auto`` and a CUDA GPU is there, else the CPU; ``cuda`` without
    one is a one-line UserError. On CUDA, TF32 is turned off for this process (plain float32)."""
    if name == "cuda" and not torch.cuda.is_available():
        raise UserError(
            "--device cuda: no CUDA GPU is available here (torch.cuda.is_available() is False); use --device auto or cpu"
        )
    if name not in ("auto", "cpu", "cuda"):
        raise UserError(f"--device {name}: use auto, cpu or cuda")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    # full float32 (no TF32 tensor cores), so that the figures agree with the CPU's to float32 rounding
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    return torch.device("cuda")


@dataclass
class Ensemble:
    """The models of ``entries`` on one device: probabilities averaged over them (one model:
    its own softmax, exactly)."""

    members: list[Classifier]
    entries: list[str]
    config: TrialConfig

    @property
    def class_names(self) -> tuple[str, ...]:
        return class_names(self.config.dataset, self.config.label_mode)

    def probabilities(self, images: np.ndarray) -> torch.Tensor:
        """N x C float32 probabilities on the CPU: the mean of the members' softmax."""
        first = self.members[0].probabilities(images)
        return sum((m.probabilities(images) for m in self.members[1:]), first) / len(self.members)


def load_predictor(
    results_dir: Path,
    entry_id: str,
    device: torch.device,
    tta: Callable[[TrialConfig], str] | None = None,
    ensemble: int = 1,
) -> Ensemble:
    """The model of ``entry_id`` on ``device``; with ``ensemble`` K > 1 the K entries of its
    dataset and label mode with the best ``test_acc`` (it need not be one of them). ``tta``
    gives each member's test-time augmentation from its config (None: none)."""
    row = find_entry(results_dir, entry_id)
    model, config = rebuild(entry_dir(results_dir, entry_id))
    built = {entry_id: (model, config)}
    chosen = [entry_id]
    if ensemble > 1:
        same = [
            r
            for r in ranked(read_table(results_dir), dataset=row["dataset"])
            if (r.get("label_mode") or "fine") == config.label_mode
        ]
        if len(same) < ensemble:
            raise UserError(
                f"--ensemble {ensemble}: the leaderboard in {results_dir} has {len(same)} {row['dataset']} entries"
            )
        chosen = [r["entry_id"] for r in same[:ensemble]]
    members = []
    for chosen_id in chosen:
        model, member_config = built.get(chosen_id) or rebuild(entry_dir(results_dir, chosen_id))
        members.append(Classifier(model, member_config, tta(member_config) if tta else "none", device))
    return Ensemble(members, chosen, config)


@dataclass
class ArrayInputs:
    """The opened files, the id template (None: the files' own ids) and the block size."""

    files: list[ArrayFile]
    template: str | None
    block_size: int | None

    def __len__(self) -> int:
        return sum(len(f) for f in self.files)

    def all_ids(self) -> Iterator[tuple[str, str]]:
        """(id, "FILE: image I") of every image, without reading any image."""
        for number, found in enumerate(self.files):
            for first in range(0, len(found), EVAL_BATCH_SIZE):
                ids = batch_ids(
                    self.template, found, number, first, min(EVAL_BATCH_SIZE, len(found) - first), self.block_size
                )
                yield from ((image_id, f"{found.name}: image {first + k}") for k, image_id in enumerate(ids))

    def close(self) -> None:
        for found in self.files:
            found.close()


def is_array_input(path: Path) -> bool:
    """Whether ``path`` is read here: an array file, or a folder holding ``labels.npy``."""
    return is_array_file(path) or (path.is_dir() and (path / LABELS).is_file())


def _expand(paths: Sequence[Path]) -> tuple[list[Path], int | None]:
    """The files of ``paths`` (a corrupted-set folder: its corruption files, and its block size)."""
    files, block = [], None
    for path in paths:
        if path.is_dir():
            found = read_corrupted_set(path)
            files += [found.folder / f"{name}.npy" for name in found.corruptions]
            block = found.images
        elif path.name == LABELS and any(p.suffix == ".npy" and p.parent == path.parent and p != path for p in paths):
            continue  # the labels of the layout (data/*.npy names them too)
        else:
            files.append(path)
    return files, block


def open_inputs(
    paths: Sequence[Path], template: str | None = None, block_size: int | None = None, label_mode: str = "fine"
) -> ArrayInputs:
    """The checked array files of ``paths`` with their id template (labels read for a model
    of ``label_mode``); one-line UserErrors for a missing file, a bad file, a template that
    would repeat ids, or ids repeated across files."""
    for path in paths:
        if not path.exists():
            raise UserError(f"{printable(str(path))}: no such file or folder")
    files, block = _expand(paths)
    block_size = block_size or block
    opened: list[ArrayFile] = []
    try:
        for path in files:
            opened.append(open_array_file(path, block_size, label_mode))
        if template is None and any(f.ids is None for f in opened):
            template = default_template(opened, block_size)
        if template is not None:
            check_template(template, opened, block_size)
        inputs = ArrayInputs(opened, template, block_size)
        if template is None and len(opened) > 1:
            _refuse_repeats(inputs)
        return inputs
    except BaseException:
        for found in opened:
            found.close()
        raise


def _refuse_repeats(inputs: ArrayInputs) -> None:
    seen: dict[str, str] = {}
    for image_id, where in inputs.all_ids():
        if image_id in seen:
            raise UserError(f"{where}: id {image_id!r} repeats {seen[image_id]}")
        seen[image_id] = where


def array_batches(predictor: Ensemble, inputs: ArrayInputs, progress: Callable[[int], None] = lambda done: None,
                  timing: dict | None = None) -> Iterator[tuple[list[str], np.ndarray]]:  # fmt: skip
    """(ids, k x C float32 probabilities) per batch of :data:`EVAL_BATCH_SIZE` images, file by
    file in file order; memory: one batch. ``timing`` gets ``read_s`` and ``model_s``."""
    timing = timing if timing is not None else {}
    timing.update(read_s=0.0, model_s=0.0)
    for number, found in enumerate(inputs.files):
        started = time.perf_counter()
        for first, images in found.batches(EVAL_BATCH_SIZE):
            modelled = time.perf_counter()
            probabilities = predictor.probabilities(images).numpy()
            timing["read_s"] += modelled - started
            timing["model_s"] += time.perf_counter() - modelled
            yield batch_ids(inputs.template, found, number, first, len(images), inputs.block_size), probabilities
            progress(len(images))
            started = time.perf_counter()


def score_arrays(
    predictor: Ensemble, inputs: ArrayInputs, progress: Callable[[int], None] = lambda done: None
) -> list[dict]:
    """Accuracy of ``predictor`` on every file (and each block of ``block_size`` images): rows
    ``file``, ``block`` (from 1; ``all`` for the whole file), ``n``, ``correct``, ``accuracy``."""
    with cpu_threads(CPU, available_cpus()):
        return [row for found in inputs.files for row in _score_file(predictor, found, inputs.block_size, progress)]


def _score_file(
    predictor: Ensemble, found: ArrayFile, block_size: int | None, progress: Callable[[int], None]
) -> list[dict]:
    """:func:`score_arrays`'s rows of one file: its blocks (when more than one), then ``all``."""
    classes = len(predictor.class_names)
    size = block_size or max(len(found), 1)
    n, correct = np.zeros(-(-len(found) // size), np.int64), np.zeros(-(-len(found) // size), np.int64)
    for first, images in found.batches(EVAL_BATCH_SIZE):
        labels = found.labels_of(first, len(images))
        if labels.max(initial=0) >= classes:
            bad = int(np.argmax(labels >= classes))
            raise UserError(
                f"{found.name}: image {first + bad}: label {labels[bad]} but the model has {classes} classes"
            )
        hits = predictor.probabilities(images).numpy().argmax(axis=1) == labels
        blocks = (first + np.arange(len(images))) // size
        np.add.at(n, blocks, 1)
        np.add.at(correct, blocks, hits.astype(np.int64))
        progress(len(images))
    shown = [(str(k + 1), n[k], correct[k]) for k in range(len(n))] if len(n) > 1 else []
    return [
        {
            "file": found.name,
            "block": block,
            "n": int(total),
            "correct": int(right),
            "accuracy": int(right) / max(int(total), 1),
        }
        for block, total, right in [*shown, ("all", n.sum(), correct.sum())]
    ]


def write_array_submission(
    output: Path, predictor: Ensemble, inputs: ArrayInputs, columns: Columns, like: Like | None = None,
    progress: Callable[[int], None] = lambda done: None, threads: int | None = None,
) -> dict:  # fmt: skip
    """Predict every image of ``inputs`` and write the submission CSV to ``output``, streamed
    through a temporary file renamed over ``output`` only when complete (a bad image or id
    midway leaves ``output`` as it was). With ``like``, its ids are matched first, before
    any image is read. Returns ``read_s`` and ``model_s`` (seconds)."""
    if like is not None:
        like.check(inputs.all_ids())
    timing: dict = {}
    with cpu_threads(CPU, threads or available_cpus()):
        batches = array_batches(predictor, inputs, progress, timing)
        write_csv_atomically(output, submission_rows(batches, predictor.class_names, columns, like))
    return timing
