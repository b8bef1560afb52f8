"""The architecture rules of pyproject.toml's import-linter contracts (no import circle, the
packages in layers, who may import Ray and torch), checked by running ``lint-imports``; and
the size of modules."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
MAX_MODULE_LINES = 400
CONTRACTS = (
    "No import circle between sibling modules or packages",
    "Packages in the order the data flows: each imports only those below it",
    "Only sweep/ imports ray.tune",
    "Only sweep/, train/, cluster/ and the job submission import Ray",
    "results/, space/ and search/ import neither torch nor Ray",
)


def lint_imports() -> list[str]:
    """The ``lint-imports`` command of this environment (import-linter is in the test extra)."""
    found = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if found is None:
        pytest.fail("lint-imports is not installed: pip install -e '.[test]' brings import-linter")
    return [found]


def test_import_contracts_are_kept() -> None:
    done = subprocess.run([*lint_imports(), "--no-cache"], cwd=REPO, capture_output=True, text=True, check=False)
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-4000:]
    for contract in CONTRACTS:
        assert f"{contract} KEPT" in report


def test_a_broken_layer_is_reported(tmp_path: Path) -> None:
    """The contracts do catch an import against the flow: a copy of the package in which
    results/ imports the sweep driver breaks the layers contract."""
    copy = tmp_path / "repo"
    shutil.copytree(REPO / "raycifar", copy / "raycifar", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", copy / "pyproject.toml")
    selection = copy / "raycifar" / "results" / "selection.py"
    selection.write_text(selection.read_text() + "\n\ndef _against_the_flow():\n    from raycifar.sweep import driver  # noqa: F401\n")
    env = {"PYTHONPATH": str(copy)}
    done = subprocess.run([*lint_imports(), "--no-cache"], cwd=copy, capture_output=True, text=True, check=False,
                          env={**__import__("os").environ, **env})  # fmt: skip
    assert done.returncode == 1
    assert "Packages in the order the data flows: each imports only those below it BROKEN" in done.stdout
    assert "raycifar.results.selection -> raycifar.sweep.driver" in done.stdout


def test_no_module_is_over_400_lines() -> None:
    long = {
        str(path.relative_to(REPO)): lines
        for path in sorted((REPO / "raycifar").rglob("*.py"))
        if (lines := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert long == {}


def test_every_package_says_its_job_and_what_it_may_import() -> None:
    for init in sorted((REPO / "raycifar").glob("*/__init__.py")):
        text = init.read_text()
        assert text.startswith('"""'), f"{init} has no docstring"
        assert "May import" in text, f"{init} does not say what it may import"


def test_the_public_names_keep_their_paths() -> None:
    """``raycifar.load_model``, ``raycifar.models.create_model`` and ``raycifar.timm_models``
    are used by people's notebooks: the packages keep them where they were."""
    code = (
        "import raycifar, raycifar.models, raycifar.timm_models\n"
        "from raycifar.models import create_model\n"
        "from raycifar.entries.load import load_model\n"
        "from raycifar.models.resnet import create_model as built\n"
        "assert raycifar.load_model is load_model and create_model is built\n"
        "assert create_model('resnet20').__class__.__name__ == 'CifarResNet'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]


class _Item:
    """What conftest's marking reads of a collected test."""

    def __init__(self, path: str, fixtures: tuple[str, ...] = (), slow: bool = False) -> None:
        self.path, self.fixturenames, self.slow, self.added = Path(path), fixtures, slow, set()

    def get_closest_marker(self, name: str) -> object:
        return True if name == "slow" and self.slow else None

    def add_marker(self, marker: pytest.MarkDecorator) -> None:
        self.added.add(marker.name)


def test_the_markers_beside_slow_are_given_by_what_a_test_starts() -> None:
    """``-m ray``, ``-m cluster`` and ``-m browser`` select the tests that start a Ray, bring up
    a multi-node one, or render in Chromium (tests/conftest.py marks them at collection)."""
    from conftest import _mark

    cases = {
        ("tests/cluster/test_cluster_local.py", (), True): {"ray", "cluster"},
        ("tests/cluster/test_ray_up_ssh.py", (), True): {"ray", "cluster"},
        ("tests/report/test_html_browser.py", (), True): {"ray", "browser"},
        ("tests/sweep/test_sweep_e2e.py", ("ray_address",), False): {"ray"},
        ("tests/results/test_status.py", ("tmp_path",), False): set(),
    }
    for (path, fixtures, slow), expected in cases.items():
        item = _Item(path, fixtures, slow)
        _mark(item)
        assert item.added == expected, path
