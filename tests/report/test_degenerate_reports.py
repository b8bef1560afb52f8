"""``raycifar report`` on degenerate sweeps (issue 26, kind 3): every chart and statistic of the
sweep sections either draws or says "Skipped: what: why." in the page, whatever the trials hold:
ties (zero variance), one trial, one value, NaN and infinite metrics, no results, no trials."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from pathlib import Path

import pytest
from report_files import START, charts, section, trial_config
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.results.sweep_record import SweepRecorder

NAN, INF = float("nan"), float("inf")
CHARTS = ("chart-val_acc", "chart-train_loss", "chart-params", "chart-macs", "chart-parallel", "chart-importance")
# trial id -> (params, lr, state, [(epoch, val_acc, train_loss)])
Trials = dict[str, tuple[int, float, str, list[tuple[int, float, float]]]]


def chance(n: int) -> Trials:
    """``n`` trials, different learning rates, every one at chance (0.1) at every epoch."""
    return {f"t{i}": (1000 + i, 0.05 * (i + 1), "finished", [(1, 0.1, 2.30), (2, 0.1, 2.30)]) for i in range(n)}


CASES: dict[str, tuple[Trials, dict[str, str]]] = {  # name -> (trials, skipped chart -> a phrase of its reason)
    "all-tie-at-chance": (chance(4), {"chart-importance": "zero variance"}),
    "one-trial": ({"t0": (1000, 0.1, "finished", [(1, 0.5, 2.0)])},
                  {"chart-parallel": "at least 2 trials", "chart-importance": "at least 3 scored trials"}),
    "one-value-of-every-hyperparameter": (
        {f"t{i}": (1000, 0.1, "finished", [(1, 0.3 + 0.1 * i, 2.0)]) for i in range(3)},
        {"chart-parallel": "no hyperparameter varies", "chart-importance": "0 varying"}),
    "nan-val_acc": ({f"t{i}": (1000 + i, 0.05 * (i + 1), "diverged", [(1, NAN, 2.0 + i)]) for i in range(3)},
                    {"chart-val_acc": "no trial reported a finite val_acc", "chart-params": "no trial has a finite val_acc",
                     "chart-macs": "no trial has a finite val_acc", "chart-parallel": "(0)", "chart-importance": "0 scored"}),
    "infinite-everything": ({f"t{i}": (1000 + i, 0.05 * (i + 1), "diverged", [(1, INF, INF), (2, -INF, NAN)]) for i in range(3)},
                            {"chart-val_acc": "NaN or infinite", "chart-train_loss": "NaN or infinite",
                             "chart-params": "finite val_acc", "chart-macs": "finite val_acc",
                             "chart-parallel": "(0)", "chart-importance": "0 scored"}),
    "two-scored-one-nan": ({"t0": (1000, 0.1, "finished", [(1, 0.4, 2.0)]), "t1": (2000, 0.2, "finished", [(1, 0.5, 1.9)]),
                            "t2": (3000, 0.3, "diverged", [(1, NAN, NAN)])},
                           {"chart-importance": "2 scored"}),
    "every-trial-failed-before-an-epoch": ({f"t{i}": (1000 + i, 0.1 * (i + 1), "error", []) for i in range(3)},
                                           {c: "finite" for c in CHARTS[:4]} | {"chart-parallel": "(0)", "chart-importance": "0 scored"}),
    "no-trials": ({}, {"chart-val_acc": "no trial folders", "chart-train_loss": "no trial folders",
                       "chart-params": "no trial has", "chart-macs": "no trial has", "chart-parallel": "(0)",
                       "chart-importance": "0 scored"}),
}  # fmt: skip


def write_degenerate_sweep(results: Path, name: str, trials: Trials) -> None:
    """A sweep folder as Tune and the driver leave it (results layout), with ``trials``."""
    sweep = results / "sweeps" / name
    clock = iter(START + timedelta(seconds=30 * i) for i in range(1000))
    recorder = SweepRecorder.start(sweep, name, "smoke_space", planned_trials=len(trials), now=lambda: next(clock))
    for trial_id, (params, lr, state, epochs) in trials.items():
        folder = sweep / f"trial_{trial_id}"
        folder.mkdir(parents=True)
        config = trial_config(results / "no-data", params, (8,), lr)
        (folder / "params.json").write_text(json.dumps(config))
        lines = [{"epoch": e, "val_acc": acc, "train_loss": loss, "trial_id": trial_id} for e, acc, loss in epochs]
        (folder / "result.json").write_text(
            "".join(json.dumps(line) + "\n" for line in lines)
        )  # NaN/Infinity as Tune writes them
        recorder.trial_started(trial_id, config, model="resnet")
        recorder.trial_ended(trial_id, state)
    recorder.ended("completed")


def strict_charts(html: str) -> dict[str, dict]:
    """The page's charts, each of which must be strict JSON (no NaN or Infinity tokens)."""
    for data in re.findall(r'<script type="application/json" id="chart-[\w-]+-data">(.*?)</script>', html, re.S):
        json.loads(data.replace("<\\/", "</"), parse_constant=lambda token: pytest.fail(f"bare {token} in a chart"))
    return charts(html)


