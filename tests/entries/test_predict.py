"""``raycifar predict`` (a promoted entry's predictions on image files, as CSV) and the
per-class table of ``raycifar evaluate``: no Ray, a tiny model trained for a few steps here."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from cifar_files import write_image_folder, write_npz
from click.testing import Result
from conftest import SHARED_CIFAR10
from loader_refs import normalized
from PIL import Image
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.config import ModelConfig, TrainConfig, TrialConfig
from raycifar.data import CIFAR10_CLASSES, read_part
from raycifar.entries.predict import natural_key, write_csv_atomically
from raycifar.entries.promote import promote
from raycifar.models.files import load_model_files, save_model_files
from raycifar.models.resnet import build_model
from raycifar.results.layout import entry_dir

SHARED_TEST = SHARED_CIFAR10 / "cifar-10-batches-py" / "test_batch"


def run_cli(*args: str) -> Result:
    return CliRunner().invoke(app, list(args), env={"COLUMNS": "300", "RAY_ADDRESS": ""})


def promoted_entry(results: Path, data_dir: Path, tta: str = "none", steps: int = 30) -> str:
    """A tiny model trained ``steps`` SGD steps on ``data_dir``'s training images (so that its
    predictions vary), exported and promoted to the leaderboard in ``results``."""
    config = TrialConfig(
        space="tiny", data_dir=str(data_dir), params=1, seed=3,
        model=ModelConfig(depths=(1,), widths=(8,)), train=TrainConfig(epochs=1, tta=tta),
    )  # fmt: skip
    torch.manual_seed(0)
    model = build_model(config.model).train()
    train = read_part(data_dir, "train")
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    rng = np.random.default_rng(0)
    for _ in range(steps):
        batch = rng.choice(len(train), 64, replace=False)
        loss = torch.nn.functional.cross_entropy(
            model(normalized(train.images[batch])), torch.from_numpy(train.labels[batch])
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    checkpoint = results.parent / f"checkpoint-{tta}"
    checkpoint.mkdir(parents=True)
    save_model_files(checkpoint, model.eval(), config)
    results.mkdir(exist_ok=True)
    row = promote(checkpoint, results, sweep="s", trial_id="t", val_acc=0.5, epochs=1, source_checkpoint="x")
    return row["entry_id"]


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> tuple[Path, str]:
    """(results folder, entry id) of a model trained on the synthetic ``cifar_dir``."""
    results = tmp_path_factory.mktemp("predict") / "results"
    return results, promoted_entry(results, cifar_dir)


def write_pngs(folder: Path, images: np.ndarray, names: list[str] | None = None) -> Path:
    """HWC uint8 ``images`` as ``folder/<name>.png`` (default names: the indices)."""
    for index, image in enumerate(images):
        path = folder / f"{names[index] if names else index}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(path)
    return folder


def predict_rows(results: Path, entry_id: str, images: Path, output: Path, *options: str) -> list[dict]:
    result = run_cli("predict", entry_id, str(images), "--output", str(output), "--results-dir", str(results), *options)
    assert result.exit_code == 0, result.output
    return list(csv.DictReader(io.StringIO(output.read_text())))


def reference_probabilities(model_folder: Path, images: np.ndarray, views: str = "none") -> np.ndarray:
    """Softmax of the model's logits on ``images``, averaged over TTA views built by hand with
    NumPy: the image, its mirror, and (``flip_translate``) shifted one pixel up-left and
    down-right with reflect padding, each mirrored too."""
    model, _ = load_model_files(model_folder)
    batches = [images]
    if views != "none":
        batches.append(images[:, :, ::-1])
    if views == "flip_translate":
        padded = np.pad(images, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="reflect")
        for shifted in (padded[:, :-2, :-2], padded[:, 2:, 2:]):
            batches += [shifted, shifted[:, :, ::-1]]
    with torch.no_grad():
        logits = sum(model(normalized(np.ascontiguousarray(b))) for b in batches) / len(batches)
    return torch.softmax(logits, dim=1).numpy()


def accuracy_of(rows: list[dict], labels: np.ndarray) -> tuple[int, int]:
    """(correct, count) of CSV rows whose ids are image indices."""
    correct = sum(CIFAR10_CLASSES.index(row["label"]) == labels[int(row["id"])] for row in rows)
    return correct, len(rows)


# --- predictions match the recorded test accuracy --------------------------------------------------


def _shared_data() -> Path:
    if not SHARED_TEST.is_file():
        pytest.skip(f"the shared CIFAR-10 subset is not at {SHARED_TEST}")
    return SHARED_CIFAR10


@pytest.mark.parametrize("dataset", ["synthetic", "shared"])
def test_predicted_labels_give_exactly_the_evaluated_test_accuracy(
    tmp_path: Path, cifar_dir: Path, dataset: str
) -> None:
    data = _shared_data() if dataset == "shared" else cifar_dir
    results = tmp_path / "results"
    entry_id = promoted_entry(results, data)
    test = read_part(data, "test")
    pngs = write_pngs(tmp_path / "pngs", test.images)
    rows = predict_rows(results, entry_id, pngs, tmp_path / "submission.csv")
    evaluated = run_cli("evaluate", entry_id, "--results-dir", str(results), "--format", "json")
    assert evaluated.exit_code == 0, evaluated.output
    report = json.loads(evaluated.stdout)
    correct, count = accuracy_of(rows, test.labels)
    assert [row["id"] for row in rows] == [str(i) for i in range(len(test))]  # natural order: 2 before 10
    assert count == report["n"] == len(test) and correct / count == report["test_acc"]
    assert len({row["label"] for row in rows}) >= 3  # the order of the rows matters
    # the batch layout itself gives the same rows, ids being indices
    assert predict_rows(results, entry_id, data, tmp_path / "from_batches.csv") == rows


def test_ids_of_a_nested_folder_sort_naturally(tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path) -> None:
    results, entry_id = entry
    images = read_part(cifar_dir, "test").images[:6]
    names = ["10", "9", "cat/img10", "cat/img2", "cat/b.c/1", "a"]
    folder = write_pngs(tmp_path / "in", images, names)
    (folder / "notes.txt").write_text("not an image")
    rows = predict_rows(results, entry_id, folder, tmp_path / "out.csv", "--labels", "index")
    assert [row["id"] for row in rows] == ["9", "10", "a", "cat/b.c/1", "cat/img2", "cat/img10"]
    expected = reference_probabilities(entry_dir(results, entry_id), images).argmax(1)
    assert {row["id"]: int(row["label"]) for row in rows} == dict(zip(names, expected.tolist(), strict=True))


def test_natural_key_orders_numbers_as_numbers() -> None:
    ids = ["img10", "img2", "b", "10", "2", "a/10", "a/9", "01"]
    assert sorted(ids, key=natural_key) == ["01", "2", "10", "a/9", "a/10", "b", "img2", "img10"]


def test_a_test_npz_is_read_with_indices_as_ids(tmp_path: Path, entry: tuple[Path, str]) -> None:
    results, entry_id = entry
    data = write_npz(tmp_path / "npz", train=4, test=12)
    rows = predict_rows(results, entry_id, data, tmp_path / "out.csv")
    with np.load(data / "test.npz") as arrays:
        expected = reference_probabilities(entry_dir(results, entry_id), arrays["x"]).argmax(1)
    assert [row["id"] for row in rows] == [str(i) for i in range(12)]
    assert [row["label"] for row in rows] == [CIFAR10_CLASSES[i] for i in expected]


# --- columns ---------------------------------------------------------------------------------------


def test_probabilities_are_one_column_per_class_summing_to_one(
    tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path
) -> None:
    results, entry_id = entry
    images = read_part(cifar_dir, "test").images[:20]
    folder = write_pngs(tmp_path / "in", images)
    output = tmp_path / "out.csv"
    rows = predict_rows(results, entry_id, folder, output, "--probabilities")
    assert output.read_text().splitlines()[0] == "id,label," + ",".join(CIFAR10_CLASSES)
    probabilities = np.array([[float(row[name]) for name in CIFAR10_CLASSES] for row in rows])
    assert all(len(row[name].split(".")[1]) == 6 for row in rows for name in CIFAR10_CLASSES)
    np.testing.assert_allclose(probabilities.sum(1), 1.0, atol=1e-4)
    assert [CIFAR10_CLASSES[i] for i in probabilities.argmax(1)] == [row["label"] for row in rows]
    np.testing.assert_allclose(probabilities, reference_probabilities(entry_dir(results, entry_id), images), atol=2e-6)


def test_index_labels_are_the_class_indices_of_the_names(
    tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path
) -> None:
    results, entry_id = entry
    folder = write_pngs(tmp_path / "in", read_part(cifar_dir, "test").images[:30])
    named = predict_rows(results, entry_id, folder, tmp_path / "names.csv")
    indexed = predict_rows(results, entry_id, folder, tmp_path / "indices.csv", "--labels", "index")
    assert [int(row["label"]) for row in indexed] == [CIFAR10_CLASSES.index(row["label"]) for row in named]
    assert len({row["label"] for row in named}) >= 3


@pytest.mark.parametrize("entry_tta", ["none", "flip_translate"])
def test_tta_averages_the_entrys_views_or_flip(tmp_path: Path, cifar_dir: Path, entry_tta: str) -> None:
    results = tmp_path / "results"
    entry_id = promoted_entry(results, cifar_dir, tta=entry_tta)
    images = read_part(cifar_dir, "test").images[:10]
    folder = write_pngs(tmp_path / "in", images)
    plain = predict_rows(results, entry_id, folder, tmp_path / "plain.csv", "--probabilities")
    averaged = predict_rows(results, entry_id, folder, tmp_path / "tta.csv", "--probabilities", "--tta")
    views = "flip" if entry_tta == "none" else entry_tta
    expected = reference_probabilities(entry_dir(results, entry_id), images, views)
    got = np.array([[float(row[name]) for name in CIFAR10_CLASSES] for row in averaged])
    np.testing.assert_allclose(got, expected, atol=2e-6)
    assert [row["label"] for row in averaged] == [CIFAR10_CLASSES[i] for i in expected.argmax(1)]
    plain_probabilities = np.array([[float(row[name]) for name in CIFAR10_CLASSES] for row in plain])
    assert np.abs(plain_probabilities - got).max() > 1e-3


# --- sizes, unreadable files, atomic writes ----------------------------------------------------------


def test_images_that_are_not_32x32_are_refused_by_name_or_resized(
    tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path
) -> None:
    results, entry_id = entry
    images = read_part(cifar_dir, "test").images[:3]
    folder = write_pngs(tmp_path / "in", images)
    big = np.repeat(np.repeat(images[1], 2, axis=0), 3, axis=1)  # 96 wide, 64 high
    Image.fromarray(big).save(folder / "1.png")
    output = tmp_path / "out.csv"
    refused = run_cli("predict", entry_id, str(folder), "-o", str(output), "--results-dir", str(results))
    assert refused.exit_code == 2 and not output.exists()
    assert refused.stderr.strip().splitlines() == [
        f"error: {folder / '1.png'}: 96x64 pixels, not 32x32; pass --resize to resize images to 32x32"
    ]
    rows = predict_rows(results, entry_id, folder, output, "--resize", "--probabilities")
    by_hand = np.asarray(Image.fromarray(big).resize((32, 32), Image.Resampling.BILINEAR))
    expected = reference_probabilities(entry_dir(results, entry_id), np.stack([images[0], by_hand, images[2]]))
    got = np.array([[float(row[name]) for name in CIFAR10_CLASSES] for row in rows])
    np.testing.assert_allclose(got, expected, atol=2e-6)


def test_unreadable_files_are_listed_at_the_end_or_stop_a_strict_run(
    tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path
) -> None:
    results, entry_id = entry
    folder = write_pngs(tmp_path / "in", read_part(cifar_dir, "test").images[:4])
    (folder / "2.png").write_bytes(b"not a png")
    (folder / "sub").mkdir()
    (folder / "sub" / "0.jpg").write_bytes(b"")
    output = tmp_path / "out.csv"
    result = run_cli("predict", entry_id, str(folder), "-o", str(output), "--results-dir", str(results))
    assert result.exit_code == 0, result.output
    assert [row["id"] for row in csv.DictReader(io.StringIO(output.read_text()))] == ["0", "1", "3"]
    skipped = result.stderr.strip().splitlines()
    assert len(skipped) == 2
    assert skipped[0].startswith(f"skipped {folder / '2.png'}: not a readable image (truncated, damaged, or not an image format Pillow reads)")
    assert skipped[1].startswith(f"skipped {folder / 'sub' / '0.jpg'}: not a readable image")
    assert "2 skipped" in result.stdout

    before = output.read_bytes()
    strict = run_cli("predict", entry_id, str(folder), "-o", str(output), "--results-dir", str(results), "--strict")
    assert strict.exit_code == 2
    (line,) = strict.stderr.strip().splitlines()
    assert line.startswith(f"error: {folder / '2.png'}: not a readable image")
    assert output.read_bytes() == before


def test_two_files_with_one_id_are_refused(tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path) -> None:
    results, entry_id = entry
    folder = write_pngs(tmp_path / "in", read_part(cifar_dir, "test").images[:2])
    Image.fromarray(read_part(cifar_dir, "test").images[0]).save(folder / "1.bmp")
    result = run_cli("predict", entry_id, str(folder), "-o", str(tmp_path / "o.csv"), "--results-dir", str(results))
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == f"error: {folder / '1.bmp'} and {folder / '1.png'} have the same id '1'; keep one of them"
    )


def test_a_failed_write_leaves_the_old_output_intact(tmp_path: Path) -> None:
    output = tmp_path / "submission.csv"
    output.write_text("id,label\nold,cat\n")

    def rows_then_failure():
        yield ["id", "label"]
        yield ["0", "dog"]
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        write_csv_atomically(output, rows_then_failure())
    assert output.read_text() == "id,label\nold,cat\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["submission.csv"]
    write_csv_atomically(output, iter([["id", "label"], ["0", "dog"]]))
    assert output.read_bytes() == b"id,label\n0,dog\n"


# --- evaluate's per-class table ----------------------------------------------------------------------


def test_evaluate_reports_per_class_accuracy_on_a_labelled_image_folder(
    tmp_path: Path, entry: tuple[Path, str], cifar_dir: Path
) -> None:
    results, entry_id = entry
    test = read_part(cifar_dir, "test")
    folder = write_image_folder(tmp_path / "ood", test.images[:60], test.labels[:60].tolist())
    result = run_cli("evaluate", entry_id, "--results-dir", str(results), "--data-dir", str(folder), "--format", "json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    predicted = reference_probabilities(entry_dir(results, entry_id), test.images[:60]).argmax(1)
    labels = test.labels[:60]
    counts = [(name, int((labels == c).sum()), int(((labels == c) & (predicted == c)).sum()))
              for c, name in enumerate(CIFAR10_CLASSES) if (labels == c).any()]  # fmt: skip
    expected = [{"class": name, "n": n, "correct": correct, "accuracy": correct / n} for name, n, correct in counts]
    assert report["per_class"] == expected
    assert list(report) == [
        "entry_id",
        "test_acc",
        "test_loss",
        "n",
        "test_acc_tta",
        "recorded_test_acc",
        "recorded_test_acc_tta",
        "matches_recorded",
        "per_class",
    ]
    assert report["n"] == 60 and report["test_acc"] == (predicted == labels).sum() / 60

    shown = run_cli("evaluate", entry_id, "--results-dir", str(results), "--data-dir", str(folder))
    lines = [line.split() for line in shown.stdout.splitlines()]
    first = expected[0]
    assert ["class", "n", "correct", "accuracy"] in lines
    assert [first["class"], str(first["n"]), str(first["correct"]), f"{first['accuracy']:.4f}"] in lines
