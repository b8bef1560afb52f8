"""What an image viewer shows is what the model sees (issue 26, kind 11a): ``raycifar predict``
on one image file gives the same row as on a plain 8-bit RGB PNG of the pixels a viewer
shows (EXIF orientation applied by Pillow's ``ImageOps.exif_transpose``, palettes and
greyscale expanded); files whose look cannot be reproduced exactly (animation, 16-bit,
CMYK, transparency) are refused in one line naming the file."""

from __future__ import annotations

import csv
import io
import struct
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms, ImageOps
from test_predict import promoted_entry
from typer.testing import CliRunner

from raycifar.cli import app

RNG = np.random.default_rng(11)
PIXELS = RNG.integers(0, 256, (32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def entry(tmp_path_factory: pytest.TempPathFactory, cifar_dir: Path) -> tuple[Path, str]:
    results = tmp_path_factory.mktemp("viewer") / "results"
    return results, promoted_entry(results, cifar_dir)


def oriented(orientation: int, suffix: str = "png") -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        exif = Image.Exif()
        exif[0x0112] = orientation
        path = folder / f"image.{suffix}"
        Image.fromarray(PIXELS).save(path, exif=exif.tobytes(), **({"quality": 95} if suffix == "jpg" else {}))
        return path

    return write


def saved(image: Callable[[], Image.Image], suffix: str = "png", **options: object) -> Callable[[Path], Path]:
    def write(folder: Path) -> Path:
        path = folder / f"image.{suffix}"
        image().save(path, **options)
        return path

    return write


def viewed(path: Path) -> np.ndarray:
    """The reference: what a viewer shows, by Pillow's own EXIF transpose and RGB conversion."""
    with Image.open(path) as image:
        return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))


def linear_rgb_profile() -> bytes:
    """An ICC v2 RGB profile with sRGB's colorants and white point but linear (gamma 1.0) curves."""
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    count = struct.unpack(">I", srgb[128:132])[0]
    tags = {}
    for i in range(count):
        sig, off, size = struct.unpack(">4sII", srgb[132 + 12 * i : 144 + 12 * i])
        tags[sig] = srgb[off : off + size]
    curve = b"curv" + b"\0" * 4 + struct.pack(">I", 1) + struct.pack(">H", 0x0100) + b"\0\0"
    text = b"linear RGB (test)\0"
    desc = b"desc" + b"\0" * 4 + struct.pack(">I", len(text)) + text + b"\0" * 12 + b"\0" * 67
    wanted = {
        b"desc": desc,
        b"wtpt": tags[b"wtpt"],
        b"rXYZ": tags[b"rXYZ"],
        b"gXYZ": tags[b"gXYZ"],
        b"bXYZ": tags[b"bXYZ"],
        b"rTRC": curve,
        b"gTRC": curve,
        b"bTRC": curve,
        b"cprt": b"text\0\0\0\0test\0\0\0\0",
    }
    table, body = b"", b""
    offset = 128 + 4 + 12 * len(wanted)
    for sig, data in wanted.items():
        data += b"\0" * (-len(data) % 4)
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data
    header = bytearray(srgb[:128])
    header[8:12] = bytes([2, 0x10, 0, 0])  # version 2.1
    profile = bytes(header) + struct.pack(">I", len(wanted)) + table + body
    return struct.pack(">I", len(profile)) + profile[4:]


def srgb_encoded(linear: np.ndarray) -> np.ndarray:
    """The reference for a linear-light profile: the sRGB transfer function (IEC 61966-2-1)."""
    v = linear / 255.0
    return np.where(v <= 0.0031308, 12.92 * v, 1.055 * v ** (1 / 2.4) - 0.055) * 255


def test_colours_are_converted_from_an_embedded_profile_to_srgb(tmp_path: Path) -> None:
    from raycifar.data.image_files import read_image_file

    linear, srgb = tmp_path / "linear.png", tmp_path / "srgb.png"
    Image.fromarray(PIXELS).save(linear, icc_profile=linear_rgb_profile())
    Image.fromarray(PIXELS).save(srgb, icc_profile=ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes())
    assert np.abs(read_image_file(linear) - srgb_encoded(PIXELS)).max() <= 1.0
    assert np.array_equal(read_image_file(srgb), PIXELS), "an sRGB profile changes nothing"


