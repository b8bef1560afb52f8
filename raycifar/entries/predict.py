"""ImagePredictions of an exported model on new images: read them with ids, run the model on the
CPU in float32, write ``id,label[,<class>...]`` as CSV, and count accuracy per class.

The CSV's columns are :mod:`raycifar.entries.submission`'s; image array files (pickle,
``.npy``, ``.npz``) are predicted in batches by :mod:`raycifar.entries.competition`.

Inputs (:func:`find_inputs`):

- a folder of image files (any suffix in :data:`raycifar.data.readers.IMAGE_SUFFIXES`), flat
  or nested: an image's id is its path relative to the folder, without its suffix, with ``/``
  between folders (``cat/0001.png`` is ``cat/0001``); hidden files and folders (``.name``)
  and files with other suffixes are not read;
- the test part of a dataset layout the readers read by batch (official python or binary
  batches, as folder or ``.tar.gz``, or ``test.npz``): ids are the image indices ``0..N-1``.

Images are read as the image-folder reader reads them (8-bit RGB, converted only when
exact); one that is not 32 x 32 is refused unless ``resize`` is on, which resizes it with
Pillow's bilinear filter (antialiased when shrinking) to 32 x 32.

Batches, normalization and the float32 CPU forward pass are those of
:func:`raycifar.entries.evaluate.test_scores`, so that predicted labels on the test set give exactly
its ``test_acc``.
"""

from __future__ import annotations

import csv
import re
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from raycifar.cluster.session import available_cpus
from raycifar.config import TestTimeAugmentation, TrialConfig
from raycifar.data.augment import Normalizer
from raycifar.data.catalog import CATALOG, class_names
from raycifar.data.device_loader import cpu_threads
from raycifar.data.file_names import shown
from raycifar.data.image_files import IMAGE_SUFFIXES, read_image_file, walk_images
from raycifar.data.readers import ImageSet, detect_source, read_part
from raycifar.errors import UserError
from raycifar.models.files import rebuild
from raycifar.results.atomic import replacing
from raycifar.train.scoring import EVAL_BATCH_SIZE, tta_views

SIDE = 32
# layouts read as whole test parts, whose ids are image indices
BATCH_LAYOUTS = ("python", "python-archive", "binary", "binary-archive", "npz")
Progress = Callable[[int], None]  # called with the number of images just handled


class WrongSize(UserError):
    """An image that is not 32 x 32 while resizing is off (never skipped: the whole run stops)."""


def tta_mode(config: TrialConfig) -> TestTimeAugmentation:
    """The entry's own test-time augmentation (``train.tta``), or ``flip`` when it has none."""
    return config.train.tta if config.train.tta != "none" else "flip"


# --- inputs ------------------------------------------------------------------------------------


def natural_key(image_id: str) -> tuple:
    """Sort key putting ``2`` before ``10`` and ``img2`` before ``img10``: digit runs compare as
    numbers, the rest as text; equal keys (``01``, ``1``) fall back to the id itself."""
    parts = re.split(r"(\d+)", image_id)
    return tuple(int(p) if i % 2 else p for i, p in enumerate(parts)), image_id


@dataclass
class Inputs:
    """What to predict: image files with their ids (``files``) or a whole test part (``images``,
    ids ``0..N-1``); ``ignored`` counts files that were not read (other suffixes); ``not_read``
    names, one line each, what the folder walk could not read (broken links, link loops)."""

    source: Path
    files: list[tuple[str, Path]] = field(default_factory=list)
    images: ImageSet | None = None
    ignored: int = 0
    not_read: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images) if self.images is not None else len(self.files)


def image_id(folder: Path, path: Path) -> str:
    """The id of image ``path`` under ``folder``: its relative path without the suffix, ``/``
    between folders, bytes that are not UTF-8 written ``\\xNN`` (:mod:`raycifar.data.file_names`)."""
    return shown(path.relative_to(folder).with_suffix("").as_posix())


def _image_files(folder: Path) -> tuple[list[tuple[str, Path]], int, list[str]]:
    """(id, path) of every image file under ``folder`` in natural id order (links followed as
    :func:`raycifar.data.image_files.walk_images` follows them), how many other files were
    passed over, and what could not be read. Two files with one id (``a.png``, ``a.jpg``) are an error."""
    walk = walk_images(folder)
    found: dict[str, Path] = {}
    for path in walk.files:
        key = image_id(folder, path)
        if key in found:
            raise UserError(f"{shown(found[key])} and {shown(path)} have the same id {key!r}; keep one of them")
        found[key] = path
    return sorted(found.items(), key=lambda item: natural_key(item[0])), walk.other, walk.not_read


