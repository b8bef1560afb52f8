"""``raycifar report``: everything the HTML report shows, gathered from files into one dict.

Sources, all under the results folder so that a report can be regenerated at any time:
the sweep record (``sweeps/<name>/sweep_record.json``), Tune's per-trial files
(``trial_<id>/params.json``, ``result.json``, ``error.txt``), the leaderboard row and the
entry's ``predictions.npz`` and ``robustness.json``. Only the grid of misclassified images reads the test images
(``--data-dir``) and the model (:mod:`raycifar.report.images`), and the top-k robustness
comparison the trials' checkpoints (:mod:`raycifar.report.robustness`). Ray is never imported.
:mod:`raycifar.report.html` turns the dict into the page.
"""

from __future__ import annotations

import json
import math
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from raycifar.config import DEFAULT_SELECT
from raycifar.data.file_names import shown
from raycifar.entries.metrics import confusion_matrix, load_predictions, most_confused, wilson_interval
from raycifar.errors import UserError
from raycifar.results import layout
from raycifar.results.atomic import replace_text
from raycifar.results.layout import entry_dir
from raycifar.results.leaderboard import find_entry, read_table, rows_dir
from raycifar.results.schema import EPOCH, TRAIN_LOSS, VAL_ACC, VAL_ACC_SHIFT, selected_metric
from raycifar.results.selection import good_results
from raycifar.results.sweep_record import completion_state, read_record
from raycifar.results.trial_files import TrialFolder, planned_epochs, trial_folders
from raycifar.space.sections import SCHEDULER_KEYS, SCHEDULER_LABELS

REPORT_FILE = "report.html"
FAILED_STATES = ("error", "diverged")
# Config keys that are bookkeeping, not hyperparameters (left out of the importance ranking).
NOT_HYPERPARAMETERS = {"space", "dataset", "data_dir", "split_seed", "seed", "budget", "params", "label_mode",
                       "loader", "class_weights", "val_fraction", "model.num_classes"}  # fmt: skip
TOP_PAIRS = 3


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


# ---------------------------------------------------------------------- sweep


def rungs(grace_period: int, reduction_factor: int, max_t: int) -> list[int]:
    """The epochs where ASHA may stop a trial: ``grace_period * reduction_factor**k`` below
    ``max_t`` (the grace period capped at ``max_t``, as :mod:`raycifar.sweep.schedulers` builds ASHA)."""
    found, rung = [], min(grace_period, max_t)
    while rung < max_t:
        found.append(rung)
        rung *= reduction_factor
    return found


def scheduler_settings(space: str) -> tuple[dict, str]:
    """The scheduler settings of the space a sweep ran (``name``, ``grace_period`` ...) and
    where they came from; the defaults (ASHA) when the space file is not found."""
    from raycifar.space.find import load_space
    from raycifar.space.sections import SchedulerSettings

    try:
        loaded = load_space(space)
    except UserError:
        return SchedulerSettings().model_dump(), f"defaults (space file {space!r} not found)"
    return loaded.spec.scheduler.model_dump(), f"space file {loaded.path}"


def _model_numbers(config: dict) -> tuple[str, int | None, int | None]:
    """Model name, parameters and MACs (one 32x32 image) of a trial config's model."""
    from pydantic import ValidationError

    from raycifar.config import ModelConfig
    from raycifar.models.budget import count_macs, count_params
    from raycifar.models.registry import model_name

    try:
        model = ModelConfig.model_validate(config.get("model"))
    except ValidationError:
        return "?", config.get("params"), None
    return model_name(model), config.get("params") or count_params(model), count_macs(model)


def _series(rows: list[dict], key: str) -> list[float | None]:
    values = [row.get(key) for row in rows]
    return [float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None for v in values]


def flat_hyperparameters(config: dict) -> dict[str, Any]:
    """A trial config's hyperparameters as ``section.key -> value`` (lists joined with '-')."""
    flat: dict[str, Any] = {}
    for section in ("model", "train", "augment"):
        for key, value in (config.get(section) or {}).items():
            if isinstance(value, (list, tuple)):
                value = "-".join(str(v) for v in value)
            elif isinstance(value, dict):
                value = json.dumps(value, sort_keys=True)
            flat[f"{section}.{key}"] = value
    return {k: v for k, v in flat.items() if k not in NOT_HYPERPARAMETERS}


