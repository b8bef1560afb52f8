"""A full disk for one trial, in every Python process of a test's Ray (tests/sweep/test_faults_e2e.py).

A test puts this folder on PYTHONPATH; Python then imports this module at start-up in the
CLI and in every Ray worker the CLI's local Ray starts. When ``RAYCIFAR_TEST_FULL_DISK_LR``
is set, ``raycifar.train.loop.Training.save`` (the checkpoint write of every epoch) fails with
ENOSPC for trials whose ``train.lr`` has that value, as a full disk would; the other trials
write their checkpoints as usual. Nothing is imported early: the patch is applied when a
process first imports ``raycifar.train.loop``.
"""

import errno
import importlib.abc
import importlib.machinery
import os
import sys

_LR = os.environ.get("RAYCIFAR_TEST_FULL_DISK_LR")


def _patch(module) -> None:
    save = module.Training.save

    def save_on_a_full_disk(self, folder, epoch):
        if str(self.config.train.lr) == _LR:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(folder / module.STATE_FILE))
        return save(self, folder, epoch)

    module.Training.save = save_on_a_full_disk


class _PatchOnImport(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path, target=None):
        if fullname != "raycifar.train.loop":
            return None
        spec = importlib.machinery.PathFinder.find_spec(fullname, path)
        if spec is None or spec.loader is None:
            return None
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            _patch(module)

        spec.loader.exec_module = exec_module
        return spec


if _LR:
    sys.meta_path.insert(0, _PatchOnImport())
