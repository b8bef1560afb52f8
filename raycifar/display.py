"""What a long job tells its caller while it runs: lines of information and live progress.

The CLI draws a :class:`Display` with Rich (:mod:`raycifar.cli.run`); Python callers may
pass :class:`Quiet`, which shows nothing.
"""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Protocol


class ProgressSink(Protocol):
    """Sweep progress: trials done and running, the best score so far (of ``metric``, the
    sweep's selected one), failures."""

    def update(self, done: int, running: int, best: float | None, metric: str) -> None: ...

    def trial_failed(self, trial_id: str, error_file: str | None, what: str | None = None) -> None:
        """Trial ``trial_id`` failed or diverged; ``what`` says how in one line ("failed: ...",
        "diverged at epoch ..."); ``error_file``: Tune's error.txt, when there is one."""


class EpochSink(Protocol):
    """A training run's metrics after every epoch."""

    def epoch(self, metrics: dict) -> None: ...


class Display(Protocol):
    """What a job tells its caller: lines of information and live progress."""

    def info(self, message: str) -> None: ...

    def sweep_progress(self, trials: int) -> AbstractContextManager[ProgressSink]: ...

    def epoch_progress(self, epochs: int) -> AbstractContextManager[EpochSink]: ...


class _Silent:
    def update(self, done: int, running: int, best: float | None, metric: str) -> None:
        pass

    def trial_failed(self, trial_id: str, error_file: str | None, what: str | None = None) -> None:
        pass

    def epoch(self, metrics: dict) -> None:
        pass


class Quiet:
    """A :class:`Display` that shows nothing (the default for Python callers)."""

    def info(self, message: str) -> None:
        pass

    def sweep_progress(self, trials: int) -> AbstractContextManager[ProgressSink]:
        return nullcontext(_Silent())

    def epoch_progress(self, epochs: int) -> AbstractContextManager[EpochSink]:
        return nullcontext(_Silent())
