"""The manual: README.md is a short landing page, every relative link in it and in docs/
resolves (file and anchor), and every command and long option of the CLI is documented in
docs/. Fast: no Ray, no network."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README_MAX_LINES = 300

_FENCE = re.compile(r"^\s{0,3}(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
_LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_CODE_SPAN = re.compile(r"(`+)(.+?)\1")


def manual_files(root: Path = ROOT) -> list[Path]:
    """README.md and every page of docs/."""
    return [root / "README.md", *sorted((root / "docs").glob("*.md"))]


def _prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) of the lines outside fenced code blocks."""
    lines, fence = [], None
    for number, line in enumerate(text.splitlines(), 1):
        match = _FENCE.match(line)
        if match:
            marker = match.group(1)
            if fence is None:
                fence = marker
            elif marker == fence:
                fence = None
            continue
        if fence is None:
            lines.append((number, line))
    return lines


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: markup dropped, lowercase, punctuation other than
    '-' and '_' dropped, spaces to '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading: its text
    text = text.replace("`", "").strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """Every anchor of a Markdown file's headings, with GitHub's -1, -2 … for repeats."""
    seen: dict[str, int] = {}
    found = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if not match:
            continue
        base = github_anchor(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every Markdown link outside code blocks and code spans."""
    found = []
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        for match in _LINK.finditer(_CODE_SPAN.sub("", line)):
            found.append((number, match.group(1)))
    return found


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    """'file:line: target: why' for every relative link that does not resolve."""
    broken = []
    for path in files:
        for number, target in links(path):
            if re.match(r"(?i)(https?:|mailto:)", target):
                continue
            where = f"{path.relative_to(root)}:{number}: {target}"
            file_part, _, anchor = target.partition("#")
            linked = (path.parent / file_part).resolve() if file_part else path
            if not linked.exists():
                broken.append(f"{where}: no such file or folder")
            elif anchor:
                if linked.suffix != ".md" or not linked.is_file():
                    broken.append(f"{where}: an anchor into a file that is not Markdown")
                elif anchor not in anchors(linked):
                    broken.append(f"{where}: no heading with this anchor in {linked.name}")
    return broken


def cli_commands() -> list[tuple[str, list[str]]]:
    """('raycifar <path>', its long option names) for every command and group of the CLI."""
    from typer.main import get_command

    from raycifar.cli import app

    found = []

    def walk(command, path: list[str]) -> None:  # noqa: ANN001 (a Click command or group)
        options = sorted(
            {
                name
                for param in command.params
                if getattr(param, "param_type_name", None) == "option"
                for name in [*param.opts, *param.secondary_opts]
                if name.startswith("--") and name != "--help"
            }
        )
        if path:
            found.append(("raycifar " + " ".join(path), options))
        for name, sub in sorted(getattr(command, "commands", {}).items()):
            walk(sub, [*path, name])

    walk(get_command(app), [])
    return found


def undocumented(commands: list[tuple[str, list[str]]], docs_text: str) -> list[str]:
    """What of the commands and their options the docs text never mentions."""
    missing = []
    for command, options in commands:
        if not re.search(rf"{re.escape(command)}(?![\w-])", docs_text):
            missing.append(f"command: {command}")
        for option in options:
            if not re.search(rf"(?<![\w-]){re.escape(option)}(?![\w-])", docs_text):
                missing.append(f"option: {command} {option}")
    return missing


def test_readme_is_a_landing_page() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines, more than {README_MAX_LINES}: move the detail to a page of docs/"
    )


def test_the_manual_has_pages() -> None:
    assert (ROOT / "docs" / "README.md").is_file(), "docs/README.md, the index of the manual, is missing"
    assert len(manual_files()) > 2


def test_every_relative_link_and_anchor_resolves() -> None:
    broken = broken_links(manual_files())
    assert not broken, "broken links in README.md or docs/:\n  " + "\n  ".join(broken)


def test_every_command_and_option_is_in_docs() -> None:
    docs_text = "\n".join(p.read_text(encoding="utf-8") for p in sorted((ROOT / "docs").glob("*.md")))
    commands = cli_commands()
    assert any(command == "raycifar sweep" for command, _ in commands), "the CLI walk found no commands"
    missing = undocumented(commands, docs_text)
    assert not missing, "not documented anywhere in docs/*.md:\n  " + "\n  ".join(missing)


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("### `raycifar sweep SPACE`", "raycifar-sweep-space"),
        ("## When things fail", "when-things-fail"),
        ("## Data: formats, loaders, augmentation", "data-formats-loaders-augmentation"),
        ("### `raycifar report SWEEP|ENTRY`", "raycifar-report-sweepentry"),
        ("### `raycifar evaluate ENTRY_ID`", "raycifar-evaluate-entry_id"),
        ("### `benchmarks/train_throughput.py`", "benchmarkstrain_throughputpy"),
        ("### W&B", "wb"),
    ],
)
def test_github_anchor_rule(tmp_path: Path, heading: str, anchor: str) -> None:
    page = tmp_path / "page.md"
    page.write_text(heading + "\n", encoding="utf-8")
    assert anchors(page) == {anchor}


def test_the_checks_catch_what_they_should(tmp_path: Path) -> None:
    """Self-check on a small manual with one thing wrong of each kind."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "tool.py").write_text("")
    (tmp_path / "README.md").write_text(
        "# Top\n\n## Twice\n\n## Twice\n\n"
        "[ok](docs/page.md#a-section) [ok](#twice-1) [ok](docs/) [ok](tool.py) [web](https://x.org/#nope)\n"
        "[no file](docs/missing.md) [no anchor](docs/page.md#nowhere) [no heading](#twice-2)\n"
        "`[code span](missing.md)`\n\n```\n[in a fence](missing.md)\n# not a heading\n```\n"
    )
    (tmp_path / "docs" / "page.md").write_text(
        "# Page\n\n## A section\n\n[back](../README.md#top) [bad](../README.md#not-a-heading)\n"
    )
    broken = broken_links(manual_files(tmp_path), root=tmp_path)
    assert broken == [
        "README.md:8: docs/missing.md: no such file or folder",
        "README.md:8: docs/page.md#nowhere: no heading with this anchor in page.md",
        "README.md:8: #twice-2: no heading with this anchor in README.md",
        "docs/page.md:5: ../README.md#not-a-heading: no heading with this anchor in README.md",
    ]
    assert anchors(tmp_path / "README.md") == {"top", "twice", "twice-1"}

    commands = [("raycifar sweep", ["--seed", "--max-trials"]), ("raycifar data prepare", ["--format"])]
    docs_text = "raycifar sweep smoke_space --seeds 3 --max-trials-x 2\nraycifar data info --format json\n"
    assert undocumented(commands, docs_text) == [
        "option: raycifar sweep --seed",
        "option: raycifar sweep --max-trials",
        "command: raycifar data prepare",
    ]
