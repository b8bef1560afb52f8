"""Connecting to Ray: a second local Ray on one machine is refused with a way out."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray._private.services

from raycifar.errors import UserError
from raycifar.sweep import SweepOptions, connect


def test_a_running_local_ray_is_named_instead_of_starting_a_second(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ray._private.services, "find_gcs_addresses", lambda: ["127.0.0.1:41234"])
    monkeypatch.setattr("raycifar.sweep.SHUTDOWN_GRACE_S", 0.0)
    options = SweepOptions(results_dir=tmp_path, sweep_name="s")
    with pytest.raises(UserError, match=r"already running on this machine \(127.0.0.1:41234\): .*--address 127.0.0.1:41234"):
        connect(options)
    assert not ray.is_initialized()


def test_concurrency_is_what_the_cluster_fits_unless_given(monkeypatch, tmp_path: Path) -> None:
    from raycifar import sweep

    monkeypatch.setattr(sweep.ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 1.0})
    fitted = SweepOptions(results_dir=tmp_path, sweep_name="s", address="auto", gpus_per_trial=1)
    assert sweep.trial_resources(fitted) == (1, 1)
    wider = SweepOptions(results_dir=tmp_path, sweep_name="s", address="auto", gpus_per_trial=1, max_concurrent_trials=4)
    assert sweep.trial_resources(wider) == (1, 4)


def test_a_ray_that_is_shutting_down_is_waited_for(monkeypatch, tmp_path: Path) -> None:
    from raycifar import sweep

    seen = iter([["127.0.0.1:41234"], ["127.0.0.1:41234"], []])
    monkeypatch.setattr(ray._private.services, "find_gcs_addresses", lambda: next(seen))
    sweep._refuse_a_second_local_ray()  # returns once the old instance is gone
