"""The report in a real browser: headless Chromium opens the page of a hand-built sweep
offline, runs its scripts without a console error, lets plotly draw every chart, and
paints a page that is not blank."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image
from report_files import charts, write_promoted_sweep

from raycifar.report.gather import write_report
from raycifar.report.html import SECTIONS

BROWSER_TIMEOUT_S = 180


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    """Headless Chromium with its console on stderr, given time for the page's scripts."""
    command = [
        "chromium", "--headless", "--disable-gpu", "--no-sandbox", "--hide-scrollbars", f"--user-data-dir={profile}",
        "--virtual-time-budget=10000", "--enable-logging=stderr", "--v=0", *args,
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True, timeout=BROWSER_TIMEOUT_S, check=False)


def console_errors(log: str) -> list[str]:
    """Uncaught exceptions and console.error lines in Chromium's stderr log."""
    return [line for line in log.splitlines() if "Uncaught" in line or "ERROR:CONSOLE" in line]


def test_the_report_draws_in_a_browser(tmp_path: Path, cifar_dir: Path) -> None:
    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    results = tmp_path / "results"
    write_promoted_sweep(results, cifar_dir, tmp_path)
    page = write_report(results, "s", tmp_path / "report.html")
    expected_charts = list(charts(page.read_text()))
    assert len(expected_charts) == 8

    dumped = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0, dumped.stderr[-2000:]
    assert console_errors(dumped.stderr) == []
    dom = dumped.stdout
    for section_id, _ in SECTIONS:
        assert f'<section id="{section_id}">' in dom
    drawn = re.split(r'<div class="chart[^"]*" id="', dom)[1:]
    drawn_ids = [part.split('"', 1)[0] for part in drawn if 'class="main-svg"' in part.split("</script>", 1)[0]]
    assert drawn_ids == expected_charts, "plotly drew an SVG in every chart"
    assert dom.count('class="main-svg"') >= len(expected_charts)

    screenshot = tmp_path / "report.png"
    shot = chromium(
        f"--screenshot={screenshot}", "--window-size=1280,4000", page.as_uri(), profile=tmp_path / "profile-shot"
    )
    assert shot.returncode == 0, shot.stderr[-2000:]
    assert console_errors(shot.stderr) == []
    colours = Image.open(screenshot).convert("RGB").getcolors(maxcolors=1_000_000)
    assert colours is not None and len(colours) > 50, "the page is painted, not blank"


@pytest.mark.slow
def test_the_report_of_a_real_sweep_on_real_cifar10_draws_in_a_browser(
    tmp_path: Path, ray_address: str, raycifar
) -> None:
    """A real sweep (two tiny trials on the real CIFAR-10 subset), whose report `raycifar
    sweep` writes itself: every section present, charts drawn, no console error, the
    misclassified real images and their heat maps embedded."""
    from conftest import SHARED_CIFAR10, TINY_SPACE

    if shutil.which("chromium") is None:
        pytest.skip("chromium is not installed (Debian: apt-get install chromium; .ci/run installs it)")
    if not (SHARED_CIFAR10 / "cifar-10-batches-py").is_dir():
        pytest.skip(f"the real CIFAR-10 subset is not at {SHARED_CIFAR10}")
    results = tmp_path / "results"
    sweep = raycifar("sweep", str(TINY_SPACE), "--data-dir", str(SHARED_CIFAR10), "--results-dir", str(results),
                     "--num-samples", "2", "--max-epochs", "1", "--wandb", "off", "--address", ray_address,
                     "--name", "real", cwd=tmp_path, timeout=900)  # fmt: skip
    page = results / "sweeps" / "real" / "report.html"
    assert f"report   {page}" in sweep.stdout.replace("\n", " ") or str(page) in sweep.stdout
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 2, "misclassified test images with their Grad-CAM maps"

    dumped = chromium("--dump-dom", page.as_uri(), profile=tmp_path / "profile-dom")
    assert dumped.returncode == 0 and console_errors(dumped.stderr) == [], dumped.stderr[-2000:]
    for section_id, _ in SECTIONS:
        assert f'<section id="{section_id}">' in dumped.stdout
    assert dumped.stdout.count('class="main-svg"') >= len(list(charts(html)))
