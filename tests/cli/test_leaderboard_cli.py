"""``raycifar leaderboard`` (table, json, csv, markdown; filters), ``leaderboard show``,
``evaluate`` with TTA, the model card, and ``raycifar.load_model`` (no Ray needed)."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from board_files import exported_checkpoint, plain_row
from loader_refs import normalized
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.data import read_part
from raycifar.entries.model_card import render_card
from raycifar.entries.promote import promote
from raycifar.errors import UserError
from raycifar.results.leaderboard import write_row
from raycifar.results.leaderboard_schema import COLUMNS

REPO = Path(__file__).resolve().parents[2]


def cli(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args), env={"COLUMNS": "200"})
    return result.exit_code, result.output


@pytest.fixture
def board(tmp_path: Path) -> Path:
    """Four rows: two cifar10 entries of space tiny, one of space big, one cifar100."""
    write_row(tmp_path, plain_row("tiny-aaaa", 0.61))
    write_row(tmp_path, plain_row("tiny-bbbb", 0.72, extra_test_acc={"ood": 0.5}))
    write_row(tmp_path, plain_row("big-cccc", 0.65, space="big", test_acc_tta=0.66))
    write_row(tmp_path, plain_row("c100-dddd", 0.30, dataset="cifar100", label_mode="coarse", space="c100"))
    return tmp_path


def test_json_lists_every_row_best_first_with_every_column(board: Path) -> None:
    code, output = cli("leaderboard", "--results-dir", str(board), "--format", "json")
    assert code == 0, output
    rows = json.loads(output)
    assert [r["entry_id"] for r in rows] == ["tiny-bbbb", "big-cccc", "tiny-aaaa", "c100-dddd"]
    assert tuple(rows[0]) == COLUMNS and rows[0]["extra_test_acc"] == {"ood": 0.5}
    assert rows[0]["created_at"] == "2026-01-01T00:00:00+00:00"


def test_filters_by_dataset_space_and_top(board: Path) -> None:
    def ids(*args: str) -> list[str]:
        code, output = cli("leaderboard", "--results-dir", str(board), "--format", "json", *args)
        assert code == 0, output
        return [r["entry_id"] for r in json.loads(output)]

    assert ids("--dataset", "cifar100") == ["c100-dddd"]
    assert ids("--space", "tiny") == ["tiny-bbbb", "tiny-aaaa"]
    assert ids("--dataset", "cifar10", "--top", "2") == ["tiny-bbbb", "big-cccc"]


def test_markdown_is_a_pipe_table_that_pastes_into_a_readme(board: Path) -> None:
    code, output = cli("leaderboard", "--results-dir", str(board), "--format", "markdown", "--top", "2")
    assert code == 0, output
    lines = output.splitlines()
    assert lines[0] == "| # | entry | model | params | MACs | test acc | 95% CI | TTA acc | val acc | dataset | epochs |"
    assert lines[1] == "|---|---|---|---|---|---|---|---|---|---|---|"
    assert lines[2] == "| 1 | `tiny-bbbb` | resnet4-w8 | 1,000 | 123,456 | 0.7200 | 0.6700–0.7700 | - | 0.5000 | cifar10 | 2 |"
    assert lines[3].startswith("| 2 | `big-cccc` |") and "| 0.6600 |" in lines[3]
    assert len(lines) == 4


def test_csv_has_every_column_and_the_extra_tests_as_json(board: Path) -> None:
    code, output = cli("leaderboard", "--results-dir", str(board), "--format", "csv")
    assert code == 0, output
    rows = list(csv.DictReader(io.StringIO(output)))
    assert tuple(rows[0]) == COLUMNS and json.loads(rows[0]["extra_test_acc"]) == {"ood": 0.5}


def test_the_table_shows_the_interval_and_tta(board: Path) -> None:
    code, output = cli("leaderboard", "--results-dir", str(board))
    assert code == 0, output
    line = next(line for line in output.splitlines() if "big-cccc" in line)
    assert "0.6000–0.7000" in line and "0.6600" in line


def test_an_empty_leaderboard_says_how_to_fill_it(tmp_path: Path) -> None:
    code, output = cli("leaderboard", "--results-dir", str(tmp_path))
    assert code == 0 and "no leaderboard yet" in output


def test_show_prints_every_column_and_the_config(board: Path) -> None:
    for args in (("leaderboard", "show", "tiny-bbbb", "--results-dir", str(board)),
                 ("leaderboard", "--results-dir", str(board), "show", "tiny-bbbb")):  # fmt: skip
        code, output = cli(*args)
        assert code == 0, output
        for column in COLUMNS:
            if column != "config_json":
                assert column in output, column
        assert "ood: 0.5000" in output and '"data_dir": "/d"' in output
    code, output = cli("leaderboard", "show", "tiny-bbbb", "--results-dir", str(board), "--format", "json")
    shown = json.loads(output)
    assert shown["config"] == {"data_dir": "/d", "train": {"tta": "none"}} and shown["macs"] == 123_456


def test_show_of_an_unknown_entry_is_one_line(board: Path) -> None:
    code, output = cli("leaderboard", "show", "nope", "--results-dir", str(board))
    assert code == 2 and "no leaderboard entry 'nope'" in output and len(output.strip().splitlines()) == 1


@pytest.fixture
def tta_entry(tmp_path: Path, cifar_dir: Path) -> tuple[Path, dict]:
    results = tmp_path / "results"
    row = promote(
        exported_checkpoint(tmp_path / "ckpt", cifar_dir, tta="flip"), results, sweep="s", trial_id="t",
        val_acc=0.5, epochs=1, source_checkpoint="x",
    )  # fmt: skip
    return results, row


def test_evaluate_reports_and_compares_plain_and_tta_accuracy(tta_entry: tuple[Path, dict]) -> None:
    results, row = tta_entry
    code, output = cli("evaluate", row["entry_id"], "--results-dir", str(results), "--format", "json")
    assert code == 0, output
    report = json.loads(output)
    assert (report["test_acc"], report["test_acc_tta"]) == (row["test_acc"], row["test_acc_tta"])
    assert report["recorded_test_acc_tta"] == row["test_acc_tta"] and report["matches_recorded"] is True
    tampered = dict(row, test_acc_tta=row["test_acc_tta"] + 0.01, entry_id="s-beef")
    (results / "leaderboard" / row["entry_id"]).rename(results / "leaderboard" / "s-beef")
    write_row(results, tampered)
    code, output = cli("evaluate", "s-beef", "--results-dir", str(results), "--format", "json")
    assert json.loads(output)["matches_recorded"] is False, "a TTA accuracy that differs is a mismatch"


def test_the_model_card_names_metrics_confusions_data_and_loading(tta_entry: tuple[Path, dict]) -> None:
    results, row = tta_entry
    card = (results / "leaderboard" / row["entry_id"] / "README.md").read_text()
    assert card.startswith(f"# {row['entry_id']}\n")
    assert f"| test accuracy | {100 * row['test_acc']:.2f}% (200 images) |" in card
    assert f"| test accuracy with test-time augmentation (flip) | {100 * row['test_acc_tta']:.2f}% |" in card
    assert f"{100 * row['test_acc_ci_low']:.2f}% – {100 * row['test_acc_ci_high']:.2f}%" in card
    assert "## Most confused classes" in card and "CIFAR-10" in card
    assert f'raycifar.load_model("{row["entry_id"]}", results_dir="{results}")' in card


def test_the_confusion_summary_lists_the_three_most_confused_pairs_with_rates() -> None:
    names = ("cat", "dog", "frog", "ship")
    # true cat (10 images): 4 as dog, 1 as frog; true dog (5): 3 as cat; true ship (4): 1 as frog
    labels = np.array([0] * 10 + [1] * 5 + [3] * 4)
    predicted = np.array([1] * 4 + [2] + [0] * 5 + [0] * 3 + [1] * 2 + [2] + [3] * 3)
    row = plain_row("s-card", 0.5, raycifar_version="0.1.0", seed=0, source_checkpoint="x", host="h", git_sha=None,
                    config_json=json.dumps({"data_dir": "/d", "val_fraction": 0.1, "split_seed": 0, "train": {"tta": "none"}}))  # fmt: skip
    card = render_card(row, labels, predicted, names)
    table = card.split("## Most confused classes")[1].split("\n\n")[1].splitlines()
    assert table[2:] == [
        "| dog | cat | 3 of 5 | 60.00% |",
        "| cat | dog | 4 of 10 | 40.00% |",
        "| ship | frog | 1 of 4 | 25.00% |",
    ]


def test_load_model_by_entry_id_or_folder(tta_entry: tuple[Path, dict], cifar_dir: Path) -> None:
    import raycifar

    results, row = tta_entry
    folder = results / "leaderboard" / row["entry_id"]
    images = normalized(read_part(cifar_dir, "test").images[:8])
    by_id = raycifar.load_model(row["entry_id"], results_dir=results)
    by_folder = raycifar.load_model(folder)
    assert not by_id.training and isinstance(by_id, torch.nn.Module)
    with torch.no_grad():
        assert torch.equal(by_id(images), by_folder(images))
    saved = np.load(folder / "predictions.npz")
    assert np.array_equal(by_id(images).argmax(1).numpy(), saved["predicted"][:8])
    with pytest.raises(UserError, match=r"no leaderboard entry 'nope'"):
        raycifar.load_model("nope", results_dir=results)


def test_timm_loads_a_promoted_entry_with_its_weights(tta_entry: tuple[Path, dict], cifar_dir: Path) -> None:
    import timm

    import raycifar.timm_models  # noqa: F401  (registers raycifar_entry)

    results, row = tta_entry
    folder = results / "leaderboard" / row["entry_id"]
    through_timm = timm.create_model("raycifar_entry", pretrained=True, entry=row["entry_id"], results_dir=str(results))
    images = normalized(read_part(cifar_dir, "test").images[:8])
    saved = np.load(folder / "predictions.npz")
    with torch.no_grad():
        assert np.array_equal(through_timm(images).argmax(1).numpy(), saved["predicted"][:8])
    with pytest.raises(ValueError, match="raycifar_entry needs entry="):
        timm.create_model("raycifar_entry")


def test_import_raycifar_stays_light() -> None:
    probe = "import sys, raycifar; print('torch' in sys.modules, callable(raycifar.load_model), 'torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["False", "True", "True"]
