"""The torch process group of a Ray Train run, kept on loopback when Ray is local.

Ray Train's default torch backend starts a process group for every run, even a one-worker
one: rank 0 hosts a ``torch.distributed.TCPStore`` for the rendezvous, on the node's Ray
address. Whatever host it is given, torch's TCPStore server listens on every interface
(``::``, IPv4 and IPv6), and gloo listens on the address the machine's hostname resolves
to. On a laptop that is an open, unauthenticated port per trial.

:func:`torch_config` gives the ``TorchTrainer`` a :class:`LoopbackTorchConfig`:

- on a local Ray, one worker: no process group at all. Ray Train's ``prepare_model`` wraps
  nothing for one worker, ``get_device`` reads the worker's GPU ids from Ray, and the
  training loop calls no collective;
- on a local Ray, several workers: rank 0 opens a socket listening on 127.0.0.1 and hands
  it to its TCPStore; gloo and NCCL bind their transports to the loopback interface;
- on a cluster: Ray's own ``TorchConfig``, unchanged.

This module imports ``ray.train`` but not Ray Tune, and torch only inside the functions
that run on the workers: a run's controller unpickles the config and runs the backend's
hooks, and without torch it starts about 1.7 s sooner.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

import ray
import ray.train
from ray.train.backend import Backend, BackendConfig

from raycifar.cluster.session import is_loopback

if TYPE_CHECKING:
    from ray.train.torch import TorchConfig

LOOPBACK = "127.0.0.1"
LOOPBACK_INTERFACES = ("lo", "lo0")  # Linux, macOS
SHUTDOWN_TIMEOUT_S = 30  # as Ray's torch backend: how long the workers may take to leave their group

logger = logging.getLogger(__name__)


def ray_is_local(address: str | None) -> bool:
    """Whether the connected Ray runs on this machine only: ``address`` is None (the driver
    started it) or every live node's address is a loopback one (a Ray started on 127.0.0.1,
    such as ``cluster.local.yaml``'s fake nodes). Ray must be connected."""
    return address is None or all(is_loopback(node["NodeManagerAddress"]) for node in ray.nodes() if node["Alive"])


def torch_config(local: bool) -> LoopbackTorchConfig | TorchConfig:
    """The ``torch_config`` of a ``TorchTrainer``: loopback-only when ``local``, Ray's default otherwise."""
    if local:
        return LoopbackTorchConfig()
    from ray.train.torch import TorchConfig

    return TorchConfig()


@dataclass
class LoopbackTorchConfig(BackendConfig):
    """The torch backend config of a run whose workers all run on this machine: their process
    group stays on loopback (:class:`LoopbackTorchBackend`).

    ``backend`` (``None``: nccl with GPUs, else gloo), ``init_method`` (unused: the run
    makes its own store) and ``timeout_s`` mean what they mean in Ray's ``TorchConfig``,
    which ``TorchTrainer`` reads them as.
    """

    backend: str | None = None
    init_method: str = "env"
    timeout_s: int = 1800

    @property
    def backend_cls(self) -> type[Backend]:
        return LoopbackTorchBackend

    @property
    def train_func_context(self) -> type:
        return CudaDeviceContext

    def to_dict(self) -> dict:
        return {"backend": self.backend, "init_method": self.init_method, "timeout_s": self.timeout_s, "local": True}


class CudaDeviceContext:
    """Around each worker's training function, as Ray's torch config: make the worker's GPU
    (``ray.train.torch.get_device``) torch's current CUDA device."""

    def __enter__(self) -> None:
        import torch

        if torch.cuda.is_available():
            import ray.train.torch

            device = ray.train.torch.get_device()
            if device.type == "cuda":
                torch.cuda.set_device(device)

    def __exit__(self, *exc_info: object) -> bool:
        return False


