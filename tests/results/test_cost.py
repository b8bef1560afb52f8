"""A sweep's cost without Ray: device-hours from reported epochs (raycifar.results.cost), the epoch
times the loop measures, and what the worker says of its hardware. Every expected figure is
worked out by hand in the comments."""

from __future__ import annotations

import math
import os

import pytest
import torch

from raycifar.results.cost import CPU, GPU, Cost, epoch_cost, hours_unit, results_cost, total
from raycifar.train import loop, scoring
from raycifar.train.worker import held_hardware


def result(train: float, evaluation: float, workers: int = 1, cpus: float = 1.0, gpus: float = 0.0) -> dict:
    """One reported epoch, as the worker reports it."""
    return {"train_seconds": train, "eval_seconds": evaluation, "world_size": workers, "worker_cpus": cpus,
            "worker_gpus": gpus, "device": "cuda" if gpus else "cpu"}  # fmt: skip


def test_a_cpu_epoch_costs_its_seconds_times_workers_times_cores() -> None:
    cost = epoch_cost(result(100.0, 20.0, workers=2, cpus=3.0))
    assert cost == Cost({CPU: 0.2}, 100.0, 20.0)  # (100 + 20) s × 2 workers × 3 cores = 720 core-s = 0.2 h
    assert cost.describe() == "0.2000 CPU core-hours (100 s training, 20 s evaluation)"


def test_a_gpu_epoch_costs_gpu_hours_and_ignores_the_cores_it_holds() -> None:
    cost = epoch_cost(result(90.0, 30.0, workers=2, cpus=8.0, gpus=0.5))
    # (90 + 30) s × 2 workers × 0.5 GPU = 120 GPU-s = 1/30 GPU-hour
    assert (cost.device, cost.device_hours) == (GPU, pytest.approx(1 / 30))
    assert cost.spent() == "0.0333 GPU-hours"


def test_a_trials_epochs_add_up_and_strings_from_progress_csv_count_too() -> None:
    csv_row = {key: str(value) for key, value in result(30.0, 6.0).items()}
    cost = results_cost([result(100.0, 20.0, 2, 3.0), result(110.0, 10.0, 2, 3.0), csv_row])
    # (120 + 120) × 2 × 3 + 36 × 1 × 1 = 1476 core-s
    assert cost.hours == {CPU: pytest.approx(1476 / 3600)}
    assert (cost.train_seconds, cost.eval_seconds) == (240.0, 36.0)


def test_results_of_an_older_raycifar_make_the_cost_unknown() -> None:
    old = {"train_seconds": 12.0, "world_size": 1}  # no eval_seconds, no resources held
    assert epoch_cost(old) is None
    assert results_cost([result(1.0, 1.0), old]) is None
    assert total([Cost({CPU: 1.0}, 1.0, 1.0), None]) is None
    assert results_cost([]) == Cost(), "a trial that reported nothing cost nothing yet"


def test_gpu_and_cpu_hours_are_kept_apart_and_name_no_single_device() -> None:
    both = total([epoch_cost(result(3600.0, 0.0, gpus=1.0)), epoch_cost(result(1800.0, 0.0, cpus=2.0))])
    assert both.hours == {GPU: 1.0, CPU: 1.0} and both.device is None and both.device_hours is None
    assert both.spent() == "1.0000 CPU core-hours + 1.0000 GPU-hours"


def test_the_unit_of_a_leaderboard_rows_device_hours() -> None:
    assert [hours_unit(d) for d in ("GPU", "CPU", None)] == ["GPU-hours", "CPU core-hours", "device-hours"]


def test_the_worker_reports_its_device_type_and_the_resources_it_holds() -> None:
    assert held_hardware(torch.device("cuda", 0), {"CPU": 4.0, "GPU": 1.0}) == {
        "device": "cuda", "worker_cpus": 4.0, "worker_gpus": 1.0, "worker_pid": os.getpid(),
    }  # fmt: skip
    assert held_hardware(torch.device("cpu"), {"CPU": 2.0}) == {
        "device": "cpu", "worker_cpus": 2.0, "worker_gpus": 0.0, "worker_pid": os.getpid(),
    }  # fmt: skip


class FakeClock:
    """``time.perf_counter`` that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize("val_loss", [0.5, math.nan], ids=["evaluated", "diverged in evaluation"])
def test_an_epoch_reports_its_training_and_evaluation_seconds_apart(monkeypatch, val_loss: float) -> None:
    from test_faults import training

    run = training(lr=0.1)
    clock = FakeClock()

    def fake_train(*args: object) -> float:
        clock.now += 5.0
        return 1.0

    def fake_score(*args: object) -> scoring.Scores:
        clock.now += 7.0
        return scoring.Scores(val_loss, 0.25, 256, None)

    monkeypatch.setattr(loop.time, "perf_counter", clock)
    monkeypatch.setattr(loop, "train_epoch", fake_train)
    monkeypatch.setattr(loop, "score", fake_score)
    metrics = run.run_epoch(0)
    assert (metrics["train_seconds"], metrics["eval_seconds"]) == (5.0, 7.0)


def test_an_epoch_that_diverged_in_training_was_not_evaluated(monkeypatch) -> None:
    from test_faults import training

    run = training(lr=0.1)
    monkeypatch.setattr(loop, "train_epoch", lambda *args: math.nan)
    assert run.run_epoch(0)["eval_seconds"] == 0.0
