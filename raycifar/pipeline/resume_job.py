"""``raycifar sweep --resume NAME``: continue a sweep whose driver died, or extend an ended
one with ``--num-samples N`` more trials.

The sweep's own options come from its ``resume.json`` (:mod:`raycifar.results.resume`);
options typed again must equal them. Then the sweep runs and promotes as
:func:`raycifar.pipeline.sweep_job.run_and_promote` does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from raycifar.cluster.session import RunResources, check_reachable, prepare_environment
from raycifar.data.relocate import Expected, repoint
from raycifar.display import Display, Quiet
from raycifar.errors import UserError
from raycifar.pipeline.preflight import check_resources, check_results_dir, holding_sweep
from raycifar.pipeline.sweep_job import SweepRequest, SweepResult, run_and_promote
from raycifar.pipeline.wandb_log import check_mode
from raycifar.results.resume import Resumable, SavedOptions, check_resumable, refuse_changes, save_options
from raycifar.results.torn import find_torn, repair
from raycifar.search.plan import longest_trial, trial_count, with_searcher
from raycifar.space.find import Space, load_space
from raycifar.sweep.options import TORCH_TRAINER, Resume


@dataclass(frozen=True)
class ResumeRequest:
    """``raycifar sweep --resume NAME``: the sweep, where Ray runs now, and the other options
    typed on the command line (by :class:`raycifar.results.resume.SavedOptions` field; they must
    equal the sweep's own)."""

    name: str
    results_dir: Path
    address: str | None = None
    dashboard: bool = True
    given: dict[str, object] = field(default_factory=dict)
    time_budget_s: float | None = None  # None: the sweep's own budget, counted again from the resume
    started: float | None = None  # time.monotonic() when the command started (None: now)
    corrupted: Path | None = None  # --corrupted for the promotion at the end (not saved with the sweep)
    robustness: bool | None = None  # --robustness / --no-robustness (None: the default rule)


def resume_sweep(request: ResumeRequest, display: Display | None = None) -> SweepResult:
    """Continue sweep ``request.name`` after its driver died: trials that ended are kept,
    unfinished ones go on from their last checkpoint, errored ones are run again; then the
    best checkpoint is promoted as by :func:`sweep_and_promote`.

    Raises UserError (one line, before Ray starts) when there is no such sweep, it is still
    running or already ended, or an option given differs from the sweep's own.
    """
    started = request.started if request.started is not None else time.monotonic()
    prepare_environment(request.address)
    display = display or Quiet()
    given = dict(request.given)
    added, new_data = given.get("num_samples"), given.pop("data_dir", None)
    found = check_resumable(request.results_dir, request.name, extend=added)
    saved = found.options
    refuse_changes(request.name, saved, {k: v for k, v in given.items() if k != "num_samples" or not found.ended})
    check_mode(saved.wandb)
    sweep_request = _saved_request(request, saved)
    check_resources(sweep_request.resources, request.address)
    check_results_dir(request.results_dir)
    loaded = with_searcher(load_space(saved.space, sweep_request.overrides), saved.searcher)
    data = repoint(
        Path(saved.data_dir), new_data, Expected(saved.data_fingerprint), loaded.spec.dataset, loaded.spec.label_mode,
        f"sweep {request.name}",
    )
    if found.ended and loaded.spec.scheduler.name == "pbt":
        raise UserError(f"--num-samples {added}: sweep {request.name} ran PBT, whose population is fixed; start a new sweep instead")
    torn = find_torn(found.sweep_dir)  # read only: repaired once the cluster answered
    if request.address is not None:  # nothing is written before the cluster answers
        check_reachable(request.address)
    with holding_sweep(found.sweep_dir):
        for tail in torn:
            repair(tail)
            display.info(tail.line())
        if data.moved:
            display.info(data.note or "")
            saved = saved.model_copy(update={"data_dir": str(data.data_dir), "data_fingerprint": data.fingerprint})
            save_options(found.sweep_dir, saved)
            sweep_request = replace(sweep_request, data_dir=data.data_dir, data_fingerprint=data.fingerprint)
        found = replace(found, options=saved)
        return _run(request, found, sweep_request, loaded, added, started, display)


def _run(
    request: ResumeRequest, found: Resumable, sweep_request: SweepRequest, loaded: Space, added: int | None,
    started: float, display: Display,
) -> SweepResult:
    """Resume (or extend) the sweep ``found`` with ``sweep_request``, holding its folder."""
    saved = found.options
    count = trial_count(loaded, saved.num_samples, saved.max_trials, sweep_request.time_budget_s)
    done = found.record.done_trials()
    trials = saved.extended_to if saved.extended_to is not None else count.trials
    if found.ended:
        trials = _extend(found, loaded, added, display)
    else:
        left = "trials until the time budget" if trials is None else f"{trials - done} to run or continue"
        display.info(f"resuming sweep {request.name}: {done} trials finished, {left}")
    resume = Resume(completed=found.completed, added=added if found.ended else 0)
    longest = longest_trial(loaded, saved.max_epochs)
    return run_and_promote(sweep_request, request.name, loaded, trials, longest, started, display, resume)


def _extend(found: Resumable, loaded: Space, added: int, display: Display) -> int:
    """``--resume NAME --num-samples N`` on an ended sweep: check it can take ``added`` more
    trials, save its new trial count in ``resume.json``, and return that count."""
    name, done = found.record.name, found.record.done_trials()
    total = done + added
    save_options(found.sweep_dir, found.options.model_copy(update={"extended_to": total}))
    display.info(
        f"extending sweep {name}: {done} trials ended, {added} more proposed by {loaded.spec.searcher.name} "
        f"from the same study (it knows the {done} before)"
    )
    return total


def _saved_request(request: ResumeRequest, saved: SavedOptions) -> SweepRequest:
    """The :class:`SweepRequest` a sweep was started with (its ``resume.json``), joining
    Ray at ``request.address`` this time."""
    cpus, gpus = saved.cpus_per_trial, saved.gpus_per_trial
    overrides = {key: getattr(saved, key) for key in ("loader", "dataset", "label_mode") if getattr(saved, key)}
    return SweepRequest(
        space=saved.space, data_dir=Path(saved.data_dir), results_dir=request.results_dir,
        num_samples=saved.num_samples, max_epochs=saved.max_epochs, seed=saved.seed, address=request.address,
        max_concurrent_trials=request.given.get("max_concurrent_trials", saved.max_concurrent_trials),
        wandb=saved.wandb, dashboard=request.dashboard,
        name=request.name, overrides=overrides, searcher=saved.searcher, max_trials=saved.max_trials,
        max_failures=saved.max_failures, runner=saved.trial_runner or TORCH_TRAINER,
        time_budget_s=request.time_budget_s if request.time_budget_s is not None else saved.time_budget_s,
        corrupted=request.corrupted, robustness=request.robustness, data_fingerprint=saved.data_fingerprint,
        repointed=True,  # the trials read the sweep's data folder as resume.json has it now
        resources=RunResources(
            workers=saved.workers_per_trial, cpus=cpus, gpus=gpus, cpu_request=f"--cpus-per-trial {cpus:g}",
            gpu_request=f"--gpus-per-trial {gpus or 0:g}",
        ),
    )  # fmt: skip
