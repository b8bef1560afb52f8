"""Ray Train runs: the ``TorchTrainer`` of one trial config, and the single-run driver of
``raycifar train``.

:func:`make_trainer` is the one factory of Ray Train runs, used by every sweep trial and by
:func:`run_training`. This module imports ``ray.train`` but never ``ray.tune``.

A single run streams every epoch's metrics back to the caller while it runs and appends
them to ``<results-dir>/runs/<name>/metrics.jsonl``; Ray Train keeps the two best
checkpoints by ``val_acc`` in the same folder.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pyarrow.fs
import ray
import ray.train
from ray.train.torch import TorchTrainer
from ray.util.queue import Empty, Queue

from raycifar.cluster.session import RunResources
from raycifar.config import DEFAULT_SELECT, MAX_FAILURES, TrialConfig
from raycifar.display import EpochSink
from raycifar.errors import Interrupted, RunFailed, UserError
from raycifar.results.layout import run_dir
from raycifar.results.schema import CHECKPOINT_PATH, EPOCH, TRAIN_LOSS, VAL_ACC, VAL_LOSS, selected_metric
from raycifar.results.selection import DIVERGED, TrialHistory, select_best
from raycifar.train.leaked_groups import release_leaked
from raycifar.train.process_group import torch_config
from raycifar.train.worker import INIT_CHECKPOINT_KEY, CheckpointNotWritten, train_loop_per_worker

RUN_METRICS_FILE = "metrics.jsonl"
CHECKPOINTS_KEPT = 2


def scaling_config(resources: RunResources, gpus: float) -> ray.train.ScalingConfig:
    """The workers of one run, sharing its CPUs (and ``gpus`` GPUs) evenly."""
    workers = resources.workers
    return ray.train.ScalingConfig(
        num_workers=workers,
        use_gpu=gpus > 0,
        resources_per_worker={"CPU": resources.cpus / workers, **({"GPU": gpus / workers} if gpus else {})},
    )


def selection_metric(config: dict) -> str:
    """What picks a run's checkpoint (a :class:`TrialConfig` as JSON values): the metric its
    ``select`` names (``val_acc`` by default), or ``epoch`` (the last one) when it trains on
    train+val, whose val part is then no held-out score."""
    if config.get("train_on", "train") == "train+val":
        return EPOCH
    return selected_metric(config.get("select", DEFAULT_SELECT))


def make_trainer(
    config: dict,
    name: str,
    storage: Path,
    scaling: ray.train.ScalingConfig,
    callbacks: list,
    local: bool,
    max_failures: int = MAX_FAILURES,
    init_checkpoint: str | None = None,
) -> TorchTrainer:
    """The Ray Train run of one trial config (a :class:`TrialConfig` as JSON values) under
    ``storage/name``: a sweep trial or ``raycifar train``. It keeps the
    :data:`CHECKPOINTS_KEPT` best checkpoints by :func:`selection_metric` (and the latest),
    and Ray Train restarts a crashed worker group up to ``max_failures`` times (0: never),
    each time from the run's latest checkpoint (:mod:`raycifar.train.worker` resumes from it).

    ``local``: Ray runs on this machine only; the workers' torch process group then listens
    on loopback (:mod:`raycifar.train.process_group`). ``init_checkpoint``: a checkpoint path
    (another run's, e.g. a PBT donor's) the workers start from while this run has none of its own.
    """
    loop_config = {**config, INIT_CHECKPOINT_KEY: init_checkpoint} if init_checkpoint else config
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        torch_config=torch_config(local),
        scaling_config=scaling,
        run_config=ray.train.RunConfig(
            name=name,
            storage_path=str(storage),
            callbacks=callbacks,
            failure_config=ray.train.FailureConfig(max_failures=max_failures),
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=CHECKPOINTS_KEPT,
                checkpoint_score_attribute=selection_metric(config),
                checkpoint_score_order="max",
            ),
        ),
    )


def failure_reason(err: ray.train.TrainingFailedError) -> str:
    """Why a Ray Train run failed, in one line: a worker's own :class:`CheckpointNotWritten`
    when there is one, else the first failed rank's error type and first line."""
    failures = sorted((getattr(err, "worker_failures", None) or {}).items())
    for rank, failure in failures:
        if isinstance(failure, CheckpointNotWritten):
            return f"{failure} (worker {rank})"
    if failures:
        rank, failure = failures[0]
        first = (str(failure).strip().splitlines() or [""])[0]
        return f"worker {rank} failed: {type(failure).__name__}: {first}"
    lines = str(err).strip().splitlines()
    return lines[-1] if lines else type(err).__name__


