"""The results folder has one owner: its paths are spelled in ``results/layout.py`` and the
metric names in ``results/schema.py`` (the leaderboard's columns in ``leaderboard_schema.py``),
nowhere else in raycifar (checked on the source's
tokens, so that a docstring or a comment may still name them)."""

from __future__ import annotations

import io
import re
import tokenize
from pathlib import Path

import pytest

from raycifar.results.schema import METRIC_NAMES, EpochMetrics

PACKAGE = Path(__file__).resolve().parents[2] / "raycifar"
FOLDER_NAMES = ("sweeps", "train_runs", "runs", "entries", "leaderboard")
# Spelled as words for other things: CLI groups and options, leaderboard columns, config keys.
NOT_ONLY_METRICS = {"params", "lr", "device", "diverged"}  # the last is also a trial state
METRICS = [name for name in METRIC_NAMES if name not in NOT_ONLY_METRICS]


def tokens(path: Path) -> list[tokenize.TokenInfo]:
    return [t for t in tokenize.generate_tokens(io.StringIO(path.read_text()).readline) if t.type != tokenize.NL]


def modules(*except_: str) -> list[Path]:
    return [p for p in sorted(PACKAGE.rglob("*.py")) if str(p.relative_to(PACKAGE)) not in except_]


def literal(token: tokenize.TokenInfo) -> str | None:
    """The text of a plain string literal token ('x' or "x"), else None."""
    match = re.fullmatch(r"""(['"])([^'"]*)\1""", token.string) if token.type == tokenize.STRING else None
    return match.group(2) if match else None


def path_literals(path: Path, root: Path = PACKAGE) -> list[str]:
    """Folder names of the results layout used as path parts (``x / "sweeps"``,
    ``"runs" / y``) or bound to a name (``SWEEPS = "sweeps"``)."""
    found, seen = [], tokens(path)
    for i, token in enumerate(seen):
        if literal(token) not in FOLDER_NAMES:
            continue
        before, after = seen[i - 1] if i else None, seen[i + 1] if i + 1 < len(seen) else None
        joined = (before is not None and before.string == "/") or (after is not None and after.string == "/")
        bound = before is not None and before.string == "=" and i >= 2 and seen[i - 2].start[1] == 0  # a module constant
        if joined or bound:
            found.append(f"{path.relative_to(root)}:{token.start[0]}: {token.string}")
    return found


def metric_literals(path: Path, root: Path = PACKAGE) -> list[str]:
    """Metric names spelled as a string literal, or as a key inside an f-string."""
    found = []
    inner = re.compile(r"""\[(['"])(%s)\1\]""" % "|".join(METRICS))
    for token in tokens(path):
        if literal(token) in METRICS or (token.type == tokenize.STRING and inner.search(token.string)):
            found.append(f"{path.relative_to(root)}:{token.start[0]}: {token.string[:60]}")
    return found


def test_only_the_layout_module_spells_the_results_folders() -> None:
    found = [hit for path in modules("results/layout.py") for hit in path_literals(path)]
    assert found == []


def test_only_the_schema_spells_the_metric_names() -> None:
    # the leaderboards own columns (val_acc, checkpoint_path: the entrys folder) are its schema
    found = [hit for path in modules("results/schema.py", "results/leaderboard_schema.py") for hit in metric_literals(path)]
    # a space's `select` options are named after the metrics they pick: spelled once, in config
    select = {f"config.py:{n}:" for n, line in enumerate((PACKAGE / "config.py").read_text().splitlines(), 1)
              if line.startswith(("Select = ", "DEFAULT_SELECT"))}  # fmt: skip
    assert [hit for hit in found if not hit.startswith(tuple(select))] == []


@pytest.mark.parametrize("source", ['folder = results_dir / "sweeps" / name', 'RUNS = "runs"'])
def test_the_path_check_sees_a_spelled_folder(tmp_path: Path, source: str) -> None:
    module = tmp_path / "module.py"
    module.write_text(source + "\n")
    assert len(path_literals(module, tmp_path)) == 1


def test_the_metric_check_sees_a_spelled_metric(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text('best = row["val_acc"]\nline = f"{row[\'epoch\']}"\n')
    assert len(metric_literals(module, tmp_path)) == 2


def test_the_schema_names_every_key_the_worker_reports() -> None:
    assert set(METRIC_NAMES) == set(EpochMetrics.__annotations__)
    for name in ("epoch", "val_acc", "train_seconds", "eval_seconds", "world_size", "worker_cpus", "checkpoint_path"):
        assert name in METRIC_NAMES
