"""The loopback process group of a local Ray Train run, without Ray: two processes join it
the way Ray Train's workers do, and every socket they listen on is on loopback."""

from __future__ import annotations

import multiprocessing
import socket
from collections.abc import Callable

import psutil
import ray
from ray.train.torch import TorchConfig
from test_loopback import is_loopback

from raycifar.train.process_group import LoopbackTorchBackend, ray_is_local, torch_config


def _other_interface() -> str | None:
    """A network interface of this machine with a non-loopback IPv4 address, if any."""
    for name, addresses in psutil.net_if_addrs().items():
        if any(a.family == socket.AF_INET and not is_loopback(a.address) for a in addresses):
            return name
    return None


def _rank(rank: int, ports: multiprocessing.Queue, out: multiprocessing.Queue, interface: str | None) -> None:
    import os

    import torch
    import torch.distributed as dist

    from raycifar.train.process_group import join_process_group, listen_on_loopback

    if interface:  # a setting that would put gloo on the network; the local backend overrides it
        os.environ["GLOO_SOCKET_IFNAME"] = interface
    if rank == 0:
        port = listen_on_loopback()
        ports.put(port)
        ports.put(port)
    port = ports.get()
    join_process_group(rank, "gloo", world_size=2, port=port, timeout_s=60)
    total = torch.tensor([rank + 1.0])
    dist.all_reduce(total)
    listening = [(c.laddr.ip, c.laddr.port) for c in psutil.Process().net_connections("tcp") if c.status == "LISTEN"]
    out.put((rank, port, float(total), listening))
    dist.barrier()
    dist.destroy_process_group()


def run_two_ranks(target: Callable, args_of: Callable[[int], tuple]) -> list:
    """Run ``target(rank, ports, out, *args_of(rank))`` in two spawned processes (ranks 0 and
    1; rank 0 puts its store's port on ``ports`` once per rank); the two reports each put on
    ``out``, sorted. Each process must exit 0."""
    spawn = multiprocessing.get_context("spawn")
    ports, out = spawn.Queue(), spawn.Queue()
    workers = [spawn.Process(target=target, args=(rank, ports, out, *args_of(rank))) for rank in (0, 1)]
    for worker in workers:
        worker.start()
    reports = sorted(out.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    return reports


def test_two_ranks_reduce_over_a_process_group_that_listens_on_loopback_only() -> None:
    interface = _other_interface()
    reports = run_two_ranks(_rank, lambda rank: (interface,))
    assert [total for _, _, total, _ in reports] == [3.0, 3.0], "1 + 2, reduced across both ranks"
    (_, store_port, _, rank0), (_, _, _, rank1) = reports
    assert ("127.0.0.1", store_port) in rank0, "rank 0 hosts the store on loopback"
    assert rank1, "gloo listens in every rank"
    exposed = [ip for ip, _ in rank0 + rank1 if not is_loopback(ip)]
    assert not exposed, f"listening beyond loopback: {exposed}"


def test_a_cluster_run_uses_ray_s_own_torch_backend() -> None:
    assert torch_config(local=False).backend_cls is TorchConfig().backend_cls
    assert torch_config(local=True).backend_cls is LoopbackTorchBackend


def test_ray_is_local_when_the_driver_started_it_or_every_node_is_on_loopback(monkeypatch) -> None:
    nodes = [{"NodeManagerAddress": "127.0.0.1", "Alive": True}, {"NodeManagerAddress": "10.0.0.5", "Alive": False}]
    monkeypatch.setattr(ray, "nodes", lambda: nodes)
    assert ray_is_local("auto"), "a fake multi-node cluster on 127.0.0.1 (a dead node does not count)"
    nodes[1]["Alive"] = True
    assert not ray_is_local("auto") and not ray_is_local("127.0.0.1:6379"), "a node on the network"
    assert ray_is_local(None), "the driver started Ray itself"