class TrainRunFailed(Exception):
    """A Ray Train run failed after its restarts; the message is the reason, in one line."""


def fit(make: Callable[[], TorchTrainer], retries: int) -> ray.train.Result:
    """Fit the ``TorchTrainer`` that ``make`` builds and return its result; a run that failed
    after its restarts raises :class:`TrainRunFailed` with :func:`failure_reason`.

    Ray Train restarts a crashed worker group itself (``FailureConfig``), except when a worker
    dies while its group starts: that is a ``ControllerError``, which it never retries, and
    whose placement group it leaves reserved (:mod:`raycifar.train.leaked_groups` releases it).
    Such a run is fitted again under the same name, so it resumes from its latest checkpoint,
    at most ``retries`` times. Sweep trials and ``raycifar train`` both fit this way.
    """
    for attempt in range(retries + 1):
        try:
            return make().fit()
        except ray.train.ControllerError as err:
            release_leaked()
            if attempt == retries:
                raise TrainRunFailed(failure_reason(err)) from None
        except ray.train.TrainingFailedError as err:
            raise TrainRunFailed(failure_reason(err)) from None
    raise AssertionError("unreachable: the last attempt returns or raises")


def divergence_message(metrics: dict) -> str | None:
    """``"diverged at epoch E (training loss nan)"`` when ``metrics`` (the last reported
    epoch of a run) is a diverged epoch (:data:`raycifar.train.loop.DIVERGED`), else None."""
    if not metrics.get(DIVERGED):
        return None
    loss, val_loss = metrics.get(TRAIN_LOSS), metrics.get(VAL_LOSS)
    which = f"training loss {loss}" if not math.isfinite(float(loss)) else f"validation loss {val_loss}"
    return f"diverged at epoch {metrics.get(EPOCH)} ({which})"


def fetch_checkpoint(checkpoint_path: str, destination: Path) -> Path:
    """Copy the Train checkpoint folder at ``checkpoint_path`` (a local or shared-storage
    path) into ``destination``; returns ``destination``."""
    return Path(ray.train.Checkpoint(checkpoint_path).to_directory(str(destination)))




def check_new_run(results_dir: Path, name: str) -> None:
    """A run name must be new: Ray Train would otherwise resume the old run's checkpoints."""
    folder = run_dir(results_dir, name)
    if folder.exists():
        raise UserError(f"a run named {name!r} already exists in {folder.parent}: choose another --name")


@dataclass(frozen=True)
class RunOutcome:
    """The selected epoch of a finished run: the best ``val_acc``, or the last epoch when
    ``selected_on`` is ``"epoch"`` (train+val: ``best_val_acc`` is then that epoch's score
    on the val part it trained on, not a held-out score)."""

    best_val_acc: float
    best_epoch: int
    best_checkpoint: str
    epochs: int
    run_dir: Path
    wall_seconds: float
    selected_on: str = VAL_ACC


class RunInterrupted(Interrupted):
    """The training run was stopped with Ctrl+C."""


