"""``raycifar data corrupt`` end to end on a tiny CIFAR-10 in the official format (at most 50
images): the layout, the metadata, the cache, determinism by seed, and one-line errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cli_server
import numpy as np
import pytest
from cifar_files import write_cifar10

from raycifar.data import corruptions as cc

CHEAP = "gaussian_noise,glass_blur,motion_blur,snow,jpeg_compression,saturate"


@pytest.fixture(scope="module")
def tiny_cifar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_cifar10(tmp_path_factory.mktemp("tiny"), train_batches=1, per_batch=20, test=40)


def corrupt(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return cli_server.run_cli(["data", "corrupt", *args], cwd=cwd, env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})


def test_writes_the_cifar10c_layout_with_its_metadata_and_reuses_it(tiny_cifar: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    done = corrupt("--data-dir", str(tiny_cifar), "--out", str(out), "--limit", "30", "--corruptions", CHEAP,
                   "--severities", "1,3,5", "--seed", "7", cwd=tmp_path)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "wrote 6 corruptions × 3 severities × 30 images" in done.stdout
    from raycifar.data.readers import read_part

    test = read_part(tiny_cifar, "test")
    labels = np.load(out / "labels.npy")
    assert labels.dtype == np.uint8 and (labels == np.tile(test.labels[:30], 3)).all()
    meta = json.loads((out / "metadata.json").read_text())
    assert meta["seed"] == 7 and meta["severities"] == [1, 3, 5] and meta["source"]["images"] == 30
    assert meta["constants_source"]["commit"] == cc.SOURCE_COMMIT
    assert "not the official CIFAR-10-C" in meta["name"]
    assert set(meta["reimplemented"]) == {"motion_blur", "snow"}
    for name in CHEAP.split(","):
        array = np.load(out / f"{name}.npy")
        assert array.shape == (90, 32, 32, 3) and array.dtype == np.uint8
        entry = meta["corruptions"][name]
        assert entry["reimplemented"] == (name in ("motion_blur", "snow"))
        assert entry["source_line"] == cc.CORRUPTIONS[name].source_line
        # severity-major rows, and the same images as the library writes for that seed
        assert (array[30:60] == cc.corrupt(test.images[:30], name, 3, 7)).all()
    before = {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy") if p.name != "labels.npy"}
    again = corrupt("--data-dir", str(tiny_cifar), "--out", str(out), "--limit", "30", "--corruptions", CHEAP,
                    "--severities", "5,3,1", "--seed", "7", cwd=tmp_path)  # fmt: skip
    assert again.returncode == 0 and "reused 6 already there" in again.stdout
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.npy") if p.name != "labels.npy"} == before
    other = corrupt("--data-dir", str(tiny_cifar), "--out", str(tmp_path / "d"), "--limit", "30", "--corruptions",
                    "gaussian_noise", "--severities", "1,3,5", "--seed", "8", cwd=tmp_path)  # fmt: skip
    assert other.returncode == 0
    assert not (np.load(tmp_path / "d" / "gaussian_noise.npy") == np.load(out / "gaussian_noise.npy")).all()


def test_all_nineteen_into_the_default_folder(tiny_cifar: Path, tmp_path: Path) -> None:
    """Every corruption, all five severities, on 10 images (frost only with its photographs)."""
    import importlib.util

    has_frost = importlib.util.find_spec("imagecorruptions") is not None
    names = "all" if has_frost else ",".join(n for n in cc.CORRUPTIONS if n != "frost")
    done = corrupt("--data-dir", str(tiny_cifar), "--limit", "10", "--seed", "3", "--corruptions", names, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    out = tiny_cifar / "corrupted" / "cifar10-test-corrupted-seed3-first10"
    meta = json.loads((out / "metadata.json").read_text())
    expected = [n for n in cc.CORRUPTIONS if has_frost or n != "frost"]
    assert list(meta["corruptions"]) == expected
    for name in expected:
        assert np.load(out / f"{name}.npy").shape == (50, 32, 32, 3)
    if has_frost:
        assert meta["frost_photos"]["sha256"] == cc.FROST_PHOTOS


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--corruptions", "gaussian_noise,rain"], "--corruptions 'rain': unknown corruption"),
        (["--severities", "0,6"], "--severities '0': severities are 1, 2, 3, 4 and 5"),
        (["--severities", "two"], "--severities 'two'"),
        (["--limit", "0"], "--limit"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_input_is_one_line_with_exit_code_2(
    args: list[str], message: str, tiny_cifar: Path, tmp_path: Path
) -> None:
    done = corrupt("--data-dir", str(tiny_cifar), "--out", str(tmp_path / "x"), *args, cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "x").exists()


def test_a_missing_data_folder_is_one_line_with_exit_code_2(tmp_path: Path) -> None:
    done = corrupt("--data-dir", str(tmp_path / "nowhere"), "--out", str(tmp_path / "x"), cwd=tmp_path)
    assert done.returncode == 2
    assert "CIFAR-10 not found in" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_frost_without_the_photographs_is_one_line_with_the_install_command(tiny_cifar: Path, tmp_path: Path) -> None:
    code = (
        "import sys, importlib.util as u; real = u.find_spec\n"
        "u.find_spec = lambda name, *a: None if name == 'imagecorruptions' else real(name, *a)\n"
        f"sys.argv = ['raycifar', 'data', 'corrupt', '--data-dir', {str(tiny_cifar)!r}, '--out', {str(tmp_path / 'x')!r},"
        " '--corruptions', 'frost', '--limit', '5']\n"
        "import runpy; runpy.run_module('raycifar', run_name='__main__')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, env={"COLUMNS": "200"}
    )
    assert done.returncode == 2
    assert "pip install --no-deps imagecorruptions==1.1.2" in done.stderr and len(done.stderr.strip().splitlines()) == 1


def test_help_and_parsing_import_neither_torch_nor_ray(tiny_cifar: Path, tmp_path: Path) -> None:
    code = (
        "import sys, runpy\n"
        f"sys.argv = ['raycifar', 'data', 'corrupt', '--data-dir', {str(tiny_cifar)!r}, '--out', {str(tmp_path / 'y')!r},"
        " '--corruptions', 'contrast', '--limit', '5']\n"
        "try:\n    runpy.run_module('raycifar', run_name='__main__')\nexcept SystemExit as e:\n    assert e.code in (0, None)\n"
        "print(sorted(m for m in ('torch', 'ray', 'skimage') if m in sys.modules))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"
