"""When ``compile: auto`` compiles: only when the training left pays for the compilation.

The rule (:func:`should_compile`): compile when the expected training time of the epochs
left is at least :data:`PAYBACK` (10) times the expected compile cost. The training time is
the epochs left × the optimizer steps per epoch × the eager seconds per step, measured in the
trial's first epoch or by an earlier ``auto`` trial of the same architecture on this node.
The compile cost is :data:`HIT_SECONDS` (2 s) when the architecture was compiled on this node
before (inductor's on-disk caches then hold its kernels), else the median of the misses
measured on this node (:data:`MISS_SECONDS`, 60 s, before the first one).

What the node learned is its record, a JSON file (:data:`RECORD_FILE`) in the node's
inductor cache folder (:func:`node_cache_dir`), so that the record and the caches it
describes live and go together: eager seconds per step and measured compile costs (hits and
misses), by architecture key (:func:`arch_key`). It is replaced whole under a file lock; a
missing, unreadable or corrupt record reads as empty, and a record that cannot be written is
left as it was: the record is a cache, never a reason for a trial to fail.

Pure functions and files: no torch, no Ray (the training loop, :mod:`raycifar.train.loop`,
measures and compiles).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import socket
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

from filelock import FileLock, Timeout

from raycifar.results.atomic import replace_text

PAYBACK = 10.0  # compile only when the training left takes at least this many times the compile cost
HIT_SECONDS = 2.0  # a compile whose kernels are in the node's inductor caches (before one was measured)
MISS_SECONDS = 60.0  # a compile from scratch, before any was measured on the node
RECORD_FILE = "raycifar_compile.json"  # the node's record, inside its inductor cache folder
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"  # inductor's on-disk cache folder (its FX graph and kernel caches)
LOCK_TIMEOUT_S = 10.0  # a record still locked after this is not updated this time
_VERSION = 1


def should_compile(expected_train_s: float, expected_compile_s: float) -> bool:
    """Whether training for ``expected_train_s`` seconds pays for compiling in
    ``expected_compile_s`` seconds: at least :data:`PAYBACK` times as long."""
    return expected_train_s >= PAYBACK * expected_compile_s


def arch_key(parts: Mapping[str, object]) -> str:
    """A short stable key of what decides a compiled graph and its speed (the model config,
    batch size, precision, memory format, device...): ``parts`` as sorted JSON, hashed."""
    text = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def node_cache_dir() -> Path:
    """The node's inductor cache folder: ``$TORCHINDUCTOR_CACHE_DIR`` when set, else
    ``~/.cache/raycifar/inductor/<hostname>`` (one per node, even on a shared home)."""
    given = os.environ.get(CACHE_ENV)
    if given:
        return Path(given).expanduser()
    return Path("~/.cache/raycifar/inductor").expanduser() / socket.gethostname()


def use_node_cache() -> Path:
    """Point inductor at :func:`node_cache_dir` (unless ``$TORCHINDUCTOR_CACHE_DIR`` is set
    already) before anything compiles in this process; returns the folder."""
    folder = node_cache_dir()
    if not os.environ.get(CACHE_ENV):
        os.environ[CACHE_ENV] = str(folder)
    return folder


def record_path() -> Path:
    """The node's record: :data:`RECORD_FILE` in :func:`node_cache_dir`."""
    return node_cache_dir() / RECORD_FILE


def _seconds(values: object) -> dict[str, float]:
    """The entries of ``values`` (a JSON object) that are finite non-negative seconds."""
    if not isinstance(values, dict):
        return {}
    return {
        str(key): float(value)
        for key, value in values.items()
        if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0
    }