def find_inputs(path: Path, config: TrialConfig) -> Inputs:
    """The images under ``path`` for a model trained as ``config`` says (its dataset decides
    which batch layouts are looked for); a one-line :class:`UserError` if there are none."""
    if not path.exists():
        raise UserError(f"{path}: no such file or folder")
    try:
        source = detect_source(path, config.dataset, config.label_mode)
    except UserError:
        source = None
    if source is not None and source.format in BATCH_LAYOUTS and "test" in source.parts():
        return Inputs(path, images=source.read("test"))
    if not path.is_dir():
        raise UserError(f"{path}: not a folder of images or a {CATALOG[config.dataset].title} test set")
    files, ignored, not_read = _image_files(path)
    if not files:
        suffixes = ", ".join(IMAGE_SUFFIXES)
        unread = f" ({len(not_read)} not read: {not_read[0]})" if not_read else ""
        raise UserError(f"{path}: no image files ({suffixes}) and no {CATALOG[config.dataset].title} test set{unread}")
    return Inputs(path, files=files, ignored=ignored, not_read=not_read)


def load_image(path: Path, resize: bool) -> np.ndarray:
    """One image file as 32 x 32 x 3 uint8.

    Raises :class:`UserError` if it is not a readable 8-bit image (see the image-folder
    reader's rules), :class:`WrongSize` if it is not 32 x 32 and ``resize`` is off."""
    from PIL import Image

    pixels = read_image_file(path)
    if pixels.shape[:2] == (SIDE, SIDE):
        return pixels
    if not resize:
        raise WrongSize(
            f"{path}: {pixels.shape[1]}x{pixels.shape[0]} pixels, not {SIDE}x{SIDE}; "
            f"pass --resize to resize images to {SIDE}x{SIDE}"
        )
    shrunk = Image.fromarray(pixels).resize((SIDE, SIDE), Image.Resampling.BILINEAR)
    return np.asarray(shrunk)


# --- the model ------------------------------------------------------------------------------------


CPU = torch.device("cpu")


class Classifier:
    """An exported model on ``device`` (default the CPU): uint8 N x 32 x 32 x 3 images to N x C
    float32 logits, normalized with the dataset's statistics, averaged over the ``tta`` views."""

    def __init__(
        self, model: torch.nn.Module, config: TrialConfig, tta: TestTimeAugmentation = "none", device: torch.device = CPU
    ) -> None:
        stats = CATALOG[config.dataset]
        self.model, self.tta, self.device = model.to(device).eval(), tta, device
        self.normalize = Normalizer(stats.mean, stats.std, device)

    @torch.no_grad()
    def logits(self, images: np.ndarray) -> torch.Tensor:
        """N x C logits on the CPU (view-averaged with TTA, as :func:`raycifar.train.loop.score` averages them)."""
        batch = self.normalize(torch.from_numpy(images).to(self.device).permute(0, 3, 1, 2).contiguous())
        views = tta_views(batch, self.tta)
        first = self.model(views[0]).float()
        return (sum((self.model(view).float() for view in views[1:]), first) / len(views)).cpu()

    def probabilities(self, images: np.ndarray) -> torch.Tensor:
        """N x C softmax probabilities (float32, on the CPU)."""
        return torch.softmax(self.logits(images), dim=1)


@dataclass
class ImagePredictions:
    """Predicted ``labels`` (N int64) and ``probabilities`` (N x C float32, softmax of the
    logits) of images ``ids``; files that could not be read are in ``skipped`` (one line each)."""

    ids: list[str]
    labels: np.ndarray
    probabilities: np.ndarray
    class_names: tuple[str, ...]
    skipped: list[str]
    decode_seconds: float
    model_seconds: float

    @property
    def images_per_second(self) -> float:
        return len(self.ids) / max(self.decode_seconds + self.model_seconds, 1e-9)


Batch = tuple[list[str], np.ndarray, float, int]


class Predictor(Protocol):
    """What predicts: uint8 N x 32 x 32 x 3 images to N x C float32 probabilities on the CPU."""

    def probabilities(self, images: np.ndarray) -> torch.Tensor: ...