class LoopbackTorchBackend(Backend):
    """The backend of a local :class:`LoopbackTorchConfig`: every worker runs on this machine."""

    share_cuda_visible_devices = True  # as Ray's: NCCL peers on one node see each other's GPUs

    def on_start(self, worker_group, backend_config: LoopbackTorchConfig) -> None:
        """Join the workers into one process group on 127.0.0.1; nothing for one worker."""
        world_size = len(worker_group)
        worker_group.execute(set_rank_env)
        if world_size == 1:
            return
        backend = backend_config.backend
        if backend is None:
            backend = "nccl" if worker_group.get_resources_per_worker().get("GPU", 0) > 0 else "gloo"
        port = worker_group.execute_single(0, listen_on_loopback)
        # Positional arguments only: the worker group's own first parameter is named ``rank``.
        args = (backend, world_size, port, backend_config.timeout_s)
        ray.get(
            [worker_group.execute_single_async(rank, join_process_group, rank, *args) for rank in range(world_size)]
        )

    def on_shutdown(self, worker_group, backend_config: LoopbackTorchConfig) -> None:
        """As Ray's: each worker leaves its process group (if any) and empties its CUDA cache,
        waited for at most :data:`SHUTDOWN_TIMEOUT_S`."""
        futures = worker_group.execute_async(leave_process_group)
        try:
            ray.get(futures, timeout=SHUTDOWN_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            logger.warning("the workers did not leave their process group within %s s", SHUTDOWN_TIMEOUT_S)


def loopback_interface() -> str | None:
    """The name of this machine's loopback network interface (``lo``, ``lo0``), if found."""
    names = {name for _, name in socket.if_nameindex()}
    return next((name for name in LOOPBACK_INTERFACES if name in names), None)


def set_rank_env() -> None:
    """Ray Train worker: set torchrun's ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE`` and ``NODE_RANK`` from the Train context, as Ray's backend does."""
    context = ray.train.get_context()
    os.environ.update(
        RANK=str(context.get_world_rank()), WORLD_SIZE=str(context.get_world_size()),
        LOCAL_RANK=str(context.get_local_rank()), LOCAL_WORLD_SIZE=str(context.get_local_world_size()),
        NODE_RANK=str(context.get_node_rank()),
    )  # fmt: skip


_store_socket: socket.socket | None = None  # rank 0's, from listen_on_loopback until its store takes it


def listen_on_loopback() -> int:
    """Rank 0: open the store's socket, listening on 127.0.0.1 only; returns its port."""
    global _store_socket
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind((LOOPBACK, 0))
    sock.listen()
    _store_socket = sock
    return sock.getsockname()[1]


def join_process_group(rank: int, backend: str, world_size: int, port: int, timeout_s: float) -> None:
    """Join the default process group through a TCPStore on ``127.0.0.1:port``.

    Rank 0 hosts the store on the socket :func:`listen_on_loopback` opened in its process
    (torch's own would listen on all interfaces); gloo and NCCL connect over loopback.

    Raises:
        RuntimeError: rank 0 without a socket from :func:`listen_on_loopback`.
        torch.distributed.DistStoreError: the ranks did not all arrive within ``timeout_s``.
    """
    global _store_socket
    os.environ.update(MASTER_ADDR=LOOPBACK, MASTER_PORT=str(port))
    interface = loopback_interface()
    if interface:
        os.environ.update(GLOO_SOCKET_IFNAME=interface, NCCL_SOCKET_IFNAME=interface)
    else:
        logger.warning("no loopback interface %s: gloo and NCCL bind where the hostname resolves", LOOPBACK_INTERFACES)
    if "TORCH_NCCL_BLOCKING_WAIT" not in os.environ:  # as Ray: a timed-out NCCL collective fails the worker
        os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    import torch.distributed as dist

    timeout = timedelta(seconds=timeout_s)
    if rank == 0:
        if _store_socket is None:
            raise RuntimeError("rank 0 joins the process group after listen_on_loopback, in the same process")
        listen_fd, _store_socket = _store_socket.detach(), None  # the store owns the socket now
        store = dist.TCPStore(LOOPBACK, port, world_size, True, timeout, master_listen_fd=listen_fd, use_libuv=True)
    else:
        store = dist.TCPStore(LOOPBACK, port, world_size, False, timeout)
    dist.init_process_group(backend, store=store, rank=rank, world_size=world_size, timeout=timeout)


def leave_process_group() -> None:
    """Ray Train worker, at the run's end: destroy the process group if this worker is in
    one, and free the CUDA memory torch's allocator caches."""
    import torch
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