@dataclass(frozen=True)
class NodeRecord:
    """What this node measured, by architecture key (all values in seconds)."""

    step_seconds: dict[str, float] = field(default_factory=dict)  # eager seconds per optimizer step
    miss_seconds: dict[str, float] = field(default_factory=dict)  # the compile of an architecture new to the node
    hit_seconds: dict[str, float] = field(default_factory=dict)  # a later compile of it (the caches held it)

    def compiled_before(self, key: str) -> bool:
        """Whether ``key`` was compiled on this node (its next compile is a cache hit)."""
        return key in self.miss_seconds or key in self.hit_seconds

    def expected_compile_seconds(self, key: str) -> float:
        """The expected compile cost of ``key`` in seconds: its last measured hit, or
        :data:`HIT_SECONDS`, when compiled before; else the median miss of the node, or
        :data:`MISS_SECONDS`."""
        if self.compiled_before(key):
            return self.hit_seconds.get(key, HIT_SECONDS)
        return statistics.median(self.miss_seconds.values()) if self.miss_seconds else MISS_SECONDS

    def with_step(self, key: str, seconds: float) -> NodeRecord:
        """This record with ``seconds``, the eager seconds per step of ``key``."""
        return replace(self, step_seconds={**self.step_seconds, key: seconds})

    def with_compile(self, key: str, seconds: float, hit: bool) -> NodeRecord:
        """This record with a measured compile of ``key`` that took ``seconds``
        (``hit``: whether the record expected a cache hit when it started)."""
        if hit:
            return replace(self, hit_seconds={**self.hit_seconds, key: seconds})
        return replace(self, miss_seconds={**self.miss_seconds, key: seconds})

    def to_json(self) -> str:
        """The record as the JSON text of its file."""
        data = {"version": _VERSION, "step_seconds": self.step_seconds, "miss_seconds": self.miss_seconds,
                "hit_seconds": self.hit_seconds}  # fmt: skip
        return json.dumps(data, indent=1, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> NodeRecord:
        """The record of a file's ``text``; empty when it is not a record (corrupt, another version)."""
        try:
            data = json.loads(text)
        except ValueError:
            return cls()
        if not isinstance(data, dict) or data.get("version") != _VERSION:
            return cls()
        return cls(
            _seconds(data.get("step_seconds")), _seconds(data.get("miss_seconds")), _seconds(data.get("hit_seconds"))
        )


def expected_train_seconds(
    record: NodeRecord, key: str, steps_left: int, measured_step_s: float | None = None
) -> float | None:
    """Seconds the ``steps_left`` optimizer steps take eagerly: × ``measured_step_s`` (this
    trial's), else × the record's seconds per step of ``key``; None when neither is known."""
    step_s = measured_step_s if measured_step_s is not None else record.step_seconds.get(key)
    return None if step_s is None else steps_left * step_s


def decide(record: NodeRecord, key: str, steps_left: int, measured_step_s: float | None = None) -> bool | None:
    """Whether to compile ``key`` for its ``steps_left`` steps (see the module doc); None
    while no eager step time is known (train an epoch eagerly to measure it)."""
    train_s = expected_train_seconds(record, key, steps_left, measured_step_s)
    return None if train_s is None else should_compile(train_s, record.expected_compile_seconds(key))


def first_step_extra_seconds(first_step_s: float, epoch_s: float, steps: int) -> float:
    """The compile cost seen in a compiled epoch: how much longer its first step (``first_step_s``
    seconds, where the compilation happens) took than the mean of its other ``steps - 1``
    steps (``epoch_s`` seconds all together); never negative."""
    rest_s = (epoch_s - first_step_s) / (steps - 1) if steps > 1 else 0.0
    return max(first_step_s - rest_s, 0.0)


def read_record(path: Path) -> NodeRecord:
    """The record at ``path``; empty when the file is missing, unreadable or corrupt."""
    try:
        return NodeRecord.from_json(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return NodeRecord()


def update_record(path: Path, change: Callable[[NodeRecord], NodeRecord]) -> NodeRecord | None:
    """Replace the record at ``path`` with ``change`` of it, under its lock (``path`` +
    ``.lock``). Returns the new record, or None when the folder cannot be written or another
    process held the lock for :data:`LOCK_TIMEOUT_S` seconds (the record stays as it was)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(path.with_name(path.name + ".lock"), timeout=LOCK_TIMEOUT_S):
            record = change(read_record(path))
            replace_text(path, record.to_json())
            return record
    except (OSError, Timeout):
        return None