def _batches(inputs: Inputs, resize: bool, strict: bool, skipped: list[str]) -> Iterator[Batch]:
    """(ids, uint8 images, seconds spent reading, inputs handled) per batch of
    :data:`EVAL_BATCH_SIZE` inputs.

    Unreadable files are left out and described in ``skipped``; with ``strict`` the first
    one raises its :class:`UserError`."""
    if inputs.images is not None:
        for start in range(0, len(inputs), EVAL_BATCH_SIZE):
            end = min(start + EVAL_BATCH_SIZE, len(inputs))
            yield [str(i) for i in range(start, end)], inputs.images.images[start:end], 0.0, end - start
        return
    for start in range(0, len(inputs), EVAL_BATCH_SIZE):
        started = time.perf_counter()
        ids, images = [], []
        chunk = inputs.files[start : start + EVAL_BATCH_SIZE]
        for image_id, path in chunk:
            try:
                images.append(load_image(path, resize))
            except WrongSize:
                raise
            except UserError as err:
                if strict:
                    raise
                skipped.append(shown(str(err)))
                continue
            ids.append(image_id)
        stacked = np.stack(images) if images else np.zeros((0, SIDE, SIDE, 3), np.uint8)
        yield ids, stacked, time.perf_counter() - started, len(chunk)


def predict_images(
    model: torch.nn.Module,
    config: TrialConfig,
    inputs: Inputs,
    *,
    tta: TestTimeAugmentation = "none",
    resize: bool = False,
    strict: bool = False,
    progress: Progress = lambda done: None,
    threads: int | None = None,
    predictor: Predictor | None = None,
) -> ImagePredictions:
    """Predict every input with ``model`` on ``threads`` CPU threads (default: all cores),
    in batches of :data:`EVAL_BATCH_SIZE`, calling ``progress`` after each batch. A
    ``predictor`` (another device, an ensemble) replaces ``model`` with ``tta``."""
    classifier = predictor or Classifier(model, config, tta)
    ids: list[str] = []
    probabilities: list[torch.Tensor] = []
    if strict and inputs.not_read:
        raise UserError(inputs.not_read[0])
    skipped: list[str] = list(inputs.not_read)  # what the folder walk could not read, listed first
    decode_seconds = model_seconds = 0.0
    with cpu_threads(CPU, threads or available_cpus()):
        for batch_ids, images, read_seconds, handled in _batches(inputs, resize, strict, skipped):
            decode_seconds += read_seconds
            started = time.perf_counter()
            if len(images):
                probabilities.append(classifier.probabilities(images))
            model_seconds += time.perf_counter() - started
            ids += batch_ids
            progress(handled)
    names = class_names(config.dataset, config.label_mode)
    stacked = torch.cat(probabilities).numpy() if probabilities else np.zeros((0, len(names)), np.float32)
    labels = stacked.argmax(axis=1).astype(np.int64)
    return ImagePredictions(ids, labels, stacked, names, skipped, decode_seconds, model_seconds)


# --- per-class accuracy ----------------------------------------------------------------------------


def per_class_accuracy(model_folder: Path, data_dir: Path, device: torch.device = CPU) -> list[dict]:
    """One row per class present in the labelled test part of ``data_dir``: ``class`` (name),
    ``n`` (images), ``correct`` and ``accuracy`` (fraction) of the model exported in
    ``model_folder``, predicted as :func:`predict_images` predicts (no TTA), on ``device``."""
    model, config = rebuild(model_folder)
    test = read_part(data_dir, "test", config.dataset, config.label_mode)
    if not test.labeled:
        raise UserError(f"{data_dir}: the test images are unlabeled; evaluation needs labels")
    predicted = predict_images(model, config, Inputs(data_dir, images=test), predictor=Classifier(model, config, device=device)).labels
    rows = []
    for index, name in enumerate(test.class_names):
        mine = test.labels == index
        n = int(mine.sum())
        if n:
            correct = int((predicted[mine] == index).sum())
            rows.append({"class": name, "n": n, "correct": correct, "accuracy": correct / n})
    return rows


# --- CSV ---------------------------------------------------------------------------------------------


def write_csv_atomically(path: Path, rows: Iterable[list[str]]) -> None:
    """Write ``rows`` as CSV (UTF-8, ``\\n`` line ends, quoted only where needed) to ``path``
    through a temporary file in the same folder, renamed over ``path`` only when every row is
    written and flushed to disk: a failure at any point leaves an existing ``path`` as it was
    and no temporary file behind."""
    if not path.parent.is_dir():
        raise UserError(f"--output {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"--output {path}: is a folder; give a file name such as {path / 'submission.csv'}")
    with ExitStack() as stack:
        try:
            out = stack.enter_context(replacing(path, newline=""))
        except OSError as err:
            raise UserError(f"--output {path}: cannot write in {path.parent} ({err.strerror})") from None
        csv.writer(out, lineterminator="\n").writerows(rows)
