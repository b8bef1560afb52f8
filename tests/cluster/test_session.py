"""Connecting to Ray: a second local Ray on one machine is refused with a way out; resources."""

from __future__ import annotations

import pytest
import ray

from raycifar.cluster import session as ray_session
from raycifar.cluster.session import RunResources
from raycifar.errors import UserError


def test_a_running_local_ray_is_named_instead_of_starting_a_second(monkeypatch) -> None:
    monkeypatch.setattr(ray_session, "running_local_ray", lambda: "127.0.0.1:41234")
    monkeypatch.setattr(ray_session, "SHUTDOWN_GRACE_S", 0.0)
    with pytest.raises(UserError, match=r"already running on this machine \(127.0.0.1:41234\): .*--address 127.0.0.1:41234"):
        ray_session.connect(None)
    assert not ray.is_initialized()


def test_a_ray_that_is_shutting_down_is_waited_for(monkeypatch) -> None:
    seen = iter(["127.0.0.1:41234", "127.0.0.1:41234", None])
    monkeypatch.setattr(ray_session, "running_local_ray", lambda: next(seen))
    monkeypatch.setattr(ray_session.time, "sleep", lambda seconds: None)
    ray_session._refuse_a_second_local_ray()  # returns once the old instance is gone


def test_concurrency_is_what_the_cluster_fits_unless_given(monkeypatch) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 4.0, "GPU": 1.0})
    request = RunResources(workers=1, cpus=1.0, gpus=1.0)
    assert ray_session.resolve_gpus(request, local=False) == 1.0
    assert ray_session.concurrent_runs(request, 1.0, None) == 1  # one GPU: one trial at a time
    assert ray_session.concurrent_runs(request, 1.0, 4) == 4
    assert ray_session.concurrent_runs(RunResources(cpus=1.5), 0.0, None) == 2  # 4 CPUs // 1.5


def test_default_gpus_are_one_per_worker_when_the_cluster_has_them(monkeypatch) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 8.0, "GPU": 2.0})
    assert ray_session.resolve_gpus(RunResources(workers=2, cpus=2.0), local=True) == 2.0
    assert ray_session.resolve_gpus(RunResources(workers=3, cpus=3.0), local=True) == 0.0


def test_local_requests_beyond_the_machine_name_the_option(monkeypatch) -> None:
    monkeypatch.setattr(ray, "cluster_resources", lambda: {"CPU": 2.0})
    too_many = RunResources(cpus=3.0, cpu_request="--cpus-per-trial 3")
    with pytest.raises(UserError, match=r"^--cpus-per-trial 3 is more than this machine's 2 CPUs$"):
        ray_session.resolve_gpus(too_many, local=True)
    assert ray_session.resolve_gpus(too_many, local=False) == 0.0  # a cluster may still grow
    gpu = RunResources(gpus=1.0, gpu_request="--gpus-per-trial 1")
    with pytest.raises(UserError, match=r"^--gpus-per-trial 1 is more than this machine's 0 GPUs$"):
        ray_session.resolve_gpus(gpu, local=True)


@pytest.mark.parametrize(
    ("address", "local"),
    [(None, True), ("127.0.0.1:6379", True), ("ray://127.0.0.1:10001", True), ("[::1]:6379", True), ("::1", True),
     ("localhost:6379", True), ("10.0.0.1:6379", False), ("auto", False), ("head.example:6379", False)],
)  # fmt: skip
def test_loopback_addresses_are_told_from_the_network_ones(address: str | None, local: bool) -> None:
    assert ray_session.is_loopback(address) is local
