"""How tensors run on the training device (autocast dtype, memory format, compilation), and
the process-wide settings of one run (seeds, cuDNN and determinism switches)."""

from __future__ import annotations

import importlib.util
import os
import random
import shutil
import sys
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from raycifar.config import CompileSwitch, TrainConfig


@dataclass(frozen=True)
class Runtime:
    """How tensors run on the training device: autocast dtype, memory format, compilation
    (``compile``: always, never, or ``"auto"``: when it pays, decided by the training loop
    with :mod:`raycifar.train.compile_policy`)."""

    device: torch.device
    autocast_dtype: torch.dtype | None = None  # None: float32 throughout
    channels_last: bool = False
    compile: CompileSwitch = False

    def autocast(self) -> AbstractContextManager:
        """The autocast region for forward passes (a no-op in float32)."""
        dtype = self.autocast_dtype or torch.float32
        return torch.autocast(self.device.type, dtype=dtype, enabled=self.autocast_dtype is not None)

    def prepare(self, images: torch.Tensor) -> torch.Tensor:
        """A batch in the memory format the model expects."""
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images


FLOAT32_CPU = Runtime(torch.device("cpu"))


def inductor_can_build(device: torch.device) -> bool:
    """Whether torch.compile's default backend can build kernels for ``device``: CUDA with
    Triton installed, or a CPU with a C++ compiler (``$CXX``, else ``g++``/``clang++``)."""
    if device.type == "cuda":
        return importlib.util.find_spec("triton") is not None
    if device.type == "cpu":
        default = "clang++" if sys.platform == "darwin" else "g++"
        return shutil.which(os.environ.get("CXX") or default) is not None
    return False


def resolve_runtime(train: TrainConfig, device: torch.device) -> Runtime:
    """The runtime ``train`` asks for on ``device``. Precision ``auto``: bf16 on a CUDA GPU that
    has it; compile ``auto`` stays ``"auto"`` (decided per trial, by timings) where inductor
    can build kernels for ``device`` (:func:`inductor_can_build`), else, and in a
    ``deterministic`` run, it is off."""
    on_cuda = device.type == "cuda"
    bf16 = train.precision == "bf16" or (train.precision == "auto" and on_cuda and torch.cuda.is_bf16_supported())
    auto = train.compile == "auto" and not train.deterministic
    return Runtime(
        device=device,
        autocast_dtype=torch.bfloat16 if bf16 else None,
        channels_last=train.channels_last,
        compile="auto" if auto and inductor_can_build(device) else (train.compile is True),
    )


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (every device)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


@contextmanager
def global_settings(train: TrainConfig, seed: int) -> Iterator[None]:
    """Seed every generator and set torch's process-wide switches for one run; restore them after.

    ``deterministic`` turns on torch's deterministic algorithms (warning where an op has
    none), cuDNN's deterministic mode and NaN-filled uninitialised memory, and turns
    ``cudnn_benchmark`` off.
    """
    cudnn = torch.backends.cudnn
    saved = (
        cudnn.benchmark,
        cudnn.deterministic,
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
    )
    if train.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # deterministic cuBLAS
    cudnn.benchmark = train.cudnn_benchmark and not train.deterministic
    cudnn.deterministic = train.deterministic
    _deterministic_algorithms(train.deterministic, warn_only=True)
    seed_everything(seed)
    try:
        yield
    finally:
        cudnn.benchmark, cudnn.deterministic = saved[0], saved[1]
        _deterministic_algorithms(saved[2], warn_only=saved[3])


def _deterministic_algorithms(on: bool, warn_only: bool) -> None:
    """torch's deterministic-algorithms switch, set only when it changes: setting it imports
    inductor's config (about 1 s in a fresh process, before a trial's first step)."""
    now = (torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled())
    if now != (on, warn_only) and (on or now[0]):  # off is off, whatever warn_only says
        torch.use_deterministic_algorithms(on, warn_only=warn_only)
