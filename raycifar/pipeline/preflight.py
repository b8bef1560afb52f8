"""What every job checks before Ray starts: names, data, the results folder, resources.

Each check raises :class:`~raycifar.errors.UserError` with one line naming what is wrong,
and creates nothing until everything is known to be right.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from filelock import FileLock, Timeout

from raycifar.cluster.session import RunResources, available_cpus
from raycifar.data.catalog import CATALOG
from raycifar.data.readers import detect_source
from raycifar.data.readers import download as download_dataset
from raycifar.data.splits import split_image_set
from raycifar.display import Display
from raycifar.errors import UserError
from raycifar.results import layout
from raycifar.results.layout import RESULT_FOLDERS
from raycifar.results.leaderboard import read_table

if TYPE_CHECKING:
    from raycifar.config import TrialConfig
    from raycifar.space.file import SpaceFile

NAME_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"


def check_name(name: str, option: str = "--name") -> str:
    """``name`` if it is a valid sweep/run name (letters, digits, '.', '_', '-')."""
    if not re.fullmatch(NAME_PATTERN, name):
        raise UserError(f"{option} {name!r}: use letters, digits, '.', '_' and '-' only")
    return name


def check_data(data_dir: Path, download: bool, spec: SpaceFile | TrialConfig, split_seed: int, display: Display) -> None:
    """Make sure the dataset ``spec`` names (``dataset``, ``label_mode``, ``loader``,
    ``val_fraction``) is readable and labelled before Ray starts, downloading it if asked;
    for the ffcv loader, write the split's .beton files unless they are already there."""
    if download:
        display.info(f"downloading {CATALOG[spec.dataset].title} into {data_dir} …")
        download_dataset(data_dir, spec.dataset)
    source = detect_source(data_dir, spec.dataset, spec.label_mode)
    parts = {part: source.read(part) for part in ("train", "test")}
    for part, images in parts.items():
        if not images.labeled:
            raise UserError(f"{source.path}: the {part} images are unlabeled; a sweep needs labels")
    split_image_set(parts["train"], spec.val_fraction, split_seed, str(source.path))  # as data info splits
    if spec.loader == "ffcv":
        from raycifar.data.ffcv_loader import prepare_ffcv  # the optional extra: imported only when asked for

        prepared = prepare_ffcv(data_dir, spec.dataset, spec.label_mode, spec.val_fraction, split_seed, workers=2)
        if prepared.written:
            display.info(f"wrote FFCV files to {prepared.folder}")




def check_results_dir(results_dir: Path) -> None:
    """Refuse, before anything runs, a results folder raycifar could not write its results
    in: a file where it or one of its folders (:data:`RESULT_FOLDERS`) should be, a folder
    it may not write in, or an unreadable leaderboard. Creates and changes nothing."""
    existing = next((path for path in (results_dir, *results_dir.parents) if path.exists()), None)
    if existing is not None and not existing.is_dir():
        where = "" if existing == results_dir else f"{existing}, a folder above it, "
        raise UserError(f"--results-dir {results_dir}: {where}is a file, not a folder; choose another --results-dir")
    for name in RESULT_FOLDERS:
        if (results_dir / name).exists() and not (results_dir / name).is_dir():
            raise UserError(
                f"--results-dir {results_dir}: {results_dir / name} is a file where raycifar keeps its {name} folder; "
                "move it away or choose another --results-dir"
            )
    if results_dir.is_dir():
        _check_writable(results_dir)
        read_table(results_dir)


def _check_writable(folder: Path) -> None:
    """Raise :class:`UserError` unless a file can be created in ``folder`` (tried with an
    unnamed temporary file, which leaves nothing behind)."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as err:
        raise UserError(f"--results-dir {folder}: cannot write in it ({err.strerror or 'not writable'})") from None


def make_results_dir(results_dir: Path) -> None:
    """Create ``results_dir`` and check it as :func:`check_results_dir` does, so that neither
    fails only after a long run."""
    check_results_dir(results_dir)
    try:
        results_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--results-dir {results_dir}: cannot create it ({err.strerror})") from None
    _check_writable(results_dir)


def claim_sweep_dir(results_dir: Path, name: str) -> Path:
    """Create sweep ``name``'s folder, failing if it exists: of two commands started at the
    same moment with the same name, exactly one gets it (one ``mkdir``, atomic on every file
    system); the other gets a :class:`UserError` and writes nothing."""
    folder = layout.sweep_dir(results_dir, name)
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.mkdir()
    except FileExistsError:
        raise UserError(
            f"a sweep named {name!r} already exists in {folder.parent} (another raycifar may have started it "
            "just now): choose another --name"
        ) from None
    except OSError as err:
        raise UserError(f"{folder}: cannot create the sweep folder ({err.strerror or err})") from None
    return folder


@contextmanager
def holding_sweep(sweep_dir: Path) -> Iterator[None]:
    """Hold the sweep folder's driver lock (``.driver.lock``, an OS file lock that ends with
    the process) while the block runs: a second command that would run the same sweep at the
    same time (two ``--resume NAME``) gets a :class:`UserError` instead of sharing the folder."""
    lock = FileLock(sweep_dir / layout.DRIVER_LOCK, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(
            f"sweep {sweep_dir.name} in {sweep_dir.parent} is being run by another raycifar right now "
            f"({sweep_dir / layout.DRIVER_LOCK} is held); wait for it to end"
        ) from None
    try:
        yield
    finally:
        lock.release()


def check_resources(resources: RunResources, address: str | None) -> None:
    """Refuse, before a local Ray starts, CPUs or GPUs the machine does not have.

    A local Ray (``address`` None) gets :func:`~raycifar.cluster.session.available_cpus` CPUs
    and the GPUs torch sees; a cluster's resources are checked after joining it
    (:func:`~raycifar.cluster.session.resolve_gpus`), where the autoscaler may still add nodes.
    """
    if address is not None:
        return
    cpus = available_cpus()
    if resources.cpus > cpus:
        raise UserError(f"{resources.cpu_request} is more than this machine's {cpus} CPUs")
    if resources.gpus:
        import torch  # counts GPUs only when some are asked for

        gpus = torch.cuda.device_count()
        if resources.gpus > gpus:
            raise UserError(f"{resources.gpu_request} is more than this machine's {gpus} GPUs")
