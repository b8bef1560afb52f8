"""Image files as the readers and ``raycifar predict`` read them: which files count as
images, and the exact 8-bit RGB conversion that refuses anything it would change.

Pillow is imported only when an image is opened.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from raycifar.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
EXACT_MODES = ("RGB", "L", "1", "P", "RGBA", "LA", "PA")


def reason(err: BaseException, default: str) -> str:
    """The operating system's reason for an :class:`OSError` that has one (permission
    denied, ...), else ``default``: a library's own message is never passed on."""
    return err.strerror if isinstance(err, OSError) and err.strerror else default


def image_files(folder: Path) -> list[Path]:
    return sorted(
        p
        for p in folder.iterdir()
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def class_folders(folder: Path) -> list[Path]:
    return (
        sorted(p for p in folder.iterdir() if p.is_dir() and image_files(p))
        if folder.is_dir()
        else []
    )


def label_of(folder: Path, names: tuple[str, ...]) -> int:
    if folder.name in names:
        return names.index(folder.name)
    if folder.name.isdigit() and int(folder.name) < len(names):
        return int(folder.name)
    shown = ", ".join(names[:10]) + (", …" if len(names) > 10 else "")
    raise UserError(
        f"{folder}: folder name is not a class name ({shown}) or a class index"
    )


def _deeper_than_8_bits(image: Image.Image) -> bool:
    """Whether the file stores more than 8 bits per channel (e.g. a 16-bit RGB PNG, which
    Pillow opens as mode RGB keeping only the top 8 bits). Read from the decoder's raw mode."""
    for tile in image.tile:
        args = tile[3]
        rawmode = args if isinstance(args, str) else args[0] if isinstance(args, tuple) and args else ""
        if isinstance(rawmode, str) and re.match(r"(RGB|RGBA|RGBX|LA|L|I|F)[A-Z]*;(16|32)", rawmode):
            return True
    return False


def exact_rgb(path: Path, image: Image.Image) -> np.ndarray:
    """The image as H x W x 3 uint8 if that loses nothing: 8-bit RGB as is; greyscale, 1-bit and
    palette images expanded exactly; an alpha channel only if every pixel is opaque.
    Everything else (16-bit, float, CMYK, transparency, animation) is an error naming ``path``."""
    if getattr(image, "n_frames", 1) > 1:
        raise UserError(f"{path}: an animated image ({image.n_frames} frames); save the one frame to use")
    if image.mode not in EXACT_MODES or _deeper_than_8_bits(image):
        depth = " with more than 8 bits per channel" if _deeper_than_8_bits(image) else ""
        raise UserError(
            f"{path}: mode {image.mode}{depth} cannot be converted to 8-bit RGB without loss; "
            "save it as 8-bit RGB (or greyscale)"
        )
    if image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info:
        pixels = np.asarray(image.convert("RGBA"))
        transparent = int((pixels[..., 3] < 255).sum())
        if transparent:
            raise UserError(
                f"{path}: {transparent} transparent pixel(s) (alpha below 255); flatten it onto a background first"
            )
        return pixels[..., :3]
    return np.asarray(image.convert("RGB"))


def read_image_file(path: Path) -> np.ndarray:
    """One image file of any size as H x W x 3 uint8, exactly as stored (see :func:`exact_rgb`).

    Raises :class:`UserError` naming the file if Pillow cannot read it or it would change."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return exact_rgb(path, image)
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
        raise UserError(
            f"{path}: not a readable image ({reason(err, 'truncated, damaged, or not an image format Pillow reads')})"
        ) from None


def load_image_32(path: Path) -> np.ndarray:
    """One image file as 32 x 32 x 3 uint8, exactly as stored (see :func:`read_image_file`)."""
    pixels = read_image_file(path)
    if pixels.shape != (32, 32, 3):
        raise UserError(
            f"{path}: images must be 32x32, got {pixels.shape[1]}x{pixels.shape[0]}"
        )
    return pixels


def stack_images(paths: list[Path]) -> np.ndarray:
    return (
        np.stack([load_image_32(p) for p in paths])
        if paths
        else np.zeros((0, 32, 32, 3), np.uint8)
    )
