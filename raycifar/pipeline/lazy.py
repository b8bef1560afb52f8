"""The pipeline's lazy imports, named in one place.

Ray reads its settings from the environment once, when it is first imported, so
:func:`raycifar.cluster.session.prepare_environment` must run before any module that imports
Ray at its top. The jobs call it first, then reach those modules through these functions.
Every other import of the pipeline sits at its module's top (or under ``TYPE_CHECKING``).
"""

from __future__ import annotations

from types import ModuleType


def sweep_driver() -> ModuleType:
    """:mod:`raycifar.sweep.driver` (imports Ray Tune)."""
    from raycifar.sweep import driver

    return driver


def sweep_schedulers() -> ModuleType:
    """:mod:`raycifar.sweep.schedulers` (imports Ray Tune)."""
    from raycifar.sweep import schedulers

    return schedulers


def train_run() -> ModuleType:
    """:mod:`raycifar.train.run` (imports Ray Train)."""
    from raycifar.train import run

    return run


def process_group() -> ModuleType:
    """:mod:`raycifar.train.process_group` (imports Ray Train)."""
    from raycifar.train import process_group

    return process_group
