"""Under FIFO, which stops no trial early, a ``TorchTrainer`` trial's process runs the next
trial too (Tune's ``reuse_actors``), each time with a new Ray Train run; under schedulers
that stop trials, it is not reused (:func:`raycifar.sweep.driver.reuses_trial_processes`)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from raycifar.sweep.driver import reuses_trial_processes
from raycifar.sweep.options import IN_TRIAL, TORCH_TRAINER

FIFO_SPACE = """\
description: two TorchTrainer trials, one after the other
budget: 100000
num_samples: 2
arch: {depths: [1, 1], base_width: 8}
train: {lr: {loguniform: [0.05, 0.2]}, batch_size: 64, epochs: 1}
scheduler: {name: fifo}
"""


@pytest.mark.slow
def test_fifo_torch_trainer_trials_run_one_after_another_in_one_trial_process(
    tmp_path: Path, cifar_dir: Path, ray_address: str, raycifar
) -> None:
    (tmp_path / "fifo.yaml").write_text(FIFO_SPACE)
    results = tmp_path / "results"
    raycifar(
        "sweep", "fifo.yaml", "--data-dir", str(cifar_dir), "--results-dir", str(results), "--name", "fifo",
        "--torch-trainer", "--max-concurrent-trials", "1", "--address", ray_address, "--wandb", "off", "--no-dashboard", cwd=tmp_path,
    )  # fmt: skip
    reports = [
        json.loads(p.read_text().splitlines()[-1])
        for p in sorted((results / "sweeps" / "fifo").glob("trial_*/result.json"))
    ]
    assert len(reports) == 2 and all(r["epoch"] == 1 for r in reports), reports
    assert reports[0]["pid"] == reports[1]["pid"], "the second trial ran in the first one's Tune process"
    assert reports[0]["worker_pid"] != reports[1]["worker_pid"], "each trial had a Ray Train run of its own"


def test_only_trials_that_hear_of_a_stop_reuse_their_process() -> None:
    assert reuses_trial_processes(IN_TRIAL, "asha"), "an in-trial trial ends at its next report"
    assert reuses_trial_processes(TORCH_TRAINER, "fifo"), "FIFO stops no trial early"
    for scheduler in ("asha", "hyperband", "median", "pbt"):
        assert not reuses_trial_processes(TORCH_TRAINER, scheduler), scheduler