class ForwardMetrics(ray.train.UserCallback):
    """Runs in Ray Train's controller: puts rank 0's metrics of every report, with the path of
    the checkpoint reported with them (``checkpoint_path``, None without one), on a queue
    (``raycifar train``'s epoch lines, a PBT trial's reports to Tune)."""

    def __init__(self, queue: Queue) -> None:
        self.queue = queue

    def after_report(self, run_context, metrics: list[dict], checkpoint) -> None:
        self.queue.put({**metrics[0], CHECKPOINT_PATH: checkpoint.path if checkpoint else None})


@contextmanager
def _relay(queue: Queue, log: Path, sink: EpochSink) -> Iterator[None]:
    """While the block runs, a driver thread hands each epoch's metrics to ``sink`` and to
    ``log`` (JSON lines); on exit it drains the queue, then stops."""
    finished = threading.Event()

    def pump() -> None:
        while True:
            try:
                metrics = queue.get(timeout=0.25)
            except Empty:
                if finished.is_set():
                    return
                continue
            with log.open("a") as stream:
                stream.write(json.dumps(metrics) + "\n")
            sink.epoch(metrics)

    thread = threading.Thread(target=pump, name="raycifar-train-metrics", daemon=True)
    thread.start()
    try:
        yield
    finally:
        finished.set()
        thread.join()



def checkpoint_exists(path: str) -> bool:
    """Whether the Ray Train checkpoint at ``path`` (local or on shared storage) is still
    there: Ray Train deletes all but the best ones it keeps."""
    checkpoint = ray.train.Checkpoint(path)
    return checkpoint.filesystem.get_file_info(checkpoint.path).type != pyarrow.fs.FileType.NotFound


def _logged(log: Path) -> list[dict]:
    """Every epoch's metrics in a run's ``metrics.jsonl``, in order."""
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()] if log.is_file() else []


def run_training(
    config: TrialConfig, results_dir: Path, name: str, scaling: ray.train.ScalingConfig, sink: EpochSink, local: bool
) -> RunOutcome:
    """Train ``config`` as run ``name`` on Ray Train (Ray must be connected) and select its
    checkpoint as a sweep selects among its trials' (:func:`raycifar.results.selection.select_best`,
    on :func:`selection_metric`). Raises :class:`RunFailed` or :class:`RunInterrupted`."""
    started = time.monotonic()
    check_new_run(results_dir, name)
    folder = run_dir(results_dir, name)
    queue = Queue(actor_options={"num_cpus": 0})
    loop_config = config.model_dump(mode="json")
    folder.mkdir(parents=True)
    try:
        with _relay(queue, folder / RUN_METRICS_FILE, sink):
            fit(lambda: make_trainer(loop_config, name, folder.parent, scaling, [ForwardMetrics(queue)], local), MAX_FAILURES)
    except TrainRunFailed as err:
        raise RunFailed(f"training run {name} failed: {err}; its folder is {folder}") from None
    except (KeyboardInterrupt, SystemExit):  # Ray Train aborts the run on Ctrl+C, then exits
        raise RunInterrupted(f"training run {name} stopped; its checkpoints so far are in {folder}") from None
    finally:
        queue.shutdown(force=True)
    logged = _logged(folder / RUN_METRICS_FILE)
    diverged = divergence_message(logged[-1] if logged else {})  # result.metrics: the last checkpoint's
    if diverged:
        raise RunFailed(
            f"training run {name} {diverged}: nothing selected; lower train.lr or set train.grad_clip_norm "
            f"(checkpoints of the epochs before it are in {folder})"
        )
    metric = selection_metric(loop_config)
    history = TrialHistory(name, config.train.epochs, logged)
    best = select_best([history], checkpoint_exists, metric).best
    if best is None:
        raise RunFailed(f"training run {name} left no checkpoint in {folder}")
    return RunOutcome(
        best_val_acc=best.val_acc,
        best_epoch=best.epoch,
        best_checkpoint=best.checkpoint,
        epochs=max(int(row[EPOCH]) for row in logged),
        run_dir=folder,
        wall_seconds=time.monotonic() - started,
        selected_on=metric,
    )
