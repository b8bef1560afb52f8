"""The Tune schedulers of ``raycifar sweep``, built in one place, and what population-based
training needs from a trial.

:func:`make_scheduler` turns a space's :class:`~raycifar.space.file.SchedulerSettings` into
a Tune scheduler. Every scheduler counts time in the worker-reported ``epoch`` (Tune's
``training_iteration`` restarts at 1 whenever a trial is restored).

PBT in the Train-in-Tune composition (a Tune function trial that fits its own
``TorchTrainer``): Tune must see real checkpoints, or PBT skips every exploit.
:func:`run_population_trial` therefore

1. reports each epoch to Tune itself, attaching a copy of the epoch's Train checkpoint at
   every ``perturbation_interval``-th epoch (the epochs at which PBT may clone a trial);
2. on a restart after an exploit (``tune.get_checkpoint()`` written by another trial),
   starts a new Train run ``<trial_id>-g<k>`` (a Train run would otherwise resume its own
   latest checkpoint) whose workers initialise from the donor's copy: its path travels in
   the trainer's config (:data:`raycifar.train.worker.INIT_CHECKPOINT_KEY`), and
   :meth:`raycifar.train.loop.Training.load` restores weights, optimizer, schedule position and EMA,
   keeping the trial's own (perturbed) learning rate and weight decay;
3. on a restart of its own (a pause, a resumed sweep) continues its latest Train run.
"""

from __future__ import annotations

import copy
import re
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ray import tune
from ray.tune.schedulers import (
    ASHAScheduler,
    FIFOScheduler,
    HyperBandScheduler,
    MedianStoppingRule,
    PopulationBasedTraining,
    TrialScheduler,
)
from ray.util.queue import Empty, Queue

from raycifar.errors import UserError
from raycifar.results.schema import CHECKPOINT_PATH, EPOCH
from raycifar.space.dimension import Dimension
from raycifar.space.sections import SCHEDULER_LABELS, SchedulerSettings
from raycifar.train.run import ForwardMetrics

TIME_ATTR = EPOCH


def label(settings: SchedulerSettings) -> str:
    """How messages name the scheduler: ``ASHA``, ``HyperBand``, ``the median rule``, ``PBT``, ``FIFO``."""
    return SCHEDULER_LABELS[settings.name]


def make_scheduler(
    settings: SchedulerSettings, max_epochs: int, mutations: dict[str, Dimension] | None = None
) -> TrialScheduler:
    """The Tune scheduler of ``settings`` for trials of at most ``max_epochs`` epochs.

    ``mutations``: the training keys PBT perturbs and their dimensions in the space
    (:func:`raycifar.space.file.pbt_dimensions`); used by ``pbt`` only. Raises
    :class:`UserError` when PBT would never perturb (interval not below ``max_epochs``).
    """
    if settings.name == "asha":
        return ASHAScheduler(
            time_attr=TIME_ATTR, max_t=max_epochs,
            grace_period=min(settings.grace_period, max_epochs), reduction_factor=settings.reduction_factor,
        )  # fmt: skip
    if settings.name == "hyperband":
        return HyperBandScheduler(time_attr=TIME_ATTR, max_t=max_epochs, reduction_factor=settings.reduction_factor)
    if settings.name == "median":
        return MedianStoppingRule(
            time_attr=TIME_ATTR, grace_period=settings.grace_period, min_samples_required=settings.min_samples_required
        )
    if settings.name == "pbt":
        return _population_based_training(settings, max_epochs, mutations or {})
    return FIFOScheduler()


def _population_based_training(
    settings: SchedulerSettings, max_epochs: int, mutations: dict[str, Dimension]
) -> PopulationBasedTraining:
    if settings.perturbation_interval >= max_epochs:
        raise UserError(
            f"scheduler.perturbation_interval {settings.perturbation_interval} is not below the trials' "
            f"{max_epochs} epochs: PBT would never perturb"
        )
    if not mutations:
        raise UserError("scheduler pbt: the space searches none of lr, weight_decay, label_smoothing, mixup_alpha")
    return PopulationBasedTraining(
        time_attr=TIME_ATTR,
        perturbation_interval=settings.perturbation_interval,
        hyperparam_mutations={"train": {key: _mutation(dimension) for key, dimension in mutations.items()}},
        quantile_fraction=settings.quantile_fraction,
        resample_probability=settings.resample_probability,
        custom_explore_fn=KeepInSpace(mutations),
        synch=settings.synch,
    )


def _mutation(dimension: Dimension) -> Any:
    """PBT's form of a dimension: a sorted list (perturbation moves to a neighbour) or a
    Tune domain (perturbation multiplies by 0.8 or 1.2; :class:`KeepInSpace` clips)."""
    if dimension.sampler == "choice":
        return sorted(dimension.args)
    low, high = dimension.args
    return tune.loguniform(low, high) if dimension.sampler == "loguniform" else tune.uniform(low, high)


class KeepInSpace:
    """PBT's ``custom_explore_fn``: clips perturbed range dimensions back into the space's
    ``[low, high]`` (a config is a nested TrialConfig dict; choices never leave their list)."""

    def __init__(self, mutations: dict[str, Dimension]) -> None:
        self.bounds = {key: d.args for key, d in mutations.items() if d.sampler in ("uniform", "loguniform")}

    def __call__(self, config: dict) -> dict:
        train = config["train"]
        for key, (low, high) in self.bounds.items():
            train[key] = min(max(train[key], low), high)
        return config


