"""Folders as people really have them (issue 26, kinds 1 and 2): file names that are not
valid UTF-8 and folders assembled from symbolic links, through ``raycifar predict`` and the
image-folder dataset reader (``raycifar data info``, the reader every dataset and extra test
set goes through). Every image gets its row; names that are not UTF-8 are written ``\\xNN``;
links to files and folders are followed alike; loops and broken links are named, never
followed and never silent."""

from __future__ import annotations

import csv
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest
from cifar_files import write_image_folder
from PIL import Image
from test_predict import promoted_entry
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data.file_names import shown

RNG = np.random.default_rng(26)


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> tuple[Path, str]:
    results = tmp_path_factory.mktemp("walks") / "results"
    return results, promoted_entry(results, cifar_dir)


def cli(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "300", "RAY_ADDRESS": ""})
    return result.exit_code, result.stdout, result.stderr


def png(path: bytes | Path) -> np.ndarray:
    """A random 32 x 32 image saved at ``path`` (bytes: a raw, possibly non-UTF-8, name)."""
    pixels = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    target = Path(os.fsdecode(path)) if isinstance(path, bytes) else path
    target.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(target, format="PNG")
    return pixels


# layout -> (what to build under the folder, the ids predict must give, lines it must name as not read)
def names_not_utf8(root: Path) -> None:
    png(root / "plain.png")
    png(os.fsencode(root) + b"/caf\xe9.png")  # Latin-1 é
    png(os.fsencode(root) + b"/\xff\xfe-dir/x.png")


def linked(root: Path) -> None:
    elsewhere = root.parent / f"{root.name}-elsewhere"
    png(elsewhere / "cats" / "c1.png")
    png(elsewhere / "one.png")
    png(root / "own.png")
    (root / "cats").symlink_to(elsewhere / "cats", target_is_directory=True)
    (root / "file.png").symlink_to(elsewhere / "one.png")
    (root / "sub").mkdir()
    png(root / "sub" / "s.png")
    (root / "sub" / "loop").symlink_to(root, target_is_directory=True)  # a folder that holds the link
    (root / "gone.png").symlink_to(elsewhere / "deleted.png")


LAYOUTS = {
    "names that are not UTF-8": (names_not_utf8, ["caf\\xe9", "plain", "\\xff\\xfe-dir/x"], []),
    "a folder assembled from links": (linked, ["cats/c1", "file", "own", "sub/s"], ["gone.png", "sub/loop"]),
}


@pytest.mark.parametrize("layout", LAYOUTS)
def test_predict_reads_every_image_and_names_what_it_did_not(
    tmp_path: Path, entry: tuple[Path, str], layout: str
) -> None:
    build, ids, not_read = LAYOUTS[layout]
    folder = tmp_path / "images"
    folder.mkdir()
    build(folder)
    results, entry_id = entry
    code, out, err = cli("predict", entry_id, str(folder), "--output", str(tmp_path / "p.csv"),
                         "--results-dir", str(results), "--probabilities")  # fmt: skip
    assert code == 0, out + err
    assert "Traceback" not in out + err
    rows = list(csv.DictReader(io.StringIO((tmp_path / "p.csv").read_text(encoding="utf-8"))))
    assert sorted(r["id"] for r in rows) == sorted(ids)
    for name in not_read:
        assert any(str(folder / name) in line and line.startswith("skipped") for line in err.splitlines()), err
    assert f"{len(not_read)} skipped" in out.replace("\n", " ") if not_read else "skipped" not in out

    # the reference, computed another way: the same pixels under plain names in a flat folder
    reference = tmp_path / "reference"
    reference.mkdir()
    by_reference = {}
    for index, row in enumerate(rows):
        raw = row["id"].encode("ascii").decode("unicode_escape").encode("latin-1")  # \xNN back to bytes
        original = next(p for p in _files(folder) if os.fsencode(p.relative_to(folder).with_suffix("")) == raw)
        Image.open(original).save(reference / f"{index}.png")
        by_reference[str(index)] = row
    code, out, err = cli("predict", entry_id, str(reference), "--output", str(tmp_path / "r.csv"),
                         "--results-dir", str(results), "--probabilities")  # fmt: skip
    assert code == 0, out + err
    for ref in csv.DictReader(io.StringIO((tmp_path / "r.csv").read_text())):
        row = by_reference[ref["id"]]
        assert {k: v for k, v in ref.items() if k != "id"} == {k: v for k, v in row.items() if k != "id"}