def read_trial(folder: TrialFolder, recorded_state: str | None) -> dict:
    """One trial folder: its config, per-epoch curves and end state (see module doc)."""
    rows = folder.results()
    config = folder.config(rows)
    planned = planned_epochs(config)
    epochs = [int(r[EPOCH]) for r in rows if r.get(EPOCH) is not None]
    failed = folder.error_file is not None
    diverged = len(good_results(rows)) < len(rows)
    state = recorded_state or (
        "error" if failed else "diverged" if diverged else completion_state(max(epochs, default=0), planned)
    )
    model, params, macs = _model_numbers(config)
    val_acc = _series(rows, VAL_ACC)
    scored = [v for v in val_acc if v is not None]
    return {
        "trial_id": folder.trial_id, "state": state, "model": model, "params": params,
        "macs": macs, "planned_epochs": planned, "epochs": epochs, VAL_ACC: val_acc,
        VAL_ACC_SHIFT: _series(rows, VAL_ACC_SHIFT), "shift_pair": shift_pair(rows, config.get("select")),
        TRAIN_LOSS: _series(rows, TRAIN_LOSS), "best_val_acc": max(scored, default=None),
        "hyperparameters": flat_hyperparameters(config), "budget": config.get("budget"),
    }  # fmt: skip


def shift_pair(rows: list[dict], select: str | None) -> tuple[float, float] | None:
    """``(val_acc, val_acc_shift)`` of a trial's best epoch by its selected score (the
    checkpoint promotion would take; the latest of equals), or None without a shifted score."""
    metric = selected_metric(select or DEFAULT_SELECT)
    scored = [r for r in good_results(rows) if all(_finite(r.get(key)) for key in (VAL_ACC, VAL_ACC_SHIFT, metric))]
    if not scored:
        return None
    best = max(scored, key=lambda r: (r[metric], r.get(EPOCH, 0)))
    return float(best[VAL_ACC]), float(best[VAL_ACC_SHIFT])


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def pareto_front(points: list[tuple[float, float]]) -> list[int]:
    """Indices of the ``(params, acc)`` points no other point beats (as few or fewer
    params and as high or higher acc, better in one), by ascending params."""
    front = []
    for i, (params, acc) in enumerate(points):
        beaten = any(p <= params and a >= acc and (p < params or a > acc) for j, (p, a) in enumerate(points) if j != i)
        if not beaten:
            front.append(i)
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def varying(trials: list[dict]) -> list[str]:
    """Hyperparameters with more than one value among the scored trials, in config order."""
    scored = [t for t in trials if t["best_val_acc"] is not None]
    keys = list(dict.fromkeys(k for t in scored for k in t["hyperparameters"]))
    return [k for k in keys if len({json.dumps(t["hyperparameters"].get(k)) for t in scored}) > 1]


def _distribution(values: list) -> Any:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    numbers = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if numbers and all(isinstance(v, int) for v in values):
        return IntDistribution(min(values), max(values))
    if numbers and all(math.isfinite(v) for v in values):  # NaN or inf: categories
        low, high = float(min(values)), float(max(values))
        return FloatDistribution(low, high, log=low > 0 and high / low >= 10)
    return CategoricalDistribution(sorted({str(v) if v is not None else "none" for v in values}))


def importance(trials: list[dict], keys: list[str]) -> dict:
    """fANOVA importance of ``keys`` for best val_acc, from an in-memory optuna study built
    from the trials (``{"values": {key: share}}``), or ``{"note": why not}``."""
    scored = [t for t in trials if t["best_val_acc"] is not None]
    if len(scored) < 3 or not keys:
        return {"note": f"needs at least 3 scored trials and a hyperparameter that varies ({len(scored)} scored, "
                        f"{len(keys)} varying)"}  # fmt: skip
    if len({t["best_val_acc"] for t in scored}) == 1:
        return {"note": f"every scored trial has the same best val_acc ({scored[0]['best_val_acc']:.4f}): "
                        "zero variance, nothing to attribute"}  # fmt: skip
    try:
        return _fanova(scored, keys)
    except (RuntimeError, ValueError):  # optuna's fANOVA on a degenerate study: say why in our words
        return {"note": "fANOVA found no variance it could attribute to the hyperparameters (the trees "
                        "split on none of them)"}  # fmt: skip


