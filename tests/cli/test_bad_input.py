"""Bad input, by kind, over the command line: every mistake is one line on stderr with exit
code 2, naming the file or flag, the key and the value; nothing in the results folder
changes; and nothing reaches Ray.

Each case builds its input in a fresh copy of a results folder that already holds a
leaderboard row, the entry's exported files and a ``sweeps/`` folder, runs
``python -m raycifar ...`` as a subprocess with its own TMPDIR, and checks all of the above.
A few inputs that look odd but are fine (str-key pickles, Finder copies, empty sections, a
damaged sweep folder for ``status``) are checked to be accepted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cli_server
import numpy as np
import pytest
import torch
from cifar_files import synthetic_images, write_batch, write_cifar10, write_cifar100
from safetensors.torch import load_file, save_file
from test_leaderboard import exported_checkpoint

from raycifar.cluster.session import available_cpus
from raycifar.entries.promote import promote


@dataclass(frozen=True)
class Workspace:
    """What a case builds on: ``results`` (a copy of the template results folder, holding
    entry ``entry``), ``data`` (a good CIFAR-10 folder) and ``tmp`` (the case's own folder)."""

    tmp: Path
    results: Path
    data: Path
    entry: str

    @property
    def entry_dir(self) -> Path:
        return self.results / "leaderboard" / self.entry

    def space(self, text: str) -> Path:
        """A space file holding ``text``, in the case's folder."""
        path = self.tmp / "space.yaml"
        path.write_text(text)
        return path

    def sweep(self, space: Path | str, *options: str, data: Path | None = None) -> list[str]:
        """``sweep SPACE --data-dir DATA --results-dir RESULTS OPTIONS``."""
        folder = data or self.data
        return ["sweep", str(space), "--data-dir", str(folder), "--results-dir", str(self.results), *options]

    def evaluate(self, *options: str) -> list[str]:
        return ["evaluate", self.entry, "--results-dir", str(self.results), *options]

    def cifar10(self, name: str, **sizes: int) -> Path:
        """A small CIFAR-10 folder ``tmp/name`` in the official python layout."""
        return write_cifar10(self.tmp / name, **{"train_batches": 1, "per_batch": 100, "test": 50, **sizes})


GOOD_SPACE = """budget: 100000
arch:
  depths: [1, 1]
  base_width: 8
train:
  epochs: 1
  batch_size: 32
"""

# What library messages look like (exception names, torch's and pyarrow's phrasing): none may
# reach the user as it is.
LIBRARY_MARKERS = ("Error:", "Error(", "Exception", "state_dict", "Parquet magic", "Invalid JSON", "deserializing")

# Each case: (workspace) -> (command line, strings its one stderr line must contain).
Case = Callable[[Workspace], tuple[list[str], list[str]]]


def space_case(text: str, *expected: str) -> Case:
    """A sweep of a space file holding ``text``; the line names the file and ``expected``."""

    def build(w: Workspace) -> tuple[list[str], list[str]]:
        path = w.space(text)
        return w.sweep(path), [str(path), *expected]

    return build


def flag_case(*options: str, expected: tuple[str, ...], command: str = "sweep") -> Case:
    """The good space with extra ``options``."""

    def build(w: Workspace) -> tuple[list[str], list[str]]:
        path = w.space(GOOD_SPACE)
        if command == "sweep":
            return w.sweep(path, *options), list(expected)
        args = ["train", str(path), "--data-dir", str(w.data), "--results-dir", str(w.results), *options]
        return args, list(expected)

    return build


SHADOWS = "shadowed-packages"  # a folder of the case put first on the CLI's PYTHONPATH


def _without_ffcv(w: Workspace, case: Case) -> tuple[list[str], list[str]]:
    """``case`` on a machine without FFCV, also where it is installed (CI builds it): an
    ``ffcv`` package that cannot be imported shadows the real one for the command."""
    shadow = w.tmp / SHADOWS / "ffcv"
    shadow.mkdir(parents=True)
    (shadow / "__init__.py").write_text('raise ImportError("FFCV is not installed (a test shadows it)")\n')
    return case(w)


def _truncated_pickle(w: Workspace) -> tuple[list[str], list[str]]:
    folder = w.cifar10("data")
    batch = folder / "cifar-10-batches-py" / "data_batch_1"
    batch.write_bytes(batch.read_bytes()[:5000])
    return w.sweep(w.space(GOOD_SPACE), data=folder), [str(batch), "truncated"]


def _labels_out_of_range(w: Workspace) -> tuple[list[str], list[str]]:
    folder = w.cifar10("data")
    batch = folder / "cifar-10-batches-py" / "data_batch_1"
    images, labels = synthetic_images(100, np.random.default_rng(0))
    labels[7] = 10
    write_batch(batch, images, labels, "bad labels")
    return w.sweep(w.space(GOOD_SPACE), data=folder), [str(batch), "labels", "0..9", "image 7: 10"]


def _images_not_32x32(w: Workspace) -> tuple[list[str], list[str]]:
    folder = w.cifar10("data")
    batch = folder / "cifar-10-batches-py" / "data_batch_1"
    write_batch(batch, np.zeros((100, 3 * 28 * 28), np.uint8), [0] * 100, "28x28")
    return w.sweep(w.space(GOOD_SPACE), data=folder), [str(batch), "3072", "(100, 2352)"]


def _empty_validation_split(w: Workspace) -> tuple[list[str], list[str]]:
    folder = w.cifar10("data", per_batch=5, test=5)
    return w.sweep(w.space(GOOD_SPACE), data=folder), [str(folder), "val_fraction 0.1", "0 of its 5 images"]


def _cifar100_folder_as_cifar10(w: Workspace) -> tuple[list[str], list[str]]:
    folder = write_cifar100(w.tmp / "c100", train=50, test=20)
    return w.sweep(w.space(GOOD_SPACE), "--dataset", "cifar10", data=folder), [
        f"CIFAR-10 not found in {folder}", "cifar-100-python", "--dataset cifar100"
    ]


def _missing_data_folder(w: Workspace) -> tuple[list[str], list[str]]:
    folder = w.tmp / "no-data"
    return w.sweep(w.space(GOOD_SPACE), data=folder), [f"CIFAR-10 not found in {folder}"]


def _results_dir_is_a_file(w: Workspace) -> tuple[list[str], list[str]]:
    target = next((w.results / "leaderboard" / "rows").glob("*.parquet"))
    args = ["sweep", str(w.space(GOOD_SPACE)), "--data-dir", str(w.data), "--results-dir", str(target)]
    return args, ["--results-dir", str(target), "is a file, not a folder"]


def _sweeps_is_a_file(w: Workspace) -> tuple[list[str], list[str]]:
    shutil.rmtree(w.results / "sweeps")
    (w.results / "sweeps").write_text("not a folder")
    return w.sweep(w.space(GOOD_SPACE)), ["--results-dir", str(w.results / "sweeps"), "is a file"]


def _ddp_state_dict(w: Workspace) -> tuple[list[str], list[str]]:
    weights = w.entry_dir / "model.safetensors"
    save_file({f"module.{key}": value for key, value in load_file(weights).items()}, weights)
    return w.evaluate(), [str(weights), "unexpected key 'module.", "DistributedDataParallel"]


def _edited_num_classes(w: Workspace) -> tuple[list[str], list[str]]:
    config = w.entry_dir / "config.json"
    resolved = json.loads(config.read_text())
    resolved["model"]["num_classes"] = 100
    config.write_text(json.dumps(resolved))
    return w.evaluate(), [
        str(w.entry_dir / "model.safetensors"), "head.fc.weight is 10x8, the model needs 100x8",
        "config.json says num_classes 100 but the weights have 10 outputs",
    ]  # fmt: skip


def _damaged_safetensors_header(w: Workspace) -> tuple[list[str], list[str]]:
    weights = w.entry_dir / "model.safetensors"
    weights.write_bytes(b"\xff" * 8 + weights.read_bytes()[8:])
    return w.evaluate(), [str(weights), "not a readable safetensors file"]


def _config_not_json(w: Workspace) -> tuple[list[str], list[str]]:
    config = w.entry_dir / "config.json"
    config.write_text('{"space": "tiny", ')
    return w.evaluate(), [str(config), "not valid JSON", "line 1"]


def _entry_without_weights(w: Workspace) -> tuple[list[str], list[str]]:
    (w.entry_dir / "model.safetensors").unlink()
    return w.evaluate(), [str(w.entry_dir), "missing model.safetensors"]


def _unknown_entry(w: Workspace) -> tuple[list[str], list[str]]:
    args = ["evaluate", "no-such-entry", "--results-dir", str(w.results)]
    return args, ["'no-such-entry'", str(w.results / "leaderboard" / "rows"), w.entry]


def _unknown_entry_to_retrain(w: Workspace) -> tuple[list[str], list[str]]:
    args = ["train", "--from-entry", "no-such-entry", "--results-dir", str(w.results)]
    return args, ["'no-such-entry'", str(w.results / "leaderboard" / "rows")]


def _too_many_gpus(w: Workspace) -> tuple[list[str], list[str]]:
    asked = max(4, torch.cuda.device_count() + 1)
    return flag_case("--gpus-per-trial", str(asked), expected=(f"--gpus-per-trial {asked}", "more than this machine's"))(w)


def _too_many_cpus(w: Workspace) -> tuple[list[str], list[str]]:
    asked = available_cpus() + 1
    return flag_case("--cpus-per-trial", str(asked), expected=(f"--cpus-per-trial {asked}", f"{asked - 1} CPUs"))(w)


def _too_many_train_workers(w: Workspace) -> tuple[list[str], list[str]]:
    workers = available_cpus() + 1
    return flag_case("--workers", str(workers), command="train", expected=(f"--workers {workers}", "CPUs"))(w)


def _train_gpus_per_worker(w: Workspace) -> tuple[list[str], list[str]]:
    asked = max(4, torch.cuda.device_count() + 1)
    expected = (f"--gpus-per-worker {asked}", "GPUs")
    return flag_case("--gpus-per-worker", str(asked), command="train", expected=expected)(w)


CASES: dict[str, Case] = {
    # space files: YAML, keys, values, samplers
    "two train sections": space_case(
        "budget: 100000\ntrain:\n  lr: 0.1\ntrain:\n  epochs: 1\n", "key 'train' appears twice (lines 2 and 4)"
    ),
    "lr twice": space_case("train:\n  lr: 0.1\n  lr: 0.2\n", "key 'lr' appears twice (lines 2 and 3)"),
    "malformed yaml": space_case("train:\n  lr: [0.1\n", "line 3", "not valid YAML"),
    "inf value": space_case("train:\n  lr: .inf\n", "train.lr", "inf", "finite"),
    "nan value": space_case("train:\n  momentum: .nan\n", "train.momentum", "nan", "finite"),
    "inf sampler bound": space_case("train:\n  lr: {loguniform: [0.01, .inf]}\n", "train.lr", "inf", "finite"),
    "unknown key": space_case("train:\n  lrr: 0.1\n", "train.lrr: unknown key (did you mean lr?)"),
    "unknown top-level key": space_case("bugdet: 100000\n", "bugdet: unknown key (did you mean budget?)"),
    "wrong type": space_case("train:\n  lr: fast\n", "train.lr", "'fast'", "number"),
    "empty choice": space_case("train:\n  lr: {choice: []}\n", "train.lr", "choice", "[]"),
    "loguniform low 0": space_case(
        "train:\n  weight_decay: {loguniform: [0, 0.01]}\n", "train.weight_decay", "loguniform needs low > 0", "0"
    ),
    "loguniform low above high": space_case(
        "train:\n  lr: {loguniform: [0.2, 0.1]}\n", "train.lr", "loguniform low 0.2 is above high 0.1"
    ),
    "loguniform low equals high": space_case(
        "train:\n  lr: {loguniform: [0.1, 0.1]}\n", "train.lr", "[0.1, 0.1] draws one value"
    ),
    "zero epochs": space_case("train:\n  epochs: 0\n", "train.epochs", "0", "greater than or equal to 1"),
    "negative batch size": space_case("train:\n  batch_size: -8\n", "train.batch_size", "-8"),
    "budget below the smallest model": space_case("budget: 1000\n", "budget of 1,000 parameters", "smallest"),
    "unknown model": space_case("arch:\n  model: resnet9000\n", "arch.model", "'resnet9000'"),
    "unknown loader": space_case("loader: turbo\n", "loader", "'turbo'"),
    "unknown scheduler key": space_case("scheduler:\n  grace: 2\n", "scheduler.grace: unknown key (did you mean grace_period?)"),
    "bad scheduler value": space_case("scheduler:\n  reduction_factor: 1\n", "scheduler.reduction_factor", "1"),
    "unknown sampler": space_case("train:\n  lr: {normal: [0.1, 0.01]}\n", "train.lr", "normal"),
    "unknown schedule": space_case("train:\n  schedule: exp\n", "train.schedule", "'exp'"),
    # data folders
    "missing data folder": _missing_data_folder,
    "cifar100 folder with --dataset cifar10": _cifar100_folder_as_cifar10,
    "empty validation split": _empty_validation_split,
    "truncated pickle": _truncated_pickle,
    "labels out of range": _labels_out_of_range,
    "images not 32x32": _images_not_32x32,
    "--loader ffcv without FFCV": lambda w: _without_ffcv(w, flag_case("--loader", "ffcv", expected=("ffcv loader", "FFCV", "not installed"))),
    # flags
    "negative --seed": flag_case("--seed", "-1", expected=("--seed", "'-1'", "greater than or equal to 0")),
    "--num-samples abc": flag_case("--num-samples", "abc", expected=("--num-samples", "'abc'", "integer")),
    "--num-samples 0": flag_case("--num-samples", "0", expected=("--num-samples", "'0'", "greater than or equal to 1")),
    "--cpus-per-trial 0": flag_case("--cpus-per-trial", "0", expected=("--cpus-per-trial", "'0'")),
    "--gpus-per-trial above the machine": _too_many_gpus,
    "--cpus-per-trial above the machine": _too_many_cpus,
    "train --workers above the machine": _too_many_train_workers,
    "train --gpus-per-worker above the machine": _train_gpus_per_worker,
    "train --set unknown key": flag_case("--set", "lrr=0.1", command="train", expected=("--set", "'lrr'", "did you mean lr?")),
    "train --set inf": flag_case("--set", "lr=.inf", command="train", expected=("--set lr=.inf", "finite")),
    "bad --name": flag_case("--name", "two words", expected=("--name", "'two words'")),
    "unknown space": lambda w: (w.sweep("no_such_space"), ["no search space 'no_such_space'"]),
    # the results folder and its entries
    "results folder is a file": _results_dir_is_a_file,
    "sweeps is a file": _sweeps_is_a_file,
    "unknown entry id": _unknown_entry,
    "unknown entry to retrain": _unknown_entry_to_retrain,
    "entry missing its weights": _entry_without_weights,
    "DDP module. state dict": _ddp_state_dict,
    "num_classes edited in config.json": _edited_num_classes,
    "damaged safetensors header": _damaged_safetensors_header,
    "config.json not JSON": _config_not_json,
}


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """A good data folder and a results folder holding one promoted entry, a ``sweeps/``
    folder with an old sweep in it; returns (data, results, entry id)."""
    root = tmp_path_factory.mktemp("template")
    data = write_cifar10(root / "data", train_batches=1, per_batch=100, test=50)
    results = root / "results"
    (results / "sweeps" / "old-sweep").mkdir(parents=True)
    (results / "sweeps" / "old-sweep" / "notes.txt").write_text("an earlier sweep\n")
    checkpoint = exported_checkpoint(root / "checkpoint", data)
    row = promote(checkpoint, results, sweep="old", trial_id="t0", val_acc=0.5, epochs=1, source_checkpoint="x")
    return data, results, row["entry_id"]


@pytest.fixture
def workspace(tmp_path: Path, template: tuple[Path, Path, str]) -> Workspace:
    data, results, entry = template
    shutil.copytree(results, tmp_path / "results")
    (tmp_path / "case").mkdir()
    return Workspace(tmp=tmp_path / "case", results=tmp_path / "results", data=data, entry=entry)


def tree_digest(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> SHA-256), and every folder (-> ``dir``)."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
        for path in sorted(folder.rglob("*"))
    }


