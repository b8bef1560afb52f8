"""Class paths that sweeps of older raycifars pickled, resolved to today's classes.

Tune pickles its searcher and callbacks into a sweep's folder (``tuner.pkl``,
``search_gen_state-*.json``) by module path. A sweep started before the packages of
raycifar 0.1 (commit 0715e07: ``raycifar.sweep``, ``raycifar.search``, ``raycifar.space``
and ``raycifar.space_file`` were single modules) names classes that now live elsewhere.
:func:`register` makes those old paths resolve before ``Tuner.restore`` reads the files, so
that such a sweep resumes (``tests/results/test_old_results.py`` resumes one).
"""

from __future__ import annotations

import sys
import types

import raycifar.search
import raycifar.space
import raycifar.sweep
from raycifar.search.searchers import Search
from raycifar.space.dimension import Dimension
from raycifar.space.file import SpaceFile
from raycifar.space.find import Space
from raycifar.space.sections import ArchSpace, AugmentSpace, SchedulerSettings, SearcherSettings, TrainSpace
from raycifar.sweep.trial import trial_dirname
from raycifar.sweep.tune_hooks import ProgressCallback, SchedulerState, StudySearcher

OLD_NAMES: dict[str, dict[str, object]] = {
    "raycifar.sweep": {
        "_StudySearcher": StudySearcher, "_ProgressCallback": ProgressCallback, "_SchedulerState": SchedulerState,
        "_trial_dirname": trial_dirname,
    },
    "raycifar.search": {"Search": Search},
    "raycifar.space": {"Space": Space},
    "raycifar.space_file": {
        "SpaceFile": SpaceFile, "ArchSpace": ArchSpace, "TrainSpace": TrainSpace, "AugmentSpace": AugmentSpace,
        "SchedulerSettings": SchedulerSettings, "SearcherSettings": SearcherSettings, "Dimension": Dimension,
    },
}  # fmt: skip
_PACKAGES = {"raycifar.sweep": raycifar.sweep, "raycifar.search": raycifar.search, "raycifar.space": raycifar.space}


def register() -> None:
    """Make every old path of :data:`OLD_NAMES` resolve: as an attribute of today's package of
    that name, or of a stand-in module for a module that no longer exists."""
    for path, names in OLD_NAMES.items():
        holder = _PACKAGES.get(path)
        if holder is None:
            holder = sys.modules.get(path) or types.ModuleType(path, "raycifar: old pickled class paths (sweep.legacy)")
            sys.modules[path] = holder
        for name, value in names.items():
            if not hasattr(holder, name):
                setattr(holder, name, value)
