"""``raycifar report``: a sweep folder and its promoted entry built by hand, rendered to
HTML, and every section checked for its content (charts read back from the page)."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
from board_files import exported_checkpoint
from report_files import BUDGET, PARETO, TRIALS, charts, section, trial_config, write_promoted_sweep, write_sweep
from typer.testing import CliRunner

from raycifar.cli import app
from raycifar.display import Quiet
from raycifar.entries.promote import promote
from raycifar.pipeline.steps import write_sweep_report
from raycifar.report.gather import pareto_front, rungs
from raycifar.report.html import SECTIONS, duration, pct
from raycifar.report.images import PER_PAIR
from raycifar.results.layout import entry_dir
from raycifar.results.sweep_record import SweepRecorder, read_record


def report_of(target: str, results: Path, out: Path, *extra: str) -> str:
    result = CliRunner().invoke(app, ["report", target, "--results-dir", str(results), "--output", str(out), *extra])
    assert result.exit_code == 0, result.output
    assert f"report: {out}" in result.output.replace("\n", "")
    return out.read_text()


def test_pareto_front_of_a_hand_built_case() -> None:
    points = [(100, 0.5), (200, 0.7), (150, 0.4), (200, 0.6), (300, 0.7), (50, 0.3)]
    assert pareto_front(points) == [5, 0, 1]  # (300, .7) ties (200, .7) on accuracy with more params


def test_rungs_are_where_asha_may_stop_a_trial() -> None:
    assert rungs(1, 2, 4) == [1, 2]
    assert rungs(2, 3, 20) == [2, 6, 18]
    assert rungs(5, 2, 3) == []  # the grace period is capped at the epochs: no rung before the end


def test_a_sweep_report_shows_every_section(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    sweep, row = write_promoted_sweep(results, cifar_dir, tmp_path)
    html = report_of("s", results, tmp_path / "r.html")
    assert html.count("<script>") == 2 and "plotly.js" in html[:300_000], "plotly's bundle is inlined once"
    assert 'src="http' not in html and "cdn." not in html.split("</head>")[1], "nothing is fetched"
    for section_id, _ in SECTIONS:
        assert f'href="#{section_id}"' in html and f'<section id="{section_id}">' in html
    figures = charts(html)

    summary = section(html, "summary")
    record = read_record(sweep)
    for key, value in {"trials run": "5", "stopped early": "2", "failed": "1", "promoted entry": row["entry_id"],
                       "wall time": duration((record.ended_at - record.started_at).total_seconds()),
                       "device-hours": "0.25 CPU core-hours", "scheduler": "ASHA (grace_period 1, reduction_factor 2)"}.items():  # fmt: skip
        assert f'<div class="k">{key}</div><div class="v">{value}</div>' in summary, key

    for metric in ("val_acc", "train_loss"):
        traces = figures[f"chart-{metric}"]["data"]
        assert len(traces) == len(TRIALS), "one trace per trial"
        by_trial = {t["name"].split()[0]: t for t in traces}
        for trial_id, (*_, state, epochs) in TRIALS.items():
            assert by_trial[trial_id]["x"] == [e for e, *_ in epochs]
            stopped = [s == "x" for s in by_trial[trial_id]["marker"]["symbol"]]
            assert stopped == [state == "stopped_early" and e == epochs[-1][0] for e, *_ in epochs], trial_id
        lines = [shape["x0"] for shape in figures[f"chart-{metric}"]["layout"]["shapes"]]
        assert lines == [1, 2], "rungs of smoke_space (grace 1, factor 2) over 4 epochs"

    size = figures["chart-params"]
    front = next(t for t in size["data"] if t["name"] == "Pareto front")
    assert front["x"] == [TRIALS[t][0] for t in PARETO]
    assert [s["x0"] for s in size["layout"]["shapes"]] == [BUDGET]
    assert len(figures["chart-macs"]["data"][0]["x"]) == 4, "every trial that reported, against its MACs"

    labels = [d["label"] for d in figures["chart-parallel"]["data"][0]["dimensions"]]
    assert labels == ["model.widths", "train.lr", "best val_acc"]
    assert sorted(figures["chart-importance"]["data"][0]["y"]) == ["model.widths", "train.lr"]
    assert "in-memory study" in section(html, "hyperparameters")

    saved = np.load(entry_dir(results, row["entry_id"]) / "predictions.npz")
    confusion = figures["chart-confusion"]["data"][0]
    assert np.asarray(confusion["z"]).sum() == len(saved["labels"]) == 200
    assert confusion["x"] == [str(n) for n in saved["class_names"]]
    model = section(html, "model")
    assert f"{pct(row['test_acc_ci_low'], 2)}–{pct(row['test_acc_ci_high'], 2)}" in model
    assert model.count("<tr>") == 1 + 3, "a header and the three most confused pairs"

    mistakes = section(html, "mistakes")
    shown = sum(min(PER_PAIR, int(n)) for n in re.findall(r"\((\d+) of \d+, ", mistakes))
    assert shown > 0 and mistakes.count("<figure>") == shown
    assert mistakes.count('src="data:image/png;base64,') == 2 * shown, "each image with its Grad-CAM beside it"

    provenance = section(html, "provenance")
    assert f"<td>{row['seed']}</td>" in provenance and "<td>Ray</td>" in provenance
    assert "&quot;data_dir&quot;" in provenance, "the resolved config"


def test_without_the_test_images_the_grid_says_so_and_the_rest_renders(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    write_promoted_sweep(results, cifar_dir, tmp_path)
    (tmp_path / "empty").mkdir()
    html = report_of("s", results, tmp_path / "r.html", "--data-dir", str(tmp_path / "empty"))
    assert "the test images are not available" in section(html, "mistakes")
    assert "<figure>" not in html
    assert np.asarray(charts(html)["chart-confusion"]["data"][0]["z"]).sum() == 200


def test_an_entry_trained_without_a_sweep(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    checkpoint = exported_checkpoint(tmp_path / "checkpoint", cifar_dir)
    row = promote(checkpoint, results, sweep="run1", trial_id="run1", val_acc=0.5, epochs=1, source_checkpoint="c")
    html = report_of(row["entry_id"], results, tmp_path / "r.html")
    assert "did not come from a sweep" in section(html, "summary")
    assert "no sweep" in section(html, "curves") and "chart-val_acc" not in html
    assert np.asarray(charts(html)["chart-confusion"]["data"][0]["z"]).sum() == 200


def test_an_entry_retrained_over_seeds_shows_their_mean_and_spread(tmp_path: Path, cifar_dir: Path) -> None:
    import statistics

    results = tmp_path / "results"
    checkpoint = exported_checkpoint(tmp_path / "checkpoint", cifar_dir)
    row = promote(checkpoint, results, sweep="final", trial_id="final-seed0", val_acc=0.5, epochs=1,
                  source_checkpoint="c", other_seed_test_accs=[0.30, 0.34])  # fmt: skip
    accuracies = [row["test_acc"], 0.30, 0.34]
    model = section(report_of(row["entry_id"], results, tmp_path / "r.html"), "model")
    assert "Retrained with 3 seeds" in model
    assert f"{100 * statistics.mean(accuracies):.2f}% ± {100 * statistics.stdev(accuracies):.2f}%" in model


def test_importance_is_skipped_with_fewer_than_three_trials(tmp_path: Path, cifar_dir: Path) -> None:
    sweep = write_sweep(tmp_path / "results", cifar_dir)
    for trial_id in ("t1", "t2", "t5"):
        shutil.rmtree(sweep / f"trial_{trial_id}")
    html = report_of("s", tmp_path / "results", tmp_path / "r.html")
    assert "Skipped: hyperparameter importance: needs at least 3 scored trials" in section(html, "hyperparameters")
    assert "no promoted model" in section(html, "model")


def test_an_unknown_target_is_one_line(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["report", "nope", "--results-dir", str(tmp_path), "--output", str(tmp_path / "r.html")]
    )
    assert result.exit_code == 2
    assert "'nope': neither a sweep in" in result.output and len(result.output.strip().splitlines()) == 1


def test_the_sweep_writes_its_report_and_a_failure_is_told(tmp_path: Path, cifar_dir: Path) -> None:
    results = tmp_path / "results"
    write_promoted_sweep(results, cifar_dir, tmp_path)
    assert write_sweep_report(results, "s", Quiet()) == results / "sweeps" / "s" / "report.html"
    assert '<section id="mistakes">' in (results / "sweeps" / "s" / "report.html").read_text()

    told: list[str] = []

    class Recording(Quiet):
        def info(self, message: str) -> None:
            told.append(message)

    assert write_sweep_report(results, "gone", Recording()) is None
    assert told and "raycifar report gone --results-dir" in told[0]


def test_the_rungs_come_from_the_sweep_record_when_the_space_file_is_gone(tmp_path: Path) -> None:
    """A sweep of a custom space file keeps its scheduler settings in its record."""
    from raycifar.report.gather import gather_sweep
    from raycifar.results.sweep_record import SweepRecorder, read_record

    sweep_dir = tmp_path / "sweeps" / "custom"
    sweep_dir.mkdir(parents=True)
    SweepRecorder.start(sweep_dir, "custom", "a-space-file-deleted-since", 0, scheduler={"grace_period": 2, "reduction_factor": 3})
    assert read_record(sweep_dir).scheduler == {"grace_period": 2, "reduction_factor": 3}
    gathered = gather_sweep(sweep_dir)
    assert "the sweep record" in str(gathered)
    assert "grace_period" in str(gathered) and "'reduction_factor': 3" in str(gathered)


# trial -> [(epoch, val_acc, val_acc_shift)] of a sweep selected on the mean of the two
SHIFTED = {
    "a": [(1, 0.50, 0.30), (2, 0.60, 0.35)],  # best mean: epoch 2
    "b": [(1, 0.55, 0.45), (2, 0.58, 0.40)],  # best mean: epoch 1 (0.50 against 0.49)
    "c": [(1, 0.40, 0.30), (2, 0.52, 0.33)],  # epoch 2, beaten by a on both
}


def test_a_sweep_scored_on_the_shifted_twin_shows_clean_against_shifted_with_its_front(
    tmp_path: Path, cifar_dir: Path
) -> None:
    results = tmp_path / "results"
    sweep = results / "sweeps" / "m"
    recorder = SweepRecorder.start(sweep, "m", "smoke_space", planned_trials=len(SHIFTED))
    for trial_id, epochs in SHIFTED.items():
        (sweep / f"trial_{trial_id}").mkdir(parents=True)
        config = {**trial_config(cifar_dir, 1000, (8,), 0.1), "select": "mean"}
        (sweep / f"trial_{trial_id}" / "params.json").write_text(json.dumps(config))
        rows = [{"epoch": e, "val_acc": c, "val_acc_shift": s, "val_acc_mean": (c + s) / 2, "train_loss": 1.0,
                 "trial_id": trial_id} for e, c, s in epochs]  # fmt: skip
        (sweep / f"trial_{trial_id}" / "result.json").write_text("".join(json.dumps(r) + "\n" for r in rows))
        recorder.trial_started(trial_id, config, model="resnet")
        recorder.trial_ended(trial_id, "finished")
    recorder.ended("completed")
    html = report_of("m", results, tmp_path / "r.html")

    best = {t: max(rows, key=lambda r: (r[1] + r[2], r[0]))[1:] for t, rows in SHIFTED.items()}  # by the mean
    front = [t for t, (c, s) in best.items() if not any(c2 >= c and s2 >= s and (c2, s2) != (c, s) for c2, s2 in best.values())]
    assert sorted(front) == ["a", "b"]
    figure = charts(html)["chart-shift"]
    points, line = figure["data"]
    assert sorted(zip(points["x"], points["y"], strict=True)) == sorted(best.values())
    assert sorted(zip(line["x"], line["y"], strict=True)) == sorted(best[t] for t in front)
    assert "Pareto front (no other trial is as good or better on both): a, b" in section(html, "size")
    assert "chart-val_acc_shift" in charts(html)

    write_sweep(results, cifar_dir)  # selected on val_acc: no shifted score, no chart of it
    plain = report_of("s", results, tmp_path / "plain.html")
    assert "chart-shift" not in charts(plain) and "chart-val_acc_shift" not in charts(plain)
