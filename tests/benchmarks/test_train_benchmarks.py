"""The training benchmarks run at toy scale and print real figures (no timing assertions)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from conftest import REPO

TINY = """\
budget: 100000
arch: {depths: [1, 1], base_width: 8}
train: {lr: 0.2, batch_size: 64, epochs: 6, schedule: linear, warmup_epochs: 1, label_smoothing: 0.1,
        ema_decay: 0.9, tta: flip, decay_norm_and_bias: false}
"""


def run_script(name: str, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / name), *args], check=False, cwd=cwd, capture_output=True,
        text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_train_throughput_reports_each_variant(tmp_path: Path) -> None:
    result = run_script("train_throughput.py", "--models", "resnet8-w16", "--variants", "eager,channels_last",
                        "--batch-size", "16", "--steps", "2", "--warmup-steps", "1", "--rounds", "1", "--format", "json", cwd=tmp_path)  # fmt: skip
    report = json.loads(result.stdout)
    assert report["batch_size"] == 16 and report["threads"] >= 1
    assert [(r["model"], r["variant"]) for r in report["results"]] == [
        ("resnet8-w16", "eager"),
        ("resnet8-w16", "channels_last"),
    ]
    assert all(r["images_per_s"] > 0 and r["params"] == 78_042 for r in report["results"])
    assert report["results"][0]["vs_first"] == 1.0


def test_time_to_accuracy_stops_at_the_target(tmp_path: Path, cifar_dir: Path) -> None:
    (tmp_path / "tiny.yaml").write_text(TINY)
    result = run_script("time_to_accuracy.py", "--config", "tiny.yaml", "--data-dir", str(cifar_dir), "--target", "0.75",
                        "--test-subset", "100", "--no-ray", "--format", "json", cwd=tmp_path)  # fmt: skip
    report = json.loads(result.stdout)["in_process"]
    assert report["reached_s"] is not None and 1 < report["epochs"] < 6, "the synthetic classes take a few epochs"
    assert report["log"][-1]["test_acc_tta"] >= 0.75 > max((e["test_acc_tta"] for e in report["log"][:-1]), default=0.0)
    assert report["train_images"] == 600 * report["epochs"]
    assert report["reached_s"] == report["train_s"]