@pytest.mark.parametrize("case", CASES)
def test_every_chart_of_a_degenerate_sweep_draws_or_says_why_not(tmp_path: Path, case: str) -> None:
    trials, skipped = CASES[case]
    results, out = tmp_path / "results", tmp_path / "r.html"
    write_degenerate_sweep(results, case, trials)
    result = CliRunner().invoke(app, ["report", case, "--results-dir", str(results), "--output", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    drawn = strict_charts(html)
    sweep_sections = "".join(section(html, s) for s in ("curves", "size", "hyperparameters"))
    shown = re.findall(r'<p class="note skipped">Skipped: (.*?)</p>', sweep_sections)
    assert len(shown) == len(skipped), shown
    for chart_id in CHARTS:
        if chart_id in skipped:
            assert chart_id not in drawn
            assert any(skipped[chart_id] in line for line in shown), (chart_id, shown)
        else:
            assert chart_id in drawn, (chart_id, shown)
    if "chart-val_acc" in drawn:  # the curves are the recorded values: NaN and infinities are gaps (null)
        finite = [
            acc if acc == acc and abs(acc) != INF else None for _, _, _, rows in trials.values() for _, acc, _ in rows
        ]
        plotted = [y for trace in drawn["chart-val_acc"]["data"] for y in trace["y"]]
        assert plotted == finite


def test_a_tie_keeps_the_parallel_chart_and_names_the_tied_value(tmp_path: Path) -> None:
    results, out = tmp_path / "results", tmp_path / "r.html"
    write_degenerate_sweep(results, "tie", chance(5))
    assert (
        CliRunner().invoke(app, ["report", "tie", "--results-dir", str(results), "--output", str(out)]).exit_code == 0
    )
    hyper = section(out.read_text(), "hyperparameters")
    assert "Skipped: hyperparameter importance: every scored trial has the same best val_acc (0.1000)" in hyper
    parallel = charts(out.read_text())["chart-parallel"]["data"][0]
    assert [d["label"] for d in parallel["dimensions"]] == ["train.lr", "best val_acc"]


def test_a_class_without_test_images_has_no_bar_and_the_page_says_so(tmp_path: Path, cifar_dir: Path) -> None:
    import numpy as np
    from report_files import write_promoted_sweep

    from raycifar.results.layout import entry_dir

    results = tmp_path / "results"
    _, row = write_promoted_sweep(results, cifar_dir, tmp_path)
    file = entry_dir(results, row["entry_id"]) / "predictions.npz"
    saved = dict(np.load(file))
    saved["labels"] = np.where(saved["labels"] < 8, saved["labels"], 0)  # no truck, no ship left
    np.savez(file, **saved)
    out = tmp_path / "r.html"
    result = CliRunner().invoke(app, ["report", row["entry_id"], "--results-dir", str(results), "--output", str(out)])
    assert result.exit_code == 0, result.output
    html = out.read_text()
    bars = strict_charts(html)["chart-per-class"]["data"][0]["y"]
    assert bars[8:] == [None, None] and all(isinstance(b, float) for b in bars[:8])
    assert "No test images of 2 class(es) (ship, truck): no bar." in section(html, "model")
