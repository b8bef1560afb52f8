"""Resume after faults (issue 26, kinds 5 and 8), end to end: the interrupted sweep of an older
raycifar (``../shared/fixtures/results-0715e07``, recorded before data fingerprints) whose data
folder moved and whose study journal was torn by a kill mid-write.

``raycifar sweep --resume interrupted --data-dir NEW`` re-points the data (one line: it could
not be verified, its fingerprint is recorded now), cuts the journal back to its last whole
record (one line naming what was dropped; the records before it unchanged), and runs the
sweep to its end on the new folder. Without ``--data-dir``, the resume is one line naming the
recorded folder and ``--data-dir``, and nothing changes.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import SHARED_CIFAR10
from test_old_results import FIXTURE, MICRO_SPACE, RECORDED_DATA, RECORDED_RESULTS, RECORDED_SPACE, row_files

from raycifar.data.fingerprint import data_fingerprint

TORN = b'{"op_code":8,"worker_id":"73745660","trial_id":2,"user_at'  # a record cut short


@pytest.fixture
def moved_data_results() -> Iterator[Path]:
    """The fixture at the results path its Tune state pickled, its space file where it was
    recorded, and its data folder NOT where it was recorded (it moved)."""
    if not SHARED_CIFAR10.is_dir():
        pytest.skip(f"the real CIFAR-10 subset is not at {SHARED_CIFAR10}")
    if RECORDED_DATA.exists() or RECORDED_RESULTS.exists() or RECORDED_RESULTS.is_symlink():
        pytest.skip(f"{RECORDED_DATA} or {RECORDED_RESULTS} is in use")
    RECORDED_SPACE.parent.mkdir(parents=True, exist_ok=True)
    made_space = not RECORDED_SPACE.exists()
    if made_space:
        shutil.copy(MICRO_SPACE, RECORDED_SPACE)
    shutil.copytree(FIXTURE, RECORDED_RESULTS, symlinks=True)
    yield RECORDED_RESULTS
    shutil.rmtree(RECORDED_RESULTS, ignore_errors=True)
    if made_space:
        RECORDED_SPACE.unlink(missing_ok=True)


@pytest.mark.slow
def test_a_moved_torn_old_sweep_is_re_pointed_repaired_and_resumed(
    moved_data_results: Path, ray_address: str, raycifar, short_tmpdir: str
) -> None:
    results = moved_data_results
    sweep_dir = results / "sweeps" / "interrupted"
    journal = sweep_dir / "search" / "study.journal"
    whole = journal.read_bytes()
    journal.write_bytes(whole + TORN)
    resume_file = sweep_dir / "resume.json"
    before = resume_file.read_text()

    from test_bad_input import run_cli, tree_digest

    digest = tree_digest(results)
    refused = run_cli(["sweep", "--resume", "interrupted", "--results-dir", str(results), "--address", ray_address], Path(short_tmpdir))
    assert refused.returncode == 2, refused.stderr
    (line,) = refused.stderr.splitlines()
    assert f"recorded data folder {RECORDED_DATA} is gone" in line and "--data-dir" in line
    assert tree_digest(results) == digest  # nothing written: not even the journal's repair

    resumed = raycifar("sweep", "--resume", "interrupted", "--results-dir", str(results), "--address", ray_address,
                       "--data-dir", str(SHARED_CIFAR10), cwd=results, timeout=600)  # fmt: skip
    output = resumed.stdout
    fingerprint = data_fingerprint(SHARED_CIFAR10.resolve())
    said = [text for text in output.splitlines() if "study.journal" in text]
    assert len(said) == 1 and f"dropped its {len(TORN)} bytes" in said[0] and "kept the" in said[0], output[-3000:]
    assert "could not be verified" in output and fingerprint in output
    assert "promoted to the leaderboard" in output, output[-2000:]
    after = journal.read_bytes()
    assert after.startswith(whole) and TORN not in after  # cut to the whole records, then appended to
    assert all(json.loads(text) for text in after.splitlines())  # every record whole: Optuna reads it again
    saved = json.loads(resume_file.read_text())
    assert (saved["data_dir"], saved["data_fingerprint"]) == (str(SHARED_CIFAR10.resolve()), fingerprint)
    assert {k: v for k, v in json.loads(before).items() if k != "data_dir"} == {
        k: v for k, v in saved.items() if k not in ("data_dir", "data_fingerprint", "trial_runner")
    }
    record = json.loads((sweep_dir / "sweep_record.json").read_text())
    assert record["outcome"] == "completed" and record["promoted_entry"] in row_files(results)
    entry_config = json.loads((results / "leaderboard" / record["promoted_entry"] / "config.json").read_text())
    assert entry_config["data_dir"] == str(SHARED_CIFAR10.resolve())  # the resumed trial trained on the new folder