def transparent_palette() -> Image.Image:
    image = Image.fromarray(PIXELS).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    image.info["transparency"] = int(np.asarray(image)[0, 0])
    return image


def two_frames() -> list[Image.Image]:
    return [Image.fromarray(PIXELS), Image.fromarray(255 - PIXELS)]


SHOWN = {  # case -> writer of a file predict must read as a viewer shows it
    **{f"EXIF orientation {o}": oriented(o) for o in range(1, 9)},
    "EXIF orientation 6, JPEG": oriented(6, "jpg"),
    "greyscale": saved(lambda: Image.fromarray(PIXELS[..., 0], "L")),
    "palette, no transparency": saved(lambda: Image.fromarray(PIXELS).convert("P", palette=Image.Palette.ADAPTIVE)),
    "RGBA, all opaque": saved(lambda: Image.fromarray(np.dstack([PIXELS, np.full((32, 32), 255, np.uint8)]), "RGBA")),
}
REFUSED = {  # case -> (writer, a phrase of the one-line refusal)
    "animated GIF": (lambda f: _save_all(f / "image.gif"), "animated image (2 frames)"),
    "16-bit PNG": (saved(lambda: Image.fromarray(PIXELS[..., 0].astype(np.uint16) * 257)), "mode I;16"),
    "CMYK JPEG": (saved(lambda: Image.fromarray(PIXELS).convert("CMYK"), "jpg"), "mode CMYK"),
    "a colour profile that cannot be read": (saved(lambda: Image.fromarray(PIXELS), icc_profile=b"not a profile"), "colour profile"),
    "RGBA with transparency": (saved(lambda: Image.fromarray(np.dstack([PIXELS, np.full((32, 32), 7, np.uint8)]), "RGBA")), "transparent pixel"),
    "palette with a transparent colour": (saved(transparent_palette, transparency=0), "transparent pixel"),
}  # fmt: skip


def _save_all(path: Path) -> Path:
    first, *rest = two_frames()
    first.save(path, save_all=True, append_images=rest)
    return path


def predict(entry: tuple[Path, str], folder: Path, output: Path) -> tuple[int, str, list[dict]]:
    results, entry_id = entry
    result = CliRunner().invoke(app, ["predict", entry_id, str(folder), "--output", str(output), "--results-dir",
                                      str(results), "--probabilities", "--strict"], env={"COLUMNS": "300"})  # fmt: skip
    rows = list(csv.DictReader(io.StringIO(output.read_text()))) if result.exit_code == 0 else []
    return result.exit_code, result.stderr, rows


@pytest.mark.parametrize("case", SHOWN)
def test_the_model_sees_what_a_viewer_shows(tmp_path: Path, entry: tuple[Path, str], case: str) -> None:
    (tmp_path / "file").mkdir()
    path = SHOWN[case](tmp_path / "file")
    (tmp_path / "reference").mkdir()
    Image.fromarray(viewed(path)).save(tmp_path / "reference" / "image.png")
    code, err, rows = predict(entry, tmp_path / "file", tmp_path / "a.csv")
    assert code == 0, err
    code, err, reference = predict(entry, tmp_path / "reference", tmp_path / "b.csv")
    assert code == 0, err
    assert rows == reference


def test_an_orientation_tag_changes_what_the_model_sees(tmp_path: Path, entry: tuple[Path, str]) -> None:
    """The comparison above is not vacuous: the stored pixels predict differently from the shown ones."""
    for orientation in (1, 6):
        (tmp_path / str(orientation)).mkdir()
        oriented(orientation)(tmp_path / str(orientation))
    assert (
        predict(entry, tmp_path / "1", tmp_path / "a.csv")[2] != predict(entry, tmp_path / "6", tmp_path / "b.csv")[2]
    )


@pytest.mark.parametrize("case", REFUSED)
def test_a_file_whose_look_cannot_be_reproduced_is_refused_in_one_line(
    tmp_path: Path, entry: tuple[Path, str], case: str
) -> None:
    write, phrase = REFUSED[case]
    path = write(tmp_path)
    code, err, _ = predict(entry, tmp_path, tmp_path / "out.csv")
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    assert str(path) in err and phrase in err, err
    assert not (tmp_path / "out.csv").exists()