def _fanova(scored: list[dict], keys: list[str]) -> dict:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    distributions = {k: _distribution([t["hyperparameters"].get(k) for t in scored]) for k in keys}
    study = optuna.create_study(direction="maximize")
    for trial in scored:
        params = {}
        for key, dist in distributions.items():
            value = trial["hyperparameters"].get(key)
            is_categorical = isinstance(dist, optuna.distributions.CategoricalDistribution)
            params[key] = (str(value) if value is not None else "none") if is_categorical else value
        study.add_trial(
            optuna.trial.create_trial(params=params, distributions=distributions, value=trial["best_val_acc"])
        )
    evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
    values = optuna.importance.get_param_importances(study, evaluator=evaluator)
    return {"values": {k: float(v) for k, v in values.items()}, "method": "fANOVA"}


def gather_sweep(sweep_dir: Path) -> dict:
    """The sweep sections: header numbers, every trial, rungs, Pareto front, importance."""
    record = read_record(sweep_dir)
    states = {tid: t.state for tid, t in record.trials.items()} if record else {}
    trials = [read_trial(folder, states.get(folder.trial_id)) for folder in trial_folders(sweep_dir)]
    space = record.space if record else "?"
    if record is not None and record.scheduler:
        settings, source = record.scheduler, "the sweep record"
    else:
        settings, source = scheduler_settings(space)
    max_t = max((t["planned_epochs"] for t in trials), default=0)
    key = settings.get("name", "asha")  # records before schedulers had names ran ASHA
    scored = [(i, t) for i, t in enumerate(trials) if t["best_val_acc"] is not None and t["params"] is not None]
    front = pareto_front([(t["params"], t["best_val_acc"]) for _, t in scored])
    shifted = [t for t in trials if t["shift_pair"] is not None]
    shift_front = pareto_front([(-t["shift_pair"][0], t["shift_pair"][1]) for t in shifted])  # both maximised
    keys = varying(trials)
    wall = (record.ended_at - record.started_at).total_seconds() if record and record.ended_at else None
    return {
        "name": sweep_dir.name, "space": space, "folder": str(sweep_dir), "trials": trials,
        "counts": {"run": len(trials), "stopped_early": sum(t["state"] == "stopped_early" for t in trials),
                   "failed": sum(t["state"] in FAILED_STATES for t in trials)},
        "scheduler": {**{k: v for k, v in settings.items() if k in SCHEDULER_KEYS.get(key, ())}, "name": SCHEDULER_LABELS[key], "key": key, "max_t": max_t, "source": source},
        "rungs": rungs(settings["grace_period"], settings["reduction_factor"], max_t) if key == "asha" else [],
        "started_at": record.started_at.isoformat(timespec="seconds") if record else None,
        "ended_at": record.ended_at.isoformat(timespec="seconds") if record and record.ended_at else None,
        "wall_s": wall, "outcome": record.outcome if record else None,
        "promoted_entry": record.promoted_entry if record else None,
        "budget": next((t["budget"] for t in trials if t["budget"]), None),
        "pareto": [trials[scored[i][0]]["trial_id"] for i in front],
        "shift_pareto": [shifted[i]["trial_id"] for i in shift_front],
        "varying": keys, "importance": importance(trials, keys),
    }  # fmt: skip


# ---------------------------------------------------------------------- entry