def _files(folder: Path) -> list[Path]:
    return [Path(root) / name for root, _, names in os.walk(folder, followlinks=True) for name in names
            if not (Path(root) / name).is_symlink() or (Path(root) / name).exists()]  # fmt: skip


def test_a_strict_predict_stops_at_the_first_thing_it_could_not_read(tmp_path: Path, entry: tuple[Path, str]) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    linked(folder)
    results, entry_id = entry
    code, out, err = cli("predict", entry_id, str(folder), "--output", str(tmp_path / "p.csv"),
                         "--results-dir", str(results), "--strict")  # fmt: skip
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert str(folder / "gone.png") in err and "does not exist" in err
    assert not (tmp_path / "p.csv").exists()


def test_the_predict_csv_names_an_image_by_the_documented_rendering() -> None:
    assert shown(os.fsdecode(b"caf\xe9/\xff.png")) == "caf\\xe9/\\xff.png" and shown("caf\u00e9") == "caf\u00e9"


# --- the image-folder reader: datasets and extra test sets --------------------------------------


def class_folder_dataset(root: Path) -> dict[str, int]:
    """test/<class>/ with a linked class folder, a linked file, a nested folder and a
    non-UTF-8 file name; returns the images per class a reader must count."""
    images = RNG.integers(0, 256, (6, 32, 32, 3), dtype=np.uint8)
    write_image_folder(root / "elsewhere", images[:3], [3, 3, 3])  # cat
    write_image_folder(root / "data" / "test", images[3:], [0, 1, 1])  # airplane, automobile
    test = root / "data" / "test"
    (test / "cat").symlink_to(root / "elsewhere" / "cat", target_is_directory=True)
    (test / "airplane" / "linked.png").symlink_to(root / "elsewhere" / "cat" / "00000.png")
    png(test / "automobile" / "nested" / "deeper.png")
    png(os.fsencode(test / "automobile") + b"/caf\xe9.png")
    return {"airplane": 2, "automobile": 4, "cat": 3}


def test_an_image_folder_dataset_follows_links_and_reads_subfolders(tmp_path: Path) -> None:
    expected = class_folder_dataset(tmp_path)
    code, out, err = cli("data", "info", "--data-dir", str(tmp_path / "data"), "--format", "json")
    assert code == 0, out + err
    per_class = json.loads(out)["splits"]["test"]["per_class"]
    assert {k: v for k, v in per_class.items() if v} == expected


DAMAGE = {
    "a broken link": lambda test: (test / "airplane" / "gone.png").symlink_to(test / "nowhere.png"),
    "a link loop": lambda test: (test / "automobile" / "loop").symlink_to(test, target_is_directory=True),
}


@pytest.mark.parametrize("damage", DAMAGE)
def test_a_dataset_with_something_it_cannot_read_is_refused_by_name(tmp_path: Path, damage: str) -> None:
    class_folder_dataset(tmp_path)
    DAMAGE[damage](tmp_path / "data" / "test")
    code, out, err = cli("data", "info", "--data-dir", str(tmp_path / "data"), "--format", "json")
    assert code == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, out + err
    assert ("gone.png" if damage == "a broken link" else "automobile/loop") in err


def test_a_data_dir_that_is_not_utf8_is_refused_in_one_line(tmp_path: Path) -> None:
    folder = Path(os.fsdecode(os.fsencode(tmp_path) + b"/d\xe9ta"))
    folder.mkdir()
    code, out, err = cli("data", "info", "--data-dir", str(folder))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "d\\xe9ta" in err and "not valid UTF-8" in err
