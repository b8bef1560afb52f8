"""Faults in every Python process of a test's Ray (tests/sweep/test_faults_e2e.py): a full disk
for one trial, and a slow unwind of a stopped in-trial trial.

A test puts this folder on PYTHONPATH; Python then imports this module at start-up in the
CLI and in every Ray worker the CLI's local Ray starts. When ``RAYCIFAR_TEST_FULL_DISK_LR``
is set, ``raycifar.train.loop.Training.save`` (the checkpoint write of every epoch) fails with
ENOSPC for trials whose ``train.lr`` has that value, as a full disk would; the other trials
write their checkpoints as usual. When ``RAYCIFAR_TEST_SLOW_UNWIND_S`` is set, a trial that
Tune stops (``SystemExit`` out of ``tune.report``) on the in-trial path sleeps that many
seconds before its thread ends, and leaves a file named after its PID in
``RAYCIFAR_TEST_SLOW_UNWIND_DIR``. Nothing is imported early: each patch is applied when a
process first imports the module it patches.
"""

import errno
import importlib.abc
import importlib.machinery
import os
import sys

_LR = os.environ.get("RAYCIFAR_TEST_FULL_DISK_LR")
_UNWIND_S = os.environ.get("RAYCIFAR_TEST_SLOW_UNWIND_S")


def _patch_unwind(module) -> None:
    import time
    from pathlib import Path

    report = module.TuneSession.report

    def report_then_unwind_slowly(self, metrics, checkpoint):
        try:
            return report(self, metrics, checkpoint)
        except SystemExit:  # Tune stopped the trial
            time.sleep(float(_UNWIND_S))
            Path(os.environ["RAYCIFAR_TEST_SLOW_UNWIND_DIR"], str(os.getpid())).touch()
            raise

    module.TuneSession.report = report_then_unwind_slowly


def _patch(module) -> None:
    save = module.Training.save

    def save_on_a_full_disk(self, folder, epoch):
        if str(self.config.train.lr) == _LR:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / module.STATE_FILE))
        return save(self, folder, epoch)

    module.Training.save = save_on_a_full_disk


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        patch = _PATCHES.get(fullname)
        if patch is None:
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            patch(module)

        spec.loader.exec_module = exec_module
        return spec


_PATCHES = {
    **({"raycifar.train.loop": _patch} if _LR else {}),
    **({"raycifar.sweep.in_trial": _patch_unwind} if _UNWIND_S else {}),
}
if _PATCHES:
    sys.meta_path.insert(0, _PatchOnImport())
