"""``raycifar data corrupt``: a corrupted copy of a test split, in CIFAR-10-C's file layout.

The folder holds one ``<corruption>.npy`` per corruption, uint8 of shape (S x N, 32, 32, 3)
for S severities of N test images, severity-major (rows ``k*N .. (k+1)*N - 1`` are the k-th
severity listed), and ``labels.npy``, the N labels repeated S times (uint8), as the official
CIFAR-10-C does; ``metadata.json`` beside them records the data read, the seed, the
severities, each corruption's constants and source line, the source script's commit, which
corruptions are reimplemented, and the frost photographs' SHA-256.

It is cached: a corruption whose recorded key (clean images, seed, severities, algorithm
version, and the frost photographs for frost) matches is not written again. Files are
written under a temporary name and renamed into place, and ``metadata.json`` is rewritten
after each corruption, so an interrupted run keeps what it finished.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from raycifar.data import corruptions as cc
from raycifar.data.catalog import CATALOG
from raycifar.data.corrupted_reader import LABELS, METADATA, default_out  # noqa: F401 - default_out: part of this interface
from raycifar.data.readers import detect_source
from raycifar.errors import UserError

FORMAT = "raycifar-corrupted"
FORMAT_VERSION = 1
ALGORITHM_VERSION = 1  # bump when a corruption's output changes: cached files are rewritten
CHUNK = 500  # images corrupted at a time (memory stays small; the output does not depend on it)

Progress = Callable[[str, int, int], None]  # (corruption being written, images done, images to do)


def parse_corruptions(text: str) -> tuple[str, ...]:
    """``all``, ``benchmark`` (the 15), ``validation`` (the 4) or a comma list of names, in
    the published order; a UserError naming an unknown one."""
    groups = {"all": tuple(cc.CORRUPTIONS), "benchmark": cc.BENCHMARK, "validation": cc.VALIDATION}
    asked: set[str] = set()
    for word in (w.strip() for w in text.split(",")):
        if word in groups:
            asked.update(groups[word])
        elif word in cc.CORRUPTIONS:
            asked.add(word)
        else:
            raise UserError(
                f"--corruptions {word!r}: unknown corruption; use all, benchmark, validation or names from "
                f"{', '.join(cc.CORRUPTIONS)}"
            )
    return tuple(name for name in cc.CORRUPTIONS if name in asked)


def parse_severities(text: str) -> tuple[int, ...]:
    """A comma list of severities 1..5 (``1,2,3,4,5``), sorted; a UserError for anything else."""
    found = set()
    for word in (w.strip() for w in text.split(",")):
        if not word.isdigit() or int(word) not in cc.SEVERITIES:
            raise UserError(f"--severities {word!r}: severities are 1, 2, 3, 4 and 5 (a comma list, e.g. 1,3,5)")
        found.add(int(word))
    return tuple(sorted(found))


def frost_folder() -> Path:
    """The folder of the six frost photographs of the installed ``imagecorruptions`` wheel,
    found without importing it (only its package data is used), each checked against its
    SHA-256; a one-line UserError when it is missing or differs."""
    spec = importlib.util.find_spec("imagecorruptions")
    hint = f"install them with: pip install --no-deps {cc.FROST_PACKAGE} (or leave frost out of --corruptions)"
    if spec is None or not spec.submodule_search_locations:
        raise UserError(f"frost needs the six frost photographs of the imagecorruptions wheel; {hint}")
    folder = Path(next(iter(spec.submodule_search_locations))) / "frost"
    for name, digest in cc.FROST_PHOTOS.items():
        path = folder / name
        if not path.is_file() or _sha256_file(path) != digest:
            raise UserError(f"frost: {path} is missing or not the published photograph (SHA-256 differs); {hint}")
    return folder


def _sha256_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass
class Written:
    """What a run did: the folder, the corruptions written and reused, the images per severity."""

    folder: Path
    images: int
    severities: tuple[int, ...]
    written: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)


def _key(clean_digest: str, seed: int, severities: Sequence[int], name: str, frost_digests: dict[str, str]) -> str:
    parts = {"clean": clean_digest, "seed": seed, "severities": list(severities), "corruption": name,
             "algorithm_version": ALGORITHM_VERSION, "constants": cc.CORRUPTIONS[name].constants}  # fmt: skip
    if name == "frost":
        parts["frost_photos"] = frost_digests
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _write_atomic(path: Path, write: Callable[[Path], None]) -> None:
    partial = path.with_name(f".{path.name}.partial")
    write(partial)
    os.replace(partial, path)


def _save_json(path: Path, value: dict) -> None:
    _write_atomic(path, lambda p: p.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8"))


def _load_metadata(folder: Path) -> dict:
    try:
        metadata = json.loads((folder / METADATA).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return metadata if isinstance(metadata, dict) and metadata.get("format") == FORMAT else {}


def _cached(folder: Path, entry: dict | None, key: str, rows: int) -> bool:
    if not entry or entry.get("key") != key:
        return False
    try:
        array = np.load(folder / entry["file"], mmap_mode="r")
    except (OSError, ValueError):
        return False
    return array.shape == (rows, cc.SIZE, cc.SIZE, 3) and array.dtype == np.uint8


def corrupt_test_set(
    data_dir: Path,
    dataset: str,
    label_mode: str,
    out: Path,
    seed: int,
    limit: int | None,
    names: Sequence[str],
    severities: Sequence[int],
    progress: Progress | None = None,
) -> Written:
    """Write (or reuse) the corrupted copy of the test split of ``dataset`` under ``data_dir``
    (its first ``limit`` images, or all) into ``out``; see the module docstring."""
    source = detect_source(data_dir, dataset, label_mode)
    test = source.read("test")
    if not test.labeled:
        raise UserError(f"{source.path}: the test images have no labels; data corrupt needs a labelled test set")
    images, labels = test.images, test.labels
    if limit is not None:
        images, labels = images[:limit], labels[:limit]
    if not len(images):
        raise UserError(f"{source.path}: the test split has no images")
    photos = frost_folder() if "frost" in names else None
    frost_digests = dict(cc.FROST_PHOTOS) if photos else {}
    clean_digest = hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"--out {out}: cannot create the folder ({err.strerror})") from None

    n, severities = len(images), tuple(severities)
    rows = n * len(severities)
    previous = _load_metadata(out)
    same_set = (
        previous.get("source", {}).get("images_sha256") == clean_digest
        and previous.get("seed") == seed
        and previous.get("severities") == list(severities)
    )
    entries: dict[str, dict] = dict(previous.get("corruptions", {})) if same_set else {}
    if not same_set:  # another input, seed or severities: the files there no longer belong
        for entry in previous.get("corruptions", {}).values():
            (out / str(entry.get("file", ""))).unlink(missing_ok=True)
    metadata = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "name": f"{CATALOG[dataset].title} test, corrupted by raycifar (CIFAR-10-C-style; not the official "
        f"{'CIFAR-10-C' if dataset == 'cifar10' else 'CIFAR-100-C'})",
        "layout": "one <corruption>.npy per corruption: uint8 (severities x images, 32, 32, 3), severity-major; "
        "labels.npy: the labels repeated once per severity (uint8)",
        "dataset": dataset,
        "label_mode": label_mode,
        "source": {
            "data_dir": str(data_dir),
            "layout": source.format,
            "path": str(source.path),
            "images": n,
            "limit": limit,
            "images_sha256": clean_digest,
        },  # fmt: skip
        "seed": seed,
        "severities": list(severities),
        "algorithm_version": ALGORITHM_VERSION,
        "constants_source": {
            "repository": cc.SOURCE_REPOSITORY,
            "path": cc.SOURCE_PATH,
            "commit": cc.SOURCE_COMMIT,
            "license": cc.SOURCE_LICENSE,
            "url": f"https://github.com/{cc.SOURCE_REPOSITORY}/blob/{cc.SOURCE_COMMIT}/{cc.SOURCE_PATH}",
        },  # fmt: skip
        "rounding": "truncated to uint8 as the source script does",
        "reimplemented": {
            name: "the source script blurs with ImageMagick's MotionBlurImage; here an OpenCV kernel of the same "
            "taps and weights (raycifar.data.corruptions.motion_kernel)"
            for name, corruption in cc.CORRUPTIONS.items()
            if corruption.reimplemented
        },
        "corruptions": entries,
    }
    if photos or "frost" in entries:
        metadata["frost_photos"] = {
            "package": cc.FROST_PACKAGE, "folder": "imagecorruptions/frost/", "sha256": dict(cc.FROST_PHOTOS),
            "drawn": list(cc.FROST_PHOTOS)[: cc.FROST_DRAWN],
        }  # fmt: skip
    _write_atomic(out / LABELS, lambda p: _save_npy(p, np.tile(labels, len(severities)).astype(np.uint8)))

    result = Written(out, n, severities)
    todo = [
        name
        for name in names
        if not _cached(out, entries.get(name), _key(clean_digest, seed, severities, name, frost_digests), rows)
    ]
    result.reused = [name for name in names if name not in todo]
    total, done = len(todo) * rows, 0
    for name in todo:
        start = time.perf_counter()
        path = out / f"{name}.npy"

        def fill(partial: Path, name: str = name) -> None:
            nonlocal done
            array = np.lib.format.open_memmap(partial, mode="w+", dtype=np.uint8, shape=(rows, cc.SIZE, cc.SIZE, 3))
            for k, severity in enumerate(severities):
                for first in range(0, n, CHUNK):
                    chunk = images[first : first + CHUNK]
                    array[k * n + first : k * n + first + len(chunk)] = cc.corrupt(
                        chunk, name, severity, seed, first, photos
                    )
                    done += len(chunk)
                    if progress:
                        progress(name, done, total)
            array.flush()
            del array

        _write_atomic(path, fill)
        seconds = time.perf_counter() - start
        corruption = cc.CORRUPTIONS[name]
        entries[name] = {
            "file": path.name, "group": corruption.group, "kind": corruption.kind,
            "constants": [list(c) if isinstance(c, tuple) else c for c in corruption.constants],
            "source_line": corruption.source_line, "reimplemented": corruption.reimplemented,
            "key": _key(clean_digest, seed, severities, name, frost_digests), "seconds": round(seconds, 2),
        }  # fmt: skip
        result.written.append(name)
        result.seconds[name] = seconds
        _save_json(out / METADATA, metadata)
    _save_json(out / METADATA, metadata)
    return result


def _save_npy(path: Path, array: np.ndarray) -> None:
    with open(path, "wb") as stream:
        np.save(stream, array)
