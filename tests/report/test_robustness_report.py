"""The report's Robustness section: the entry's figures by corruption x severity, the gap,
the most-hurt classes, and the top trials scored on a subset of the same corrupted set
(checked against the entry's own figures where the subset is the whole set), in the page
and drawn by headless Chromium. No Ray."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from cifar_files import write_cifar10
from report_files import CHECKPOINTED, charts, section, write_checkpointed_sweep, write_promoted_sweep
from test_html_browser import chromium, console_errors

from raycifar.report.gather import gather, write_report
from raycifar.report.html import SECTIONS

IMAGES = 12  # the subset the comparison takes (at most 20) covers the whole tiny set


@pytest.fixture(scope="module")
def robust(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A CIFAR-10 of 24 test images and its corrupted copy (first 12 images, 2 corruptions x 2 severities)."""
    root = tmp_path_factory.mktemp("robust-report")
    data = write_cifar10(root / "data", train_batches=1, per_batch=20, test=24)
    out = root / "corrupted"
    done = subprocess.run(
        [sys.executable, "-m", "raycifar", "data", "corrupt", "--data-dir", str(data), "--out", str(out),
         "--limit", str(IMAGES), "--corruptions", "brightness,contrast", "--severities", "2,4"],
        capture_output=True, text=True, check=False, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return data, out


def test_the_section_shows_the_entrys_figures_and_the_top_trials(robust: tuple[Path, Path], tmp_path: Path) -> None:
    data, corrupted = robust
    results = tmp_path / "results"
    write_checkpointed_sweep(results, data, corrupted)
    found = gather(results, "r")["entry"]["robustness"]
    assert found["by_corruption_severity"].keys() == {"brightness", "contrast"}
    drops = [h["drop"] for h in found["most_hurt"]]
    assert drops == sorted(drops, reverse=True) and len(drops) <= 5
    top = found["top_k"]
    assert top["images_per_cell"] == IMAGES and [r["trial_id"] for r in top["trials"]] == ["b", "c", "a"]
    promoted = top["trials"][0]
    assert promoted["corrupted_acc"] == pytest.approx(found["corrupted_acc"]), "the subset is the whole set here"
    assert promoted["clean_acc"] == pytest.approx(found["clean_acc"])
    assert top["clean_from"] == f"the same {IMAGES} clean test images"

    html = (write_report(results, "r", tmp_path / "report.html")).read_text()
    figures = charts(html)
    heat = figures["chart-robustness"]["data"][0]
    assert heat["y"] == ["brightness", "contrast"] and heat["x"] == ["severity 2", "severity 4"]
    assert heat["z"] == [[found["by_corruption_severity"][n][s] for s in ("2", "4")] for n in heat["y"]]
    assert [p for p in figures["chart-robustness-topk"]["data"][0]["text"]] == ["b", "c", "a"]
    text = section(html, "robustness")
    assert "Most hurt classes" in text and "gap (clean − corrupted)" in text and "promoted" in text


def test_without_figures_the_section_says_why(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    write_promoted_sweep(results, cifar_dir, tmp_path)
    html = write_report(results, "s", tmp_path / "report.html").read_text()
    assert "no robustness figures" in section(html, "robustness")
    assert not any(key.startswith("chart-robustness") for key in charts(html))


@pytest.mark.browser
def test_the_robustness_section_draws_in_a_browser(robust: tuple[Path, Path], tmp_path: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    data, corrupted = robust
    results = tmp_path / "results"
    write_checkpointed_sweep(results, data, corrupted)
    page = write_report(results, "r", tmp_path / "report.html")
    dumped = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0 and console_errors(dumped.stderr) == [], dumped.stderr[-2000:]
    for section_id, _ in SECTIONS:
        assert f'<section id="{section_id}">' in dumped.stdout
    robust_html = dumped.stdout.split('<section id="robustness">', 1)[1].split("</section>", 1)[0]
    for chart_id in ("chart-robustness", "chart-robustness-severity", "chart-robustness-topk"):
        part = robust_html.split(f'id="{chart_id}"', 1)[1].split("</script>", 1)[0]
        assert 'class="main-svg"' in part, f"plotly drew {chart_id}"
    assert len(CHECKPOINTED) == 3


@pytest.mark.slow
def test_a_sweep_promotes_with_robustness_figures_and_reports_them(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    """`raycifar sweep --corrupted DIR`: the winner is scored on the set (the rule: well under
    60 s), its row and robustness.json hold the figures, and the sweep's own report draws them."""
    import json

    from conftest import TINY_SPACE

    from raycifar.results.leaderboard import read_table

    corrupted = tmp_path / "corrupted"
    raycifar("data", "corrupt", "--data-dir", str(cifar_dir), "--out", str(corrupted), "--limit", "30",
             "--corruptions", "brightness,contrast,gaussian_noise", "--severities", "1,5", cwd=tmp_path)  # fmt: skip
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(TINY_SPACE), "--data-dir", str(cifar_dir), "--results-dir", str(results),
                     "--num-samples", "2", "--max-epochs", "1", "--wandb", "off", "--address", ray_address,
                     "--name", "robust", "--corrupted", str(corrupted), cwd=tmp_path, timeout=900)  # fmt: skip
    assert f"robustness: scoring {corrupted}" in sweep.stdout.replace("\n", " ")
    (row,) = read_table(results)
    figures = json.loads((results / "leaderboard" / row["entry_id"] / "robustness.json").read_text())
    assert row["corrupted_acc"] == figures["corrupted_acc"] and row["corrupted_set"] == str(corrupted)
    assert row["robustness_gap"] == pytest.approx(figures["clean_acc"] - figures["corrupted_acc"])
    html = (results / "sweeps" / "robust" / "report.html").read_text()
    assert "chart-robustness-data" in html and "chart-robustness-severity-data" in html
