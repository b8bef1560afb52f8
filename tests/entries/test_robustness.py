"""Robustness scores at promotion: a tiny corrupted set written by ``raycifar data corrupt
--limit`` (and one in the official CIFAR-10-C layout), read and scored; the figures checked
against accuracies computed another way (the model run by hand on the arrays); the default
rule; the leaderboard columns, ``robustness.json``, ``leaderboard show`` and ``evaluate``;
and bad folders (one line, exit 2, nothing on the leaderboard). No Ray."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import cli_server
import numpy as np
import pytest
import torch
from board_files import exported_checkpoint
from cifar_files import write_cifar10
from test_from_sweep import interrupted_record
from test_from_sweep import write_sweep as write_checkpointed_sweep
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data import CATALOG, read_part
from raycifar.data.corrupted_reader import CorruptedSet, default_out, read_corrupted_set
from raycifar.entries.promote import promote
from raycifar.entries.robustness import MAX_PREDICTED_S, decide, most_hurt
from raycifar.errors import UserError
from raycifar.models.files import rebuild
from raycifar.results.layout import entry_dir
from raycifar.results.leaderboard import find_entry, read_robustness, read_table, rows_dir

NAMES = "gaussian_noise,brightness,contrast,saturate"  # saturate: a validation corruption, out of the mean
BENCHMARK = ["gaussian_noise", "brightness", "contrast"]
SEVERITIES = (1, 3)
LIMIT = 30


def data_corrupt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return cli_server.run_cli(["data", "corrupt", *args], cwd=cwd, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A CIFAR-10 of 40 test images of its own (the session's cifar_dir must keep no default
    corrupted folder) and its corrupted copy written by `raycifar data corrupt --limit 30`."""
    folder = write_cifar10(tmp_path_factory.mktemp("robust-data"), train_batches=1, per_batch=20, test=40)
    done = data_corrupt("--data-dir", str(folder), "--limit", str(LIMIT), "--corruptions", NAMES,
                        "--severities", ",".join(map(str, SEVERITIES)), cwd=folder)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return folder


def corrupted_dir(data: Path) -> Path:
    return default_out(data, "cifar10", 0, LIMIT)


@torch.no_grad()
def by_hand(model: torch.nn.Module, images: np.ndarray) -> np.ndarray:
    """The model's predictions, normalised by hand (not through the evaluation's loader)."""
    stats = CATALOG["cifar10"]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    x = (x - torch.tensor(stats.mean).view(1, 3, 1, 1)) / torch.tensor(stats.std).view(1, 3, 1, 1)
    model.eval()
    return model(x).argmax(1).numpy()


def promote_with(checkpoint: Path, results: Path, **options: object) -> dict:
    return promote(checkpoint, results, sweep="s", trial_id="t", val_acc=0.5, epochs=1, source_checkpoint="c", **options)


def test_the_reader_takes_the_written_set(data: Path) -> None:
    found = read_corrupted_set(corrupted_dir(data))
    assert found.corruptions == tuple(NAMES.split(",")) and found.severities == SEVERITIES
    assert found.images == LIMIT and found.size == 4 * 2 * LIMIT and not found.official
    assert np.array_equal(found.labels, read_part(data, "test").labels[:LIMIT])
    chunks = list(found.chunks("contrast", 3, 8))
    assert [len(c) for c in chunks] == [8, 8, 8, 6]
    assert np.array_equal(np.concatenate(chunks), np.load(found.folder / "contrast.npy")[LIMIT:])


def test_promotion_scores_the_corrupted_set_and_the_figures_agree(data: Path, tmp_path: Path) -> None:
    checkpoint = exported_checkpoint(tmp_path / "ckpt", data, seed=4)
    results = tmp_path / "res"
    told: list[str] = []
    row = promote_with(checkpoint, results, corrupted=corrupted_dir(data), tell=told.append)
    folder = entry_dir(results, row["entry_id"])
    figures = read_robustness(folder)
    assert figures is not None and any("scoring" in line for line in told)
    model, _ = rebuild(folder)
    test = read_part(data, "test")
    cells = {}
    for name in NAMES.split(","):
        array = np.load(corrupted_dir(data) / f"{name}.npy")
        for k, severity in enumerate(SEVERITIES):
            got = by_hand(model, array[k * LIMIT : (k + 1) * LIMIT])
            cells[(name, severity)] = float((got == test.labels[:LIMIT]).mean())
            assert figures["by_corruption_severity"][name][str(severity)] == pytest.approx(cells[(name, severity)])
    direct = float(np.mean([cells[(name, s)] for name in BENCHMARK for s in SEVERITIES]))
    assert figures["mean_over"] == BENCHMARK and figures["by_corruption"].keys() == set(NAMES.split(","))
    assert figures["corrupted_acc"] == pytest.approx(direct)
    assert figures["corrupted_acc"] == pytest.approx(np.mean([figures["by_corruption"][name] for name in BENCHMARK]))
    assert figures["corrupted_acc"] == pytest.approx(np.mean(list(figures["by_severity"].values())))
    assert figures["corrupted_acc_all"] == pytest.approx(np.mean(list(cells.values())))
    clean = float((by_hand(model, test.images[:LIMIT]) == test.labels[:LIMIT]).mean())
    assert figures["clean_acc"] == pytest.approx(clean) and figures["clean_images"] == LIMIT
    assert "SHA-256 matches" in figures["clean_reference"]
    assert figures["gap"] == pytest.approx(clean - direct)
    stored = find_entry(results, row["entry_id"])
    assert stored["corrupted_acc"] == pytest.approx(direct) and stored["robustness_gap"] == pytest.approx(clean - direct)
    assert stored["corrupted_set"] == str(corrupted_dir(data)) and stored["schema_version"] == 5
    hurt = most_hurt(figures, 10)
    assert [h["drop"] for h in hurt] == sorted((h["drop"] for h in hurt), reverse=True)
    json.loads((folder / "robustness.json").read_text())  # valid JSON
    assert f"| {100 * direct:.2f}% |" in (folder / "README.md").read_text(), "the model card gives it"