def gather_entry(results_dir: Path, row: dict) -> dict:
    """The promoted model's sections: test accuracy and its 95% interval, per-class
    accuracy, confusion matrix and the most confused pairs, from ``predictions.npz``."""
    folder = entry_dir(results_dir, row["entry_id"])
    predictions = load_predictions(folder / "predictions.npz")
    labels, predicted = predictions["labels"].astype(np.int64), predictions["predicted"].astype(np.int64)
    names = tuple(str(n) for n in predictions["class_names"])
    matrix = confusion_matrix(labels, predicted, len(names))
    correct, total = int(np.trace(matrix)), int(matrix.sum())
    counts = matrix.sum(axis=1)
    per_class = [float(d / n) if n else None for d, n in zip(matrix.diagonal(), counts, strict=True)]  # None: no images
    tta = predictions.get("tta_predicted")
    return {
        "row": row, "folder": str(folder), "class_names": list(names), "confusion": matrix.tolist(),
        "correct": correct, "total": total, "acc": correct / total if total else math.nan,
        "ci": wilson_interval(correct, total), "per_class": per_class,
        "tta_acc": float((tta == labels).mean()) if tta is not None and total else None,
        "confused": [vars(c) | {"rate": c.rate} for c in most_confused(matrix, names, TOP_PAIRS)],
        "predictions": {"labels": labels, "predicted": predicted, "probs": predictions["probs"].astype(np.float32)},
    }  # fmt: skip


def provenance(row: dict) -> dict:
    """What made the entry: its resolved config, seed, versions and git commit."""
    return {
        "config": json.loads(row["config_json"]) if row.get("config_json") else None,
        "seed": row.get("seed"), "entry_raycifar": row.get("raycifar_version"), "git_sha": row.get("git_sha"),
        "host": row.get("host"), "raycifar": _version("raycifar"), "ray": _version("ray"),
        "python": sys.version.split()[0],
    }  # fmt: skip


# ---------------------------------------------------------------------- both


def resolve(results_dir: Path, target: str) -> tuple[Path | None, dict | None]:
    """``target`` as (sweep folder or None, leaderboard row or None): a sweep name (with its
    promoted entry, if any) or an entry id (with its sweep's folder, if it came from one)."""
    sweep_dir = layout.sweep_dir(results_dir, target)
    if sweep_dir.is_dir():
        record = read_record(sweep_dir)
        entry_id = record.promoted_entry if record and record.promoted_entry else None
        rows = [r for r in read_table(results_dir) if r["sweep"] == target]
        row = next((r for r in rows if r["entry_id"] == entry_id), rows[-1] if rows else None)
        return sweep_dir, row
    try:
        row = find_entry(results_dir, target, warn=lambda _: None)
    except UserError:
        raise UserError(
            f"{target!r}: neither a sweep in {layout.sweeps_dir(results_dir)} nor a leaderboard entry in {rows_dir(results_dir)}"
        ) from None
    from_sweep = layout.sweep_dir(results_dir, row["sweep"] or "")
    return (from_sweep if row["sweep"] and from_sweep.is_dir() else None), row


def gather(results_dir: Path, target: str, data_dir: Path | None = None) -> dict:
    """Everything the report shows for sweep or entry ``target`` (see :func:`resolve`).
    ``data_dir``: where the test images are (default: the entry's config ``data_dir``)."""
    sweep_dir, row = resolve(results_dir, target)
    report: dict = {"target": target, "results_dir": str(results_dir),
                    "generated_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "sweep": gather_sweep(sweep_dir) if sweep_dir else None, "entry": None, "provenance": None}  # fmt: skip
    if row is not None:
        from raycifar.report.images import misclassified_grids
        from raycifar.report.robustness import gather_robustness

        entry = gather_entry(results_dir, row)
        config = json.loads(row["config_json"]) if row.get("config_json") else {}
        images_dir = data_dir or Path(config.get("data_dir") or ".")
        entry["grids"] = misclassified_grids(Path(entry["folder"]), images_dir, entry)
        entry["robustness"] = gather_robustness(Path(entry["folder"]), sweep_dir, images_dir, row.get("source_checkpoint"))
        report["entry"], report["provenance"] = entry, provenance(row)
    return report


def write_report(results_dir: Path, target: str, output: Path, data_dir: Path | None = None) -> Path:
    """Gather and render the report of ``target`` into ``output`` (one HTML file); returns it."""
    from raycifar.report.html import render

    html = shown(render(gather(results_dir, target, data_dir)))  # names that are not UTF-8: \xNN
    try:
        output.parent.mkdir(parents=True, exist_ok=True)
        replace_text(output, html)
    except OSError as err:
        raise UserError(f"--output {output}: cannot write it ({err.strerror or err})") from None
    return output
