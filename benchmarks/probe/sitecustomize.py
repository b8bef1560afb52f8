"""A start-up probe for ``benchmarks/ddp_startup.py``, the same for any raycifar version.

On ``PYTHONPATH`` with ``RAYCIFAR_PROBE=<file>``, every Python process of a sweep (the
driver, Tune's trial processes, Ray Train's controllers and workers inherit the variable)
appends one JSON line per event to that file, timed by ``time.time()``:

- ``proposal``: Tune's search generator made a trial from a searcher's proposal (driver);
- ``trial_process``: a Tune function trial set up in its process;
- ``controller``, ``worker_actor``, ``train_fn``: Ray Train's controller and worker actors
  start, and a worker is handed the training function;
- ``torch_loaded``: the process finished importing torch;
- ``process_group``: ``torch.distributed.init_process_group`` returned (each DDP worker);
- ``first_step``: the process's first optimizer step (each worker).

The marks hook library functions when their modules load, so that neither raycifar's code
nor its imports change: the same probe times the old and the new code. Not a product module.
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import json
import os
import sys
import time

PROBE = os.environ.get("RAYCIFAR_PROBE")


def _mark(event: str, **fields: object) -> None:
    line = json.dumps({"event": event, "t": time.time(), "pid": os.getpid(), **fields})
    with open(PROBE, "a") as out:  # one short append per event: whole lines under O_APPEND
        out.write(line + "\n")


def _patch_search_generator(module) -> None:
    original = module.SearchGenerator.create_trial_if_possible

    def create_trial_if_possible(self, *args, **kwargs):
        trial = original(self, *args, **kwargs)
        if trial is not None:
            _mark("proposal", trial=trial.trial_id)
        return trial

    module.SearchGenerator.create_trial_if_possible = create_trial_if_possible


def _patch_function_trainable(module) -> None:
    original = module.FunctionTrainable.setup

    def setup(self, *args, **kwargs):
        _mark("trial_process")
        return original(self, *args, **kwargs)

    module.FunctionTrainable.setup = setup


def _patch_process_group(module) -> None:
    original = module.init_process_group

    def init_process_group(*args, **kwargs):
        done = original(*args, **kwargs)
        _mark("process_group")
        return done

    module.init_process_group = init_process_group


def _patch_optimizer(module) -> None:
    def first_step(optimizer, args, kwargs):
        _mark("first_step")
        handle.remove()

    handle = module.register_optimizer_step_pre_hook(first_step)


def _mark_on_call(cls: type, method: str, event: str) -> None:
    original = getattr(cls, method)

    def marked(self, *args, **kwargs):
        _mark(event)
        return original(self, *args, **kwargs)

    setattr(cls, method, marked)


def _mark_loaded(event: str):
    return lambda module: _mark(event, by=_importer())


def _importer() -> str:
    """The innermost raycifar or Ray frame that is importing (outside the import machinery)."""
    import traceback

    for frame in reversed(traceback.extract_stack()[:-3]):
        name = frame.filename
        if "importlib" not in name and "sitecustomize" not in name and ("raycifar" in name or "/ray/" in name):
            return f"{name.split('site-packages/')[-1].split('raycifar/')[-1]}:{frame.lineno}"
    return ""


PATCHES = {
    "ray.train.v2._internal.execution.controller.controller": lambda m: _mark_on_call(
        m.TrainController, "__init__", "controller"
    ),
    "ray.train.v2._internal.execution.worker_group.worker": lambda m: (
        _mark_on_call(m.RayTrainWorker, "__init__", "worker_actor"),
        _mark_on_call(m.RayTrainWorker, "run_train_fn", "train_fn"),
    ),
    "torch": _mark_loaded("torch_loaded"),
    "ray.tune.search.search_generator": _patch_search_generator,
    "ray.tune.trainable.function_trainable": _patch_function_trainable,
    "torch.distributed.distributed_c10d": _patch_process_group,
    "torch.optim.optimizer": _patch_optimizer,
}


class _AfterImport(importlib.abc.MetaPathFinder):
    """Runs a patch right after a watched module has executed."""

    def find_spec(self, name, path, target=None):
        if name not in PATCHES:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None:
            return None
        run_module, patch = spec.loader.exec_module, PATCHES[name]

        def exec_module(module):
            run_module(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


if PROBE:
    sys.meta_path.insert(0, _AfterImport())
