"""The model card: a ``README.md`` in each leaderboard entry folder, written at promotion.

It says what the model scored (with a 95% confidence interval), which classes it confuses
most, what data it was trained and tested on, where it came from, and how to load it.
Pure text from a leaderboard row and the test predictions (no torch).
"""

from __future__ import annotations

import json

import numpy as np

from raycifar.data.catalog import CATALOG
from raycifar.entries.metrics import confusion_matrix, most_confused
from raycifar.results.cost import hours_unit
from raycifar.results.leaderboard_schema import ENTRY_FOLDER
from raycifar.results.schema import VAL_ACC

CARD_FILE = "README.md"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def _metrics(row: dict) -> list[str]:
    lines = [
        "| metric | value |",
        "|---|---|",
        f"| test accuracy | {_pct(row['test_acc'])} ({row['test_images']:,} images) |",
        f"| 95% confidence interval (Wilson) | {_pct(row['test_acc_ci_low'])} – {_pct(row['test_acc_ci_high'])} |",
    ]
    if row.get("test_acc_tta") is not None:
        tta = json.loads(row["config_json"])["train"]["tta"]
        lines.append(f"| test accuracy with test-time augmentation ({tta}) | {_pct(row['test_acc_tta'])} |")
    lines += [
        f"| test loss (mean cross-entropy, nats) | {row['test_loss']:.4f} |",
        f"| validation accuracy (selected epoch) | {_pct(row[VAL_ACC])} |",
    ]
    for name, acc in sorted((row.get("extra_test_acc") or {}).items()):
        lines.append(f"| extra test set `{name}` accuracy | {_pct(acc)} |")
    if row.get("corrupted_acc") is not None:
        lines.append(f"| corrupted test set accuracy (mean over corruptions × severities; `robustness.json`) | {_pct(row['corrupted_acc'])} |")
        lines.append(f"| clean − corrupted gap (same images) | {_pct(row['robustness_gap'])} |")
    if (row.get("seeds") or 0) > 1:
        spread = f"{_pct(row['test_acc_mean'])} ± {_pct(row['test_acc_std'])}"
        lines.append(f"| test accuracy over {row['seeds']} seeds (mean ± sample std) | {spread} |")
    return lines


def _training_line(config: dict) -> str:
    """What the model trained on and how its epoch was chosen (``train_on``, by default train)."""
    split = f"a validation split of {config['val_fraction']:.0%} (split seed {config['split_seed']})"
    if config.get("train_on", "train") == "train+val":
        return f"- training: the whole train part, {split} included; the last epoch was kept (no held-out selection)"
    return f"- training: the train part less {split}; the epoch was selected on that validation split"


def _confusions(labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> list[str]:
    matrix = confusion_matrix(labels, predicted, len(class_names))
    pairs = most_confused(matrix, class_names, top=3)
    if not pairs:
        return ["No test image was misclassified."]
    lines = ["| true class | predicted as | images | rate (of the true class) |", "|---|---|---|---|"]
    lines += [f"| {p.true} | {p.predicted} | {p.count} of {p.total} | {_pct(p.rate)} |" for p in pairs]
    return lines


def _hours(row: dict) -> str:
    wall = "-" if row.get("wall_s") is None else f"{row['wall_s']:.0f} s"
    device = "-" if row.get("device_hours") is None else f"{row['device_hours']:.3f} {hours_unit(row.get('device'))}"
    return f"training wall time {wall}; device time {device}"


def render_card(row: dict, labels: np.ndarray, predicted: np.ndarray, class_names: tuple[str, ...]) -> str:
    """The model card of leaderboard ``row`` (every :data:`~raycifar.results.leaderboard.SCHEMA`
    column) whose test predictions are ``predicted`` for true ``labels`` (N class indices)."""
    config = json.loads(row["config_json"])
    stats = CATALOG[row["dataset"]]
    entry = row["entry_id"]
    label_mode = f", {row['label_mode']} labels" if row["dataset"] == "cifar100" else ""
    sections = [
        f"# {entry}",
        "",
        f"A {row['model']} ({row['params']:,} parameters, {row['macs']:,} multiply-accumulates per 32x32 image; "
        f"budget {row['budget']:,}) trained for {row['epochs']} epochs on {stats.title}{label_mode} by raycifar "
        f"{row['raycifar_version']}, promoted from sweep `{row['sweep']}`, trial `{row['trial_id']}`.",
        "",
        "## Metrics",
        "",
        *_metrics(row),
        "",
        "## Most confused classes",
        "",
        *_confusions(labels, predicted, class_names),
        "",
        "`predictions.npz` holds every test image's true label, prediction and class probabilities "
        "(`labels`, `predicted`, `probs` as float16, `tta_predicted` with test-time augmentation, `class_names`).",
        "",
        "## Data",
        "",
        f"- dataset: {stats.title} ({row['dataset']}{label_mode}), from `{config['data_dir']}`",
        _training_line(config),
        f"- test: the dataset's test part, {row['test_images']:,} images, scored once at promotion",
        f"- inputs: RGB 32x32, scaled to 0..1, then normalised with mean {stats.mean} and std {stats.std}",
        "",
        "## Provenance",
        "",
        f"- created {row['created_at']:%Y-%m-%d %H:%M:%S} UTC on host `{row['host']}`; "
        f"raycifar source `{row['git_sha'] or 'unknown'}`",
        f"- seed {row['seed']}; {_hours(row)}",
        f"- source checkpoint: `{row['source_checkpoint']}`",
        "",
        "## How to load it",
        "",
        "```python",
        "import raycifar",
        "",
        f'model = raycifar.load_model("{entry}", results_dir="{_results_dir(row)}")  # eval mode, CPU',
        "```",
        "",
        "Or from the files alone: `config.json` is the resolved trial config and `model.safetensors` the "
        "weights of `raycifar.models.build_model(config.model)` (see `raycifar.models.files.load_model_files`).",
        "",
        "## Config",
        "",
        "```json",
        json.dumps(config, indent=2, sort_keys=True),
        "```",
        "",
    ]
    return "\n".join(sections)


def _results_dir(row: dict) -> str:
    """The results folder of an entry whose files are in ``<results>/leaderboard/<entry_id>``."""
    path = str(row.get(ENTRY_FOLDER) or "")
    parts = path.rstrip("/").rsplit("/", 2)
    return parts[0] if len(parts) == 3 else "raycifar_results"
