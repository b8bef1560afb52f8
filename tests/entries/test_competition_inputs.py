"""``raycifar predict`` and ``raycifar evaluate`` on the files competitions ship: pickles of
image arrays (bytes or str keys, NHWC, NCHW or flat rows, with or without ids), ``.npy`` sets
of several files with severities in blocks (``--like`` a sample submission), ``.npz``; bad
inputs refused in one line with nothing written; ``--device`` and ``--ensemble``. The CSV rows
are checked against the model called directly on the same images, or against the rows the
existing test-set path gives. No Ray: tiny models trained here for a few steps."""

from __future__ import annotations

import csv
import io
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from test_predict import promoted_entry, reference_probabilities, run_cli

from raycifar.data import CIFAR10_CLASSES, read_part
from raycifar.data.array_files import open_array_file, printable
from raycifar.results.layout import entry_dir


@pytest.fixture(scope="module")
def board(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> tuple[Path, str, str]:
    """(results folder, entry id, a second entry id) of two tiny models on ``cifar_dir``."""
    results = tmp_path_factory.mktemp("competition") / "results"
    first = promoted_entry(results, cifar_dir)
    second = promoted_entry(results, cifar_dir, tta="flip", steps=10)
    return results, first, second


@pytest.fixture(scope="module")
def test_images(cifar_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The synthetic test split: N x 32 x 32 x 3 uint8 images and their labels."""
    test = read_part(cifar_dir, "test")
    return test.images, test.labels


def predict(board: tuple[Path, str, str], output: Path, *args: str) -> list[list[str]]:
    """The CSV rows (header first) ``raycifar predict`` writes for ``args``."""
    result = run_cli("predict", board[1], *args, "--output", str(output), "--results-dir", str(board[0]))
    assert result.exit_code == 0, result.output
    return list(csv.reader(io.StringIO(output.read_text())))


def expected_names(board: tuple[Path, str, str], images: np.ndarray, entry: str | None = None) -> list[str]:
    """Class names the entry's model gives ``images`` (NHWC), computed without raycifar's predict."""
    probabilities = reference_probabilities(entry_dir(board[0], entry or board[1]), images)
    return [CIFAR10_CLASSES[i] for i in probabilities.argmax(axis=1)]


def pickled(path: Path, table: object) -> Path:
    path.write_bytes(pickle.dumps(table))
    return path


def planes(images: np.ndarray) -> np.ndarray:
    """NHWC images as N x 3072 rows in the CIFAR planes order."""
    return images.transpose(0, 3, 1, 2).reshape(len(images), -1)


# --- each competition shape -------------------------------------------------------------------------


def test_a_pickle_with_bytes_keys_and_ids(tmp_path: Path, board: tuple[Path, str, str], test_images: tuple) -> None:
    images, _ = test_images
    ids = np.arange(1000, 1000 + len(images))[::-1].copy()
    source = pickled(tmp_path / "test.pkl", {b"data": images, b"ids": ids})
    rows = predict(board, tmp_path / "out.csv", str(source))
    assert rows[0] == ["id", "label"]
    assert [r[0] for r in rows[1:]] == [str(i) for i in ids]  # the file's ids, in file order
    assert [r[1] for r in rows[1:]] == expected_names(board, images)
    assert len({r[1] for r in rows[1:]}) >= 3


@pytest.mark.parametrize("shape", ["nchw", "flat"])
def test_nchw_and_flat_rows_give_the_rows_of_the_official_test_set(
    tmp_path: Path, board: tuple[Path, str, str], test_images: tuple, cifar_dir: Path, shape: str
) -> None:
    images, _ = test_images
    data = images.transpose(0, 3, 1, 2).copy() if shape == "nchw" else planes(images)
    source = pickled(tmp_path / "test.pickle", {"images": data})  # str keys, no ids: ids 0..N-1
    official = predict(board, tmp_path / "official.csv", str(cifar_dir))
    assert predict(board, tmp_path / "out.csv", str(source)) == official


def test_an_npz_with_str_ids_and_odd_bytes(tmp_path: Path, board: tuple[Path, str, str], test_images: tuple) -> None:
    images, _ = test_images
    ids = np.array([b"img\xff%d" % i if i == 0 else b"img%d" % i for i in range(len(images))])
    np.savez_compressed(tmp_path / "test.npz", x=images, ids=ids)
    rows = predict(board, tmp_path / "out.csv", str(tmp_path / "test.npz"), "--labels", "index", "--id-column", "Id",
                   "--label-column", "Category")  # fmt: skip
    assert rows[0] == ["Id", "Category"]
    assert rows[1][0] == "img\\xff0" == printable(b"img\xff0") and rows[2][0] == "img1"
    assert [CIFAR10_CLASSES[int(r[1])] for r in rows[1:]] == expected_names(board, images)


def test_a_file_name_with_odd_bytes_keeps_them_in_its_ids(tmp_path: Path, board: tuple[Path, str, str]) -> None:
    odd = Path(os.fsdecode(bytes(tmp_path) + b"/fo\xffg.npy"))
    np.save(odd, np.zeros((2, 32, 32, 3), np.uint8))
    np.save(tmp_path / "b.npy", np.zeros((1, 32, 32, 3), np.uint8))
    rows = predict(board, tmp_path / "out.csv", str(odd), str(tmp_path / "b.npy"))
    assert [r[0] for r in rows[1:]] == ["fo\\xffg_0", "fo\\xffg_1", "b_0"]


def corrupted_files(folder: Path, images: np.ndarray, labels: np.ndarray, severities: int = 5) -> list[Path]:
    """Two corruption files of ``severities`` blocks (each block: ``images`` altered a little
    per severity) and ``labels.npy`` (the labels repeated per block): the benchmarks' layout."""
    folder.mkdir()
    files = []
    for k, stem in enumerate(("fog", "snow")):
        blocks = [
            np.clip(images.astype(np.int16) + (k + 1) * s * 9, 0, 255).astype(np.uint8) for s in range(severities)
        ]
        np.save(folder / f"{stem}.npy", np.concatenate(blocks))
        files.append(folder / f"{stem}.npy")
    np.save(folder / "labels.npy", np.tile(labels, severities))
    return files


def test_a_multi_file_multi_severity_set_like_a_sample_submission(
    tmp_path: Path, board: tuple[Path, str, str], test_images: tuple
) -> None:
    images, labels = test_images
    files = corrupted_files(tmp_path / "ood", images, labels)
    everything = np.concatenate([np.load(f) for f in files])
    ids = [
        f"{stem}_{block}_{index}" for stem in ("fog", "snow") for block in range(1, 6) for index in range(len(images))
    ]
    order = np.random.default_rng(0).permutation(len(ids))
    sample = tmp_path / "sample_submission.csv"
    sample.write_text("ImageId,Label\n" + "".join(f"{ids[i]},0\n" for i in order))
    rows = predict(board, tmp_path / "out.csv", *map(str, files), str(tmp_path / "ood" / "labels.npy"),
                   "--ids", "{stem}_{block1}_{index}", "--block-size", str(len(images)), "--like", str(sample))  # fmt: skip
    assert rows[0] == ["ImageId", "Label"]
    assert [r[0] for r in rows[1:]] == [ids[i] for i in order]  # the sample's order
    names = expected_names(board, everything)
    assert [r[1] for r in rows[1:]] == [str(CIFAR10_CLASSES.index(names[i])) for i in order]  # its label form: index
    # the folder itself reads as the same set: its blocks and ids
    assert predict(board, tmp_path / "folder.csv", str(tmp_path / "ood"), "--ids", "{stem}_{block1}_{index}",
                   "--like", str(sample)) == rows  # fmt: skip


def test_evaluate_scores_the_set_per_file_and_block(
    tmp_path: Path, board: tuple[Path, str, str], test_images: tuple
) -> None:
    images, labels = test_images
    files = corrupted_files(tmp_path / "ood", images, labels)
    result = run_cli(
        "evaluate", board[1], "--on", str(tmp_path / "ood"), "--results-dir", str(board[0]), "--format", "json"
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    expected = []
    for path in files[::-1]:  # the published order of the corruptions: snow before fog
        hits = np.array(expected_names(board, np.load(path))) == np.array(
            [CIFAR10_CLASSES[i] for i in np.tile(labels, 5)]
        )
        expected += [*hits.reshape(5, -1).mean(axis=1), hits.mean()]
    assert [row["accuracy"] for row in report["per_file"]] == pytest.approx(expected), report["per_file"]
    assert [row["block"] for row in report["per_file"]] == ["1", "2", "3", "4", "5", "all"] * 2
    assert [Path(row["file"]).name for row in report["per_file"][::6]] == ["snow.npy", "fog.npy"]
    assert report["n"] == 10 * len(images)


def test_evaluate_reads_the_labels_of_a_pickle(
    tmp_path: Path, board: tuple[Path, str, str], test_images: tuple
) -> None:
    images, labels = test_images
    source = pickled(tmp_path / "labelled.pkl", {b"data": planes(images), b"labels": labels.tolist()})
    result = run_cli("evaluate", board[1], "--on", str(source), "--results-dir", str(board[0]), "--format", "json")
    assert result.exit_code == 0, result.output
    hits = np.array(expected_names(board, images)) == np.array([CIFAR10_CLASSES[i] for i in labels])
    assert json.loads(result.stdout)["acc"] == pytest.approx(hits.mean())


# --- devices and ensembles --------------------------------------------------------------------------


def test_device_cpu_and_auto_give_the_same_rows_here(
    tmp_path: Path, board: tuple[Path, str, str], test_images: tuple
) -> None:
    np.save(tmp_path / "x.npy", test_images[0])
    on_cpu = predict(board, tmp_path / "cpu.csv", str(tmp_path / "x.npy"), "--device", "cpu", "--probabilities")
    assert (
        predict(board, tmp_path / "auto.csv", str(tmp_path / "x.npy"), "--device", "auto", "--probabilities") == on_cpu
    )


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
@pytest.mark.parametrize("command", ["predict", "evaluate"])
def test_device_cuda_without_cuda_is_refused_in_one_line(
    tmp_path: Path, board: tuple[Path, str, str], command: str
) -> None:
    args = [str(tmp_path / "x.npy"), "--output", str(tmp_path / "out.csv")] if command == "predict" else []
    np.save(tmp_path / "x.npy", np.zeros((2, 32, 32, 3), np.uint8))
    result = run_cli(command, board[1], *args, "--device", "cuda", "--results-dir", str(board[0]))
    assert result.exit_code == 2
    assert "--device cuda: no CUDA GPU" in result.output and len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "out.csv").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU (checked on a lent GPU machine)")
def test_device_cuda_agrees_with_the_cpu(tmp_path: Path, board: tuple[Path, str, str], test_images: tuple) -> None:
    np.save(tmp_path / "x.npy", test_images[0])
    on_cpu = predict(board, tmp_path / "cpu.csv", str(tmp_path / "x.npy"), "--device", "cpu", "--probabilities")
    on_gpu = predict(board, tmp_path / "gpu.csv", str(tmp_path / "x.npy"), "--device", "cuda", "--probabilities")
    cpu, gpu = (np.array([[float(v) for v in r[2:]] for r in rows[1:]]) for rows in (on_cpu, on_gpu))
    assert np.abs(cpu - gpu).max() <= 1e-5
    assert np.mean([a[1] == b[1] for a, b in zip(on_cpu[1:], on_gpu[1:], strict=True)]) >= 0.99


def test_an_ensemble_averages_the_probabilities_of_the_top_entries(
    tmp_path: Path, board: tuple[Path, str, str], test_images: tuple
) -> None:
    images, _ = test_images
    np.save(tmp_path / "x.npy", images)
    rows = predict(board, tmp_path / "out.csv", str(tmp_path / "x.npy"), "--ensemble", "2", "--probabilities")
    mean = sum(reference_probabilities(entry_dir(board[0], e), images) for e in board[1:]) / 2
    got = np.array([[float(v) for v in r[2:]] for r in rows[1:]])
    assert np.abs(got - mean).max() <= 1e-6 + 5e-7
    assert [r[1] for r in rows[1:]] == [CIFAR10_CLASSES[i] for i in mean.argmax(axis=1)]
    result = run_cli("predict", board[1], str(tmp_path / "x.npy"), "--ensemble", "3", "--results-dir", str(board[0]))
    assert result.exit_code == 2 and "--ensemble 3" in result.output


# --- bad inputs: one line naming the file and index, nothing written ---------------------------------


def _bad_cases(tmp_path: Path) -> dict[str, tuple[list[str], str]]:
    good = np.zeros((5, 32, 32, 3), np.uint8)
    wide = good.astype(np.int32)
    wide[3, 1, 2, 0] = 300
    sample = tmp_path / "sample.csv"
    sample.write_text("id,label\n0,0\n1,0\n2,0\n3,0\n7,0\n")
    np.save(tmp_path / "good.npy", good)
    np.save(tmp_path / "float.npy", good.astype(np.float32))
    np.save(tmp_path / "wide.npy", wide)
    np.save(tmp_path / "shape.npy", np.zeros((5, 32, 32), np.uint8))
    np.save(tmp_path / "truncated.npy", good)
    (tmp_path / "truncated.npy").write_bytes((tmp_path / "truncated.npy").read_bytes()[:-4000])
    pickled(tmp_path / "dup.pkl", {"data": good, "ids": ["a", "b", "c", "b", "e"]})
    pickled(tmp_path / "few.pkl", {"data": good, "ids": ["a", "b"]})
    pickled(tmp_path / "nokey.pkl", {"pixels": good})
    np.save(tmp_path / "empty.npy", good[:0])
    np.savez(tmp_path / "two.npz", x=good, images=good)
    return {
        "float": (["float.npy"], "float.npy: image 0: pixels are float32"),
        "range": (["wide.npy"], "wide.npy: image 3: pixel value 300 is outside 0..255"),
        "shape": (["shape.npy"], "shape.npy: images of shape (5, 32, 32) are none of"),
        "truncated": (["truncated.npy"], "truncated.npy: image 3: the file ends early"),
        "duplicate ids": (["dup.pkl"], "dup.pkl (ids): id 3: 'b' repeats id 1"),
        "missing ids": (["few.pkl"], "few.pkl (ids): 2 ids for 5 images"),
        "no image key": (["nokey.pkl"], "nokey.pkl: no image array"),
        "empty": (["empty.npy"], "empty.npy: holds no images"),
        "two image arrays": (["two.npz"], "two.npz: more than one image array (images, x)"),
        "like unmatched": (["good.npy", "--like", "sample.csv"], "good.npy: image 4: id '4' is not in"),
        "template repeats": (["good.npy", "--ids", "{stem}"], "the images of"),
        "template field": (["good.npy", "--ids", "{stem}_{severity}"], "unknown field {severity}"),
        "two files one stem": (["good.npy", "sub/good.npy"], "the files would share ids"),
    }


@pytest.mark.parametrize("case", ["float", "range", "shape", "truncated", "duplicate ids", "missing ids", "no image key",
                                  "empty", "two image arrays", "like unmatched", "template repeats", "template field",
                                  "two files one stem"])  # fmt: skip
def test_bad_inputs_are_one_line_and_nothing_is_written(
    tmp_path: Path, board: tuple[Path, str, str], case: str
) -> None:
    (tmp_path / "sub").mkdir()
    np.save(tmp_path / "sub" / "good.npy", np.zeros((2, 32, 32, 3), np.uint8))
    args, message = _bad_cases(tmp_path)[case]
    args = [str(tmp_path / a) if a.endswith((".npy", ".npz", ".pkl", ".csv")) else a for a in args]
    result = run_cli("predict", board[1], *args, "--output", str(tmp_path / "out.csv"), "--results-dir", str(board[0]))
    assert result.exit_code == 2, result.output
    assert message in result.output and len(result.output.strip().splitlines()) == 1, result.output
    assert not (tmp_path / "out.csv").exists() and not list(tmp_path.glob(".out.csv*"))


def test_a_sample_id_without_an_image_is_refused(tmp_path: Path, board: tuple[Path, str, str]) -> None:
    np.save(tmp_path / "x.npy", np.zeros((2, 32, 32, 3), np.uint8))
    (tmp_path / "sample.csv").write_text("id,label\n0,cat\n1,cat\n2,cat\n")
    result = run_cli("predict", board[1], str(tmp_path / "x.npy"), "--like", str(tmp_path / "sample.csv"),
                     "--output", str(tmp_path / "out.csv"), "--results-dir", str(board[0]))  # fmt: skip
    assert result.exit_code == 2 and "sample.csv line 4: id '2' is not among the images" in result.output
    assert not (tmp_path / "out.csv").exists()


def test_an_npy_is_read_in_batches_not_whole(tmp_path: Path) -> None:
    """The reader holds one batch: batches are fresh arrays, not views of one whole-file array."""
    images = np.random.default_rng(0).integers(0, 256, (1200, 3, 32, 32), dtype=np.uint8)
    np.save(tmp_path / "x.npy", images)
    found = open_array_file(tmp_path / "x.npy")
    try:
        batches = list(found.batches(500))
    finally:
        found.close()
    assert [first for first, _ in batches] == [0, 500, 1000] and all(
        b.base is None or b.base.nbytes <= b.nbytes for _, b in batches
    )
    assert np.array_equal(np.concatenate([b for _, b in batches]), images.transpose(0, 2, 3, 1))
