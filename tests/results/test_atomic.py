"""Files replaced whole (raycifar.results.atomic): a reader sees the old file until the new
one is complete, and a failure leaves the old file and no temporary file."""

from __future__ import annotations

from pathlib import Path

import pytest

from raycifar.results.atomic import replace_text, replacing, replacing_path


def test_the_old_file_stays_whole_until_the_new_one_is_written(tmp_path: Path) -> None:
    target = tmp_path / "record.json"
    target.write_text("old")
    with replacing(target) as stream:
        stream.write("new, half")
        assert target.read_text() == "old"  # a reader meanwhile sees the old file
        stream.write(" and the rest")
    assert target.read_text() == "new, half and the rest"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["record.json"]


def test_a_failure_while_writing_leaves_the_old_file_and_no_temporary_file(tmp_path: Path) -> None:
    target = tmp_path / "resume.json"
    target.write_text("old")
    with pytest.raises(OSError, match="disk full"), replacing(target) as stream:
        stream.write("new, half")
        raise OSError("disk full")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resume.json"]


def test_a_writer_that_takes_a_path_replaces_the_file_too(tmp_path: Path) -> None:
    target = tmp_path / "scheduler_state.pkl"
    with replacing_path(target) as temporary:
        assert temporary.parent == tmp_path and temporary.name.startswith(".")
        temporary.write_bytes(b"state")
    assert target.read_bytes() == b"state"
    replace_text(target, "again")
    assert target.read_text() == "again" and len(list(tmp_path.iterdir())) == 1


def test_a_missing_folder_is_an_os_error_before_anything_is_written(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError), replacing(tmp_path / "missing" / "file.csv"):
        pass
