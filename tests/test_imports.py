"""Read-only commands stay instant: what each command (and the single-run module) imports."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from raycifar.config import ModelConfig, TrainConfig, TrialConfig

RUN_COMMAND = """
import runpy, sys
sys.argv = ["raycifar", *{args!r}]
try:
    runpy.run_module("raycifar", run_name="__main__")
except SystemExit as done:
    assert done.code in (0, None), f"exit {{done.code}}"
print(sorted(m for m in ("torch", "ray", "ray.tune", "timm") if m in sys.modules))
"""


def imported_by(*args: str) -> list[str]:
    """Which of torch, ray, ray.tune, timm ``raycifar ARGS`` imported (in a fresh interpreter)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(RUN_COMMAND.format(args=list(args)))],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    return eval(done.stdout.strip().splitlines()[-1])  # noqa: S307 - our own printed list


@pytest.mark.parametrize(
    "args",
    [("--help",), ("space", "show", "smoke_space"), ("leaderboard", "--results-dir", "{empty}"),
     ("status", "--results-dir", "{empty}"), ("sweep", "--help"), ("train", "--help")],
    ids=lambda args: " ".join(args[:2]),
)  # fmt: skip
def test_read_only_commands_import_neither_torch_nor_ray(args: tuple[str, ...], tmp_path: Path) -> None:
    assert imported_by(*(a.format(empty=tmp_path) for a in args)) == []


def test_model_info_of_a_plain_model_imports_torch_only() -> None:
    assert imported_by("model", "info", "resnet20") == ["torch"]


def test_the_single_run_module_does_not_import_tune() -> None:
    code = "import sys, raycifar.train.run, raycifar.train.worker; assert 'ray.tune' not in sys.modules"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, check=False).returncode == 0


PACKAGE = Path(__file__).resolve().parents[1] / "raycifar"
LIGHT_PACKAGES = ("results", "space", "search")  # read by read-only commands: no torch, no Ray


def light_modules() -> list[str]:
    """Every module of the packages that must import neither torch nor Ray."""
    found = []
    for package in LIGHT_PACKAGES:
        for path in sorted((PACKAGE / package).glob("*.py")):
            found.append(f"raycifar.{package}" if path.stem == "__init__" else f"raycifar.{package}.{path.stem}")
    return found


CHECK_MODULE = """
import importlib, sys
importlib.import_module({module!r})
print(sorted(m for m in ("torch", "torchvision", "timm", "ray") if m in sys.modules))
"""


@pytest.mark.parametrize("module", light_modules())
def test_results_space_and_search_modules_import_neither_torch_nor_ray(module: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", CHECK_MODULE.format(module=module)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]", f"importing {module} loaded {done.stdout.strip()}"


def test_every_light_package_is_checked() -> None:
    modules = light_modules()
    assert {"raycifar.results.status", "raycifar.space.file", "raycifar.search.searchers"} <= set(modules)
    assert len(modules) >= 15


def test_the_jobs_import_ray_only_after_preparing_its_environment() -> None:
    """Ray reads its settings once, at import: the pipeline's modules import it only through
    raycifar.pipeline.lazy, after cluster.session.prepare_environment."""
    code = (
        "import sys, raycifar.pipeline.sweep_job, raycifar.pipeline.resume_job, raycifar.pipeline.train_job, "
        "raycifar.pipeline.steps, raycifar.pipeline.preflight; print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "False"


CONTROLLER_SIDE = """
import pickle, sys
from raycifar.train.process_group import torch_config
config = pickle.loads(pickle.dumps(torch_config(local=True)))
config.backend_cls()
print(sorted(m for m in ("torch", "timm", "torchvision", "wandb") if m in sys.modules))
"""


def test_a_local_run_s_controller_loads_its_backend_without_torch() -> None:
    """Ray Train's controller unpickles the backend config and runs its backend's hooks: a
    local run's needs no torch there (the workers import it), about 1.7 s less per trial."""
    done = subprocess.run([sys.executable, "-c", CONTROLLER_SIDE], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


TIMM = ["timm", "torchvision", "wandb"]  # timm's own import loads the other two
WORKER_SIDE = """
import sys
from pathlib import Path
import torch
import raycifar.sweep.trial, raycifar.train.worker
from raycifar.config import TrialConfig
from raycifar.data.loaders import make_loaders
from raycifar.models.resnet import build_model
from raycifar.train.loss import BatchLoss
config = TrialConfig.model_validate_json(sys.argv[1])
assert not {"timm", "torchvision", "wandb"} & set(sys.modules), "imported before the trial's model"
build_model(config.model, torch.device("cpu"))
BatchLoss.for_trial(config, torch.device("cpu"))
print(sorted(m for m in ("timm", "torchvision", "wandb") if m in sys.modules))
"""


@pytest.mark.parametrize(
    ("model", "train", "expected"),
    [({}, {}, []), ({"se_ratio": 4}, {}, TIMM), ({}, {"mixup_alpha": 0.2}, TIMM)],
    ids=["plain", "squeeze-excitation", "mixup"],
)  # fmt: skip
def test_a_trial_imports_timm_only_when_its_model_or_loss_uses_it(model: dict, train: dict, expected: list) -> None:
    """A trial's processes (Tune's trial process, Ray Train's workers) import timm only for
    what uses it (SE blocks, mixing); torchvision and W&B come only with timm, which imports them."""
    config = TrialConfig(
        space="test",
        data_dir="unused",
        params=1,
        model=ModelConfig(depths=(1, 1), widths=(8, 16), **model),
        train=TrainConfig(**train),
    )
    done = subprocess.run(
        [sys.executable, "-c", WORKER_SIDE, config.model_dump_json()], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == str(expected)
