"""One W&B run per trial, written by the sweep's driver: no actor per trial.

Ray's ``WandbLoggerCallback`` starts a logging actor (a process, with its own ``wandb.init``)
for every trial: seconds of start-up and CPU per trial on a small machine. Here one thread of
the driver keeps every trial's run open while the trial runs (``wandb.init(reinit=
"create_new")``, id = the trial id, so a resumed trial goes on in its own run), logs each
reported epoch, and finishes the run when the trial ends. Tune's callbacks only queue: a
slow W&B never holds up Tune's loop. The end of the sweep waits for the queue at most
:data:`FLUSH_TIMEOUT_S` (offline runs only write files).

Runs go to project ``raycifar``, group = the sweep's name, under ``<results>/wandb``, as
``raycifar train`` runs do (:mod:`raycifar.pipeline.wandb_log`).
"""

from __future__ import annotations

import math
import os
import queue
import threading
from pathlib import Path
from typing import Any

from ray import tune

from raycifar.config import WANDB_PROJECT
from raycifar.results.schema import CHECKPOINT_PATH

FLUSH_TIMEOUT_S = {"offline": 30.0, "online": 300.0}
SKIPPED = {CHECKPOINT_PATH, "config", "done", "should_checkpoint", "checkpoint_dir_name", "trial_id", "date", "hostname", "node_ip", "pid"}


def _loggable(result: dict) -> dict:
    """The numbers of a Tune result W&B can plot (no config, paths or bookkeeping)."""
    return {
        key: value for key, value in result.items()
        if key not in SKIPPED and isinstance(value, (int, float)) and not isinstance(value, bool)
        and (not isinstance(value, float) or math.isfinite(value))
    }  # fmt: skip


class TrialRuns(tune.Callback):
    """Tune callback: each trial's config and epochs to its own W&B run (see the module doc).

    ``mode``: ``offline`` or ``online``; ``folder``: ``<results>/wandb``; ``group``: the sweep."""

    def __init__(self, mode: str, folder: Path, group: str) -> None:
        self.mode, self.folder, self.group = mode, folder, group
        self._start_fresh()

    def _start_fresh(self) -> None:
        self._queue: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None

    def __getstate__(self) -> dict:  # Tune pickles its callbacks with the experiment
        return {"mode": self.mode, "folder": self.folder, "group": self.group}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._start_fresh()

    def _put(self, *event: Any) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._write, name="raycifar-wandb", daemon=True)
            self._thread.start()
        self._queue.put(event)

    def on_trial_start(self, iteration, trials, trial, **info):
        self._put("start", trial.trial_id, str(trial), dict(trial.config))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        self._put("log", trial.trial_id, _loggable(result))

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._put("finish", trial.trial_id, 0)

    def on_trial_error(self, iteration, trials, trial, **info):
        self._put("finish", trial.trial_id, 1)

    def on_experiment_end(self, trials, **info):
        self.flush()

    def flush(self) -> None:
        """Finish every open run and wait for the writer (at most :data:`FLUSH_TIMEOUT_S`)."""
        if self._thread is None:
            return
        self._queue.put(("end",))
        self._thread.join(FLUSH_TIMEOUT_S.get(self.mode, 30.0))
        self._thread = None

    def _write(self) -> None:
        """The writer thread: every wandb call of the sweep happens here, in order."""
        import wandb

        os.environ.setdefault("WANDB_DATA_DIR", str(self.folder / "data"))
        settings = wandb.Settings(silent=True, console="off", x_disable_stats=True, x_disable_machine_info=True)
        runs: dict[str, Any] = {}
        while True:
            kind, *args = self._queue.get()
            if kind == "end":
                for run in runs.values():
                    run.finish()
                return
            if kind == "start":
                trial_id, name, config = args
                if trial_id not in runs:
                    runs[trial_id] = wandb.init(
                        project=WANDB_PROJECT, group=self.group, name=name, id=trial_id, config=config, mode=self.mode,
                        dir=str(self.folder), settings=settings, reinit="create_new", resume="allow",
                        allow_val_change=True,
                    )  # fmt: skip
            elif kind == "log" and args[0] in runs:
                runs[args[0]].log(args[1])
            elif kind == "finish" and args[0] in runs:
                runs.pop(args[0]).finish(exit_code=args[1])
