"""What a sweep needs to be resumed after its driver died (``raycifar sweep --resume NAME``).

A sweep keeps, next to its ``sweep_record.json``:

* ``resume.json``: the options it was started with (:class:`SavedOptions`), written once
  before Ray starts. A resume runs with these; options given again must be equal
  (:func:`refuse_changes`), since Tune keeps the trials' configs, the searcher and the
  scheduler of the first start.
* ``scheduler_state.pkl`` (:data:`SCHEDULER_STATE_FILE`): the scheduler's own ``save()``
  after every trial start, result and end, written by a Tune callback in
  :mod:`raycifar.sweep.tune_hooks`. Ray Tune 2.60 saves the searcher with its
  experiment state but not the scheduler: without this file ASHA would forget every rung
  record of the trials that ran before the driver died.

This module imports neither Ray nor torch (``raycifar status`` uses it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from raycifar.errors import UserError
from raycifar.results import layout
from raycifar.results.atomic import replace_text
from raycifar.results.sweep_record import SweepRecord, read_record, utc_now

OPTIONS_FILE = "resume.json"
SCHEDULER_STATE_FILE = "scheduler_state.pkl"
OPTIONS_FORMAT = 1
COMPLETED_STATES = frozenset({"finished", "stopped_early", "diverged"})  # never run again on resume


class SavedOptions(BaseModel):
    """The options of ``raycifar sweep`` that a resumed sweep keeps, by CLI option name
    (without the dashes, ``-`` as ``_``); ``space`` is the space file's resolved path."""

    model_config = ConfigDict(extra="ignore")

    format: int = OPTIONS_FORMAT
    space: str
    data_dir: str
    data_fingerprint: str | None = None  # the data's (raycifar.data.fingerprint); None: recorded before fingerprints
    seed: int
    num_samples: int | None = None  # None: the space file's
    searcher: str | None = None  # None: the space file's
    max_trials: int | None = None
    max_failures: int = 2
    time_budget_s: float | None = None  # a resume counts it again from its own start
    max_epochs: int | None = None
    cpus_per_trial: float
    gpus_per_trial: float | None = None
    workers_per_trial: int
    max_concurrent_trials: int | None = None
    wandb: str
    loader: str | None = None
    dataset: str | None = None
    label_mode: str | None = None
    address: str | None = None  # where it ran first; a resume may join another cluster
    trial_runner: Literal["in-trial", "torch-trainer"] | None = None  # where trials train ("in-trial", "torch-trainer"); None: torch-trainer (older sweeps)
    extended_to: int | None = None  # the trial count after the latest `--resume NAME --num-samples N` (None: never)


# Options a resume may give with a new value: where Ray runs, how many trials at once, what is printed.
CHANGEABLE = frozenset({"address", "dashboard", "results_dir", "format", "time_budget", "max_concurrent_trials"})


def options_path(sweep_dir: Path) -> Path:
    return sweep_dir / OPTIONS_FILE


def save_options(sweep_dir: Path, options: SavedOptions) -> None:
    """Write ``sweep_dir/resume.json`` whole (:mod:`raycifar.results.atomic`)."""
    sweep_dir.mkdir(parents=True, exist_ok=True)
    replace_text(options_path(sweep_dir), options.model_dump_json(indent=1))


def load_options(sweep_dir: Path) -> SavedOptions:
    """The options ``sweep_dir``'s sweep was started with.

    Raises UserError (one line naming the file) when the sweep has no ``resume.json`` (a
    sweep of an older raycifar) or it cannot be read.
    """
    path = options_path(sweep_dir)
    try:
        return SavedOptions.model_validate_json(path.read_text())
    except FileNotFoundError:
        raise UserError(f"{path}: missing; sweep {sweep_dir.name} was started by an older raycifar and cannot be resumed") from None
    except (OSError, ValidationError) as err:
        detail = err.errors()[0]["msg"] if isinstance(err, ValidationError) else (err.strerror or str(err))
        raise UserError(f"{path}: not readable resume options ({detail})") from None


def _flag(key: str) -> str:
    return "SPACE" if key == "space" else f"--{key.replace('_', '-')}"