def test_the_official_layout_without_metadata_is_read_as_five_severities(data: Path, tmp_path: Path) -> None:
    test = read_part(data, "test")
    official = tmp_path / "CIFAR-10-C"
    official.mkdir()
    rng = np.random.default_rng(0)
    np.save(official / "labels.npy", np.tile(test.labels, 5).astype(np.uint8))
    for name in ("fog", "pixelate"):
        np.save(official / f"{name}.npy", rng.integers(0, 256, (5 * 40, 32, 32, 3), dtype=np.uint8))
    found = read_corrupted_set(official)
    assert found.official and found.severities == (1, 2, 3, 4, 5) and found.images == 40
    assert found.corruptions == ("fog", "pixelate")
    checkpoint = exported_checkpoint(tmp_path / "ckpt", data, seed=5)
    row = promote_with(checkpoint, tmp_path / "res", corrupted=official, robustness=True)
    model, _ = rebuild(entry_dir(tmp_path / "res", row["entry_id"]))
    direct = np.mean([(by_hand(model, np.load(official / f"{n}.npy")) == np.tile(test.labels, 5)).mean()
                      for n in ("fog", "pixelate")])  # fmt: skip
    assert row["corrupted_acc"] == pytest.approx(direct)
    assert row["robustness_gap"] == pytest.approx(row["test_acc"] - direct), "the whole test split is the clean set"


def fake_set(size: int) -> CorruptedSet:
    return CorruptedSet(Path("/c"), "c", ("fog",), (1,), size, np.zeros(size, np.int64), {})


@pytest.mark.parametrize(
    ("choice", "size", "sweep_wall_s", "scored"),
    [
        (None, 5_000, None, True),  # 50 s at 100 images/s: under 60 s
        (None, 7_000, None, False),  # 70 s
        (None, 7_000, 800.0, True),  # 70 s < 10% of 800 s
        (None, 9_000, 800.0, False),  # 90 s: over both
        (True, 9_000, None, True),
        (False, 10, None, False),
    ],
)
def test_the_default_rule(choice: bool | None, size: int, sweep_wall_s: float | None, scored: bool) -> None:
    decision = decide(choice, fake_set(size), clean_images=1_000, clean_seconds=10.0, sweep_wall_s=sweep_wall_s)
    assert decision.score is scored
    assert MAX_PREDICTED_S == 60.0
    if choice is None and not scored:
        assert "--robustness" in decision.reason and "raycifar evaluate" in decision.reason


def test_the_default_folder_is_scored_when_cheap_and_skipped_on_request(tmp_path: Path) -> None:
    data = write_cifar10(tmp_path / "data", train_batches=1, per_batch=20, test=20)
    assert data_corrupt("--data-dir", str(data), "--corruptions", "brightness", "--severities", "2",
                        cwd=tmp_path).returncode == 0  # fmt: skip
    checkpoint = exported_checkpoint(tmp_path / "ckpt", data)
    row = promote_with(checkpoint, tmp_path / "res")
    assert row["corrupted_set"] == str(default_out(data, "cifar10", 0, None)) and row["corrupted_acc"] is not None
    skipped = promote_with(checkpoint, tmp_path / "res2", robustness=False)
    assert (skipped["corrupted_acc"], skipped["robustness_gap"], skipped["corrupted_set"]) == (None, None, None)
    assert not (entry_dir(tmp_path / "res2", skipped["entry_id"]) / "robustness.json").exists()


def test_no_corrupted_set_changes_nothing(tmp_path: Path, cifar_dir: Path) -> None:
    row = promote_with(exported_checkpoint(tmp_path / "ckpt", cifar_dir), tmp_path / "res")
    assert row["corrupted_acc"] is None
    assert sorted(p.name for p in entry_dir(tmp_path / "res", row["entry_id"]).iterdir()) == [
        "README.md", "config.json", "data.json", "model.safetensors", "predictions.npz"
    ]  # fmt: skip
    with pytest.raises(UserError, match="--robustness: no corrupted test set"):
        promote_with(exported_checkpoint(tmp_path / "ckpt2", cifar_dir), tmp_path / "res", robustness=True)
    assert len(read_table(tmp_path / "res")) == 1