def run_cli(args: list[str], tmpdir: Path, shadows: Path | None = None) -> subprocess.CompletedProcess:
    """``python -m raycifar ARGS`` with its own TMPDIR (where a Ray would put its session),
    and ``shadows`` first on its import path when given."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WANDB_", "RAY_ADDRESS"))}
    env.update(COLUMNS="200", TMPDIR=str(tmpdir), RAY_TMPDIR=str(tmpdir))
    if shadows is not None and shadows.is_dir():
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(shadows), env.get("PYTHONPATH", "")]))
    return cli_server.run_cli(args, env=env, timeout=300)


def check_one_line(result, before: dict, results: Path, expected: list[str]) -> str:  # noqa: ANN001
    """The command's one ``error:`` line, after asserting the rules of a refusal: exit 2, one
    stderr line holding every ``expected`` text, no traceback, no library's own message, and
    the results folder unchanged (its digest is still ``before``)."""
    output = result.stdout + result.stderr
    lines = result.stderr.splitlines()
    assert result.returncode == 2, output
    assert len(lines) == 1 and lines[0].startswith("error: "), output
    missing = [text for text in expected if text not in lines[0]]
    assert not missing, f"{lines[0]!r} lacks {missing}"
    assert "Traceback" not in output
    assert not [marker for marker in LIBRARY_MARKERS if marker in lines[0]], lines[0]
    assert tree_digest(results) == before, "the results folder changed"
    return lines[0]


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_input_is_one_line_exit_2_changing_nothing(case: str, workspace: Workspace) -> None:
    args, expected = CASES[case](workspace)
    before = tree_digest(workspace.results)
    tmpdir = workspace.tmp / "tmpdir"
    tmpdir.mkdir()
    result = run_cli(args, tmpdir, workspace.tmp / SHADOWS)
    check_one_line(result, before, workspace.results, expected)
    assert not list(tmpdir.rglob("session_*")) and "Ray dashboard" not in result.stdout + result.stderr, "Ray was started"


def test_there_are_at_least_30_cases() -> None:
    assert len(CASES) >= 30


# --- inputs that look odd but are fine -------------------------------------------------------


def test_batches_with_str_keys_are_read_as_the_official_ones(tmp_path: Path) -> None:
    """Batches re-saved by Python 3 (str keys, as torchvision accepts) are no error."""
    official = write_cifar10(tmp_path / "bytes", train_batches=1, per_batch=100, test=50)
    resaved = write_cifar10(tmp_path / "str", train_batches=1, per_batch=100, test=50, str_keys=True)
    infos = [run_cli(["data", "info", "--data-dir", str(folder), "--format", "json"], tmp_path) for folder in (official, resaved)]
    assert [info.returncode for info in infos] == [0, 0], infos[1].stderr
    bytes_info, str_info = (json.loads(info.stdout) for info in infos)
    assert str_info["splits"] == bytes_info["splits"] and str_info["channel_mean"] == bytes_info["channel_mean"]


def test_a_finder_copy_beside_the_batches_is_ignored_and_reported(tmp_path: Path) -> None:
    folder = write_cifar10(tmp_path / "data", train_batches=1, per_batch=100, test=50)
    batches = folder / "cifar-10-batches-py"
    shutil.copy(batches / "data_batch_1", batches / "data_batch_1 copy")
    result = run_cli(["data", "info", "--data-dir", str(folder), "--format", "json"], tmp_path)
    assert result.returncode == 0, result.stderr
    info = json.loads(result.stdout)
    assert info["ignored"] == ["data_batch_1 copy"]
    assert info["splits"]["train"]["count"] + info["splits"]["val"]["count"] == 100


def test_a_space_without_arch_and_with_empty_sections_takes_the_defaults(tmp_path: Path) -> None:
    space = tmp_path / "space.yaml"
    space.write_text("budget: 20000000\ntrain:\naugment:\n")
    result = run_cli(["space", "sample", str(space), "--format", "json", "-n", "1"], tmp_path)
    assert result.returncode == 0, result.stderr
    [config] = json.loads(result.stdout)
    assert config["train"]["lr"] == 0.1 and config["train"]["epochs"] == 10
    assert config["model"] == "resnet18-w64" and config["depths"] == [2, 2, 2, 2]  # the default arch.model


def test_status_lists_a_damaged_sweep_folder_on_its_own_line(tmp_path: Path, template: tuple[Path, Path, str]) -> None:
    results = tmp_path / "results"
    shutil.copytree(template[1], results)
    (results / "sweeps" / "broken-one").mkdir()
    (results / "sweeps" / "broken-one" / "sweep_record.json").write_text("{not json")
    result = run_cli(["status", "--results-dir", str(results)], tmp_path)
    assert result.returncode == 0, result.stderr
    damaged = [line for line in result.stdout.splitlines() if "broken-one" in line]
    assert len(damaged) == 1 and damaged[0].startswith("unreadable sweep broken-one: "), result.stdout
    assert "old-sweep" in result.stdout


def test_a_corrupt_row_file_is_one_warning_and_the_other_rows_still_list(workspace: Workspace) -> None:
    """With one Parquet file per entry, a damaged one is named on one stderr line and skipped;
    the command still succeeds, lists the other rows, and leaves the damaged file as it was."""
    w = workspace
    rows = w.results / "leaderboard" / "rows"
    good = next(rows.glob("*.parquet"))
    damaged = rows / "damaged-entry.parquet"
    damaged.write_bytes(good.read_bytes()[:200])
    before = damaged.read_bytes()
    listed = cli_server.run_cli(["leaderboard", "--results-dir", str(w.results), "--format", "json"])
    assert listed.returncode == 0, listed.stderr
    (warning,) = listed.stderr.strip().splitlines()
    assert warning.startswith("warning: ") and str(damaged) in warning and "damaged, truncated or not Parquet" in warning
    assert [row["entry_id"] for row in json.loads(listed.stdout)] == [w.entry]
    assert damaged.read_bytes() == before
