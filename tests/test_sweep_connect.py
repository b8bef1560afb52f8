"""Connecting to Ray: a second local Ray on one machine is refused with a way out."""

from __future__ import annotations

from pathlib import Path

import pytest
import ray._private.services

from raycifar.errors import UserError
from raycifar.sweep import SweepOptions, connect


def test_a_running_local_ray_is_named_instead_of_starting_a_second(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ray._private.services, "find_gcs_addresses", lambda: ["127.0.0.1:41234"])
    options = SweepOptions(results_dir=tmp_path, sweep_name="s")
    with pytest.raises(UserError, match=r"already running on this machine \(127.0.0.1:41234\): .*--address 127.0.0.1:41234"):
        connect(options)
    assert not ray.is_initialized()