def refuse_changes(name: str, saved: SavedOptions, given: Mapping[str, Any]) -> None:
    """Raise UserError when an option given with ``--resume`` differs from the sweep's own.

    ``given``: the options typed on the command line, by :class:`SavedOptions` field name
    (values as the CLI parsed them; paths resolved). Options in :data:`CHANGEABLE` may change.
    """
    for key, value in given.items():
        if key in CHANGEABLE:
            continue
        if key not in SavedOptions.model_fields or key in ("format",):
            raise UserError(f"{_flag(key)}: cannot be given with --resume {name}")
        before = getattr(saved, key)
        if key == "space" and _same_space(str(value), before):
            continue
        if _normal(value) != _normal(before):
            raise UserError(
                f"{_flag(key)} {_shown(value)}: sweep {name} was started with {_shown(before)}, and a resumed "
                f"sweep keeps its options (drop {_flag(key)})"
            )


def _normal(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _shown(value: Any) -> str:
    return "(default)" if value is None else str(_normal(value))


def _same_space(given: str, saved_path: str) -> bool:
    """A SPACE given again names the saved space file: its path, or its shipped name."""
    return given == saved_path or Path(given).expanduser().resolve() == Path(saved_path) or Path(saved_path).stem == given


@dataclass(frozen=True)
class Resumable:
    """A sweep that ``--resume`` can continue: its folder, record and options."""

    sweep_dir: Path
    record: SweepRecord
    options: SavedOptions
    completed: frozenset[str] = field(default_factory=frozenset)  # trial ids never run again
    ended: bool = False  # it ended (completed or failed): only an extension runs it again


def has_ended(record: SweepRecord) -> bool:
    """The sweep ended (completed, failed, or promoted) and is not being extended."""
    return record.ended_at is not None and (record.outcome in ("completed", "failed") or record.promoted_entry is not None)


def check_resumable(results_dir: Path, name: str, now: datetime | None = None, extend: int | None = None) -> Resumable:
    """The sweep ``name`` in ``results_dir``, if it can be resumed (``extend`` None) or
    extended by ``extend`` more trials; else UserError (one line): no such sweep, no
    record, its driver still running, it already ended (resume), or it did not end (extend)."""
    sweeps_dir = layout.sweeps_dir(results_dir)
    sweep_dir = sweeps_dir / name
    if not sweep_dir.is_dir():
        known = ", ".join(sorted(p.name for p in sweeps_dir.iterdir() if p.is_dir())) if sweeps_dir.is_dir() else ""
        raise UserError(f"--resume {name}: no such sweep in {sweeps_dir} (known: {known or 'none'})")
    record = read_record(sweep_dir)
    if record is None:
        raise UserError(f"--resume {name}: {sweep_dir} has no sweep_record.json; the sweep never started or is too old to resume")
    if record.driver_alive(now or utc_now()):
        raise UserError(
            f"--resume {name}: the sweep is still running (driver pid {record.driver_pid} on {record.driver_host}, "
            f"heartbeat {record.heartbeat_at:%H:%M:%S} UTC); stop it first or wait a minute after it died"
        )
    ended = has_ended(record)
    finished = record.done_trials()
    if ended and extend is None:
        raise UserError(
            f"--resume {name}: the sweep already ended ({record.outcome or 'promoted'}, {finished} of "
            f"{record.planned_trials or finished} trials finished); nothing to resume (add trials with "
            f"--resume {name} --num-samples N)"
        )
    if not ended and extend is not None:
        raise UserError(
            f"--num-samples {extend}: sweep {name} did not end ({finished} trials finished), and only an ended sweep "
            f"takes more trials; resume it first with raycifar sweep --resume {name}, then add trials"
        )
    options = load_options(sweep_dir)
    completed = frozenset(tid for tid, trial in record.trials.items() if trial.state in COMPLETED_STATES)
    return Resumable(sweep_dir, record, options, completed, ended)


def resume_command(name: str, results_dir: Path | None = None) -> str:
    """The command line that resumes sweep ``name`` (``--results-dir`` unless the default)."""
    command = f"raycifar sweep --resume {name}"
    if results_dir is not None and Path(results_dir) != Path("raycifar_results"):
        command += f" --results-dir {results_dir}"
    return command