def bad_copy(data: Path, tmp_path: Path, how: str) -> Path:
    bad = tmp_path / f"bad-{how}"
    shutil.copytree(corrupted_dir(data), bad)
    if how == "shape":
        np.save(bad / "brightness.npy", np.zeros((2 * LIMIT, 32, 32), np.uint8))
    elif how == "dtype":
        np.save(bad / "brightness.npy", np.zeros((2 * LIMIT, 32, 32, 3), np.float32))
    else:
        np.save(bad / "labels.npy", np.arange(2 * LIMIT, dtype=np.uint8) % 7)  # the two severity blocks differ
    return bad


@pytest.mark.parametrize("how", ["shape", "dtype", "labels"])
def test_a_bad_folder_is_one_line_exit_2_and_nothing_is_promoted(data: Path, tmp_path: Path, how: str) -> None:
    results = tmp_path / "results"
    interrupted_record(write_checkpointed_sweep(results, data))
    bad = bad_copy(data, tmp_path, how)
    result = CliRunner().invoke(app, ["promote", "s", "--results-dir", str(results), "--corrupted", str(bad)])
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert str(bad / ("labels.npy" if how == "labels" else "brightness.npy")) in result.output.replace("\n", "")
    assert read_table(results) == [] and not list(rows_dir(results).glob("*.parquet"))
    assert not (results / "leaderboard").exists() or [p.name for p in (results / "leaderboard").iterdir()] == []


def test_show_and_evaluate_print_the_figures(data: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    interrupted_record(write_checkpointed_sweep(results, data))
    promoted = CliRunner().invoke(
        app, ["promote", "s", "--results-dir", str(results), "--corrupted", str(corrupted_dir(data)), "--format", "json"]
    )
    assert promoted.exit_code == 0, promoted.output
    (row,) = read_table(results)
    entry = row["entry_id"]
    shown = CliRunner().invoke(app, ["leaderboard", "show", entry, "--results-dir", str(results), "--format", "json"])
    found = json.loads(shown.stdout)
    assert found["corrupted_acc"] == row["corrupted_acc"] and found["robustness"]["corrupted_acc"] == row["corrupted_acc"]
    table = CliRunner().invoke(app, ["leaderboard", "show", entry, "--results-dir", str(results)])
    assert table.exit_code == 0 and "gaussian_noise" in table.stdout and "corrupted_acc" in table.stdout
    listed = CliRunner().invoke(app, ["leaderboard", "--results-dir", str(results), "--format", "json"])
    assert json.loads(listed.stdout)[0]["robustness_gap"] == pytest.approx(row["robustness_gap"])
    evaluated = CliRunner().invoke(app, ["evaluate", entry, "--results-dir", str(results), "--corrupted",
                                         str(corrupted_dir(data)), "--format", "json"])  # fmt: skip
    assert evaluated.exit_code == 0, evaluated.output
    scores = json.loads(evaluated.stdout)
    assert scores["corrupted_acc"] == row["corrupted_acc"] == scores["recorded_corrupted_acc"]
    assert scores["matches_recorded"] is True and scores["robustness"]["by_corruption"].keys() == set(NAMES.split(","))


def test_an_entry_without_figures_shows_nulls_as_valid_json(tmp_path: Path, cifar_dir: Path) -> None:
    row = promote_with(exported_checkpoint(tmp_path / "ckpt", cifar_dir), tmp_path / "res")
    shown = CliRunner().invoke(app, ["leaderboard", "show", row["entry_id"], "--results-dir", str(tmp_path / "res"),
                                     "--format", "json"])  # fmt: skip
    found = json.loads(shown.stdout)
    assert found["robustness"] is None and found["corrupted_acc"] is None and found["robustness_gap"] is None


def test_a_sweep_refuses_a_bad_corrupted_folder_before_ray_starts(data: Path, tmp_path: Path, cifar_dir: Path) -> None:
    from conftest import TINY_SPACE

    bad = bad_copy(data, tmp_path, "shape")
    done = subprocess.run(
        [sys.executable, "-m", "raycifar", "sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--results-dir",
         str(tmp_path / "results"), "--corrupted", str(bad), "--wandb", "off", "--name", "bad"],
        cwd=tmp_path, capture_output=True, text=True, check=False, timeout=120,
        env={"COLUMNS": "200", "PATH": "/usr/bin:/bin", "RAY_ADDRESS": ""},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().count("\n") == 0 and str(bad / "brightness.npy") in done.stderr
    assert "Ray" not in done.stdout + done.stderr and not (tmp_path / "results" / "sweeps" / "bad").exists()