def population_space(configs: list[dict]) -> dict:
    """A Tune ``param_space`` whose grid yields exactly ``configs`` (TrialConfig dicts), for a
    scheduler that refuses searchers (PBT; run it with ``num_samples=1``).

    It is a grid over the trial seeds (unique per draw); every other key is looked up by seed.
    """
    by_seed = {config["seed"]: config for config in configs}
    if len(by_seed) != len(configs):
        raise ValueError("population_space needs one trial seed per config")
    lookups = {key: tune.sample_from(_BySeed(by_seed, key)) for key in configs[0] if key != "seed"}
    return {"seed": tune.grid_search(list(by_seed)), **lookups}


class _BySeed:
    """``tune.sample_from``'s function: the value of ``key`` in the config of the spec's seed."""

    def __init__(self, by_seed: dict[int, dict], key: str) -> None:
        self.by_seed, self.key = by_seed, key

    def __call__(self, spec: Any) -> Any:
        return copy.deepcopy(self.by_seed[spec.config["seed"]][self.key])


# --- PBT in a Train-in-Tune trial -----------------------------------------------------------
ORIGIN_KEYS = ("trial_id", "run", EPOCH)  # the metadata of a Tune checkpoint this module reports



def run_name(trial_id: str, storage: Path, origin: dict | None) -> str:
    """The Train run a PBT trial fits now: ``trial_id`` first; the latest existing
    generation when it restarts from its own checkpoint; ``<trial_id>-g<k>`` (k one above
    the latest under ``storage``) when it restarts from another trial's (an exploit).

    ``origin``: the metadata (:data:`ORIGIN_KEYS`) of ``tune.get_checkpoint()``, or None.
    """
    pattern = re.compile(rf"{re.escape(trial_id)}(?:-g(\d+))?")
    found = [match for path in storage.glob(f"{trial_id}*") if (match := pattern.fullmatch(path.name))]
    latest = max((int(match.group(1) or 0) for match in found), default=0)
    if origin is None or origin.get("trial_id") == trial_id:
        return trial_id if latest == 0 else f"{trial_id}-g{latest}"
    return f"{trial_id}-g{latest + 1}"


def run_population_trial(
    config: dict,
    storage: Path,
    interval: int,
    fit: Callable[[str, str | None, list], None],
) -> None:
    """The body of a PBT trial (see the module doc): ``fit(run_name, init_checkpoint, callbacks)``
    fits the trial's TorchTrainer; epochs are reported to Tune from here, with a checkpoint
    every ``interval`` epochs. Raises what ``fit`` raises."""
    trial_id = tune.get_context().get_trial_id()
    restored = tune.get_checkpoint()
    origin = restored.get_metadata() if restored is not None else None
    if origin and int(origin.get(EPOCH, 0)) >= config["train"]["epochs"]:
        return  # restored at its last epoch: nothing left to train
    name = run_name(trial_id, storage, origin)
    source = "" if origin is None or origin.get("trial_id") == trial_id else restored.path
    queue = Queue(actor_options={"num_cpus": 0})
    failure: list[BaseException] = []

    def fit_in_background() -> None:
        try:
            fit(name, restored.path if restored is not None else None, [ForwardMetrics(queue)])
        except BaseException as err:  # noqa: BLE001 - re-raised in the trial's thread below
            failure.append(err)

    worker = threading.Thread(target=fit_in_background, name="raycifar-pbt-fit", daemon=True)
    worker.start()
    try:
        while worker.is_alive() or not queue.empty():
            try:
                metrics = queue.get(timeout=0.25)
            except Empty:
                continue
            _report(metrics, trial_id, name, source, interval, config["train"]["epochs"])
        worker.join()
    finally:
        queue.shutdown(force=True)
    if failure:
        raise failure[0]


def _report(metrics: dict, trial_id: str, name: str, source: str, interval: int, epochs: int) -> None:
    """Report one epoch to Tune: with a copy of its Train checkpoint every ``interval``
    epochs (tagged with :data:`ORIGIN_KEYS`), and the Train run and the checkpoint this
    generation started from (``restored_from``; empty for none or the trial's own).

    The last of the trial's ``epochs`` is reported ``done``: Tune then ends the trial without
    asking PBT, which would otherwise pause and restart it for nothing, and Tune 2.60 restarts
    a trial's ``result.json`` from the copy in storage, which can lack the epochs since its
    last sync (seen: an exploited trial's last epoch missing from ``result.json``)."""
    row = {**metrics, "train_run": name, "restored_from": source, "done": int(metrics[EPOCH]) >= epochs}
    path, epoch = metrics.get(CHECKPOINT_PATH), int(metrics[EPOCH])
    if not path or epoch % interval:
        tune.report(row)
        return
    checkpoint = tune.Checkpoint(path)
    checkpoint.set_metadata({"trial_id": trial_id, "run": name, EPOCH: epoch})
    tune.report(row, checkpoint=checkpoint)
