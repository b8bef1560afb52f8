"""Image files as the readers and ``raycifar predict`` read them: which files count as
images, the one folder walk every reader uses (:func:`walk_images`: symbolic links to files
and folders followed alike, loops and broken links named, never silent), the exact 8-bit RGB
conversion that refuses anything it would change, and what an image viewer shows of the file
(:func:`as_viewed`: EXIF orientation, colour profile to sRGB), which is what the model sees.

Pillow is imported only when an image is opened.
"""

from __future__ import annotations

import io
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from raycifar.data.file_names import shown
from raycifar.errors import UserError

if TYPE_CHECKING:
    from PIL import Image

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
EXACT_MODES = ("RGB", "L", "1", "P", "RGBA", "LA", "PA")


def reason(err: BaseException, default: str) -> str:
    """The operating system's reason for an :class:`OSError` that has one (permission
    denied, ...), else ``default``: a library's own message is never passed on."""
    return err.strerror if isinstance(err, OSError) and err.strerror else default


@dataclass
class FolderWalk:
    """What :func:`walk_images` found under a folder: the image ``files`` (sorted by path),
    how many ``other`` files (other suffixes) it passed over, and ``not_read``: one line per
    entry it could not read, ``<path>: <why>`` (a broken link, a link loop, a folder it may
    not list)."""

    files: list[Path] = field(default_factory=list)
    other: int = 0
    not_read: list[str] = field(default_factory=list)


def _identity(path: Path) -> tuple[int, int]:
    info = path.stat()
    return info.st_dev, info.st_ino


def walk_images(folder: Path, recursive: bool = True) -> FolderWalk:
    """Every image file (a suffix in :data:`IMAGE_SUFFIXES`) under ``folder``, and below it
    when ``recursive``. Every folder walk of raycifar (predict, image-folder datasets, extra
    test sets) is this one: symbolic links to files and to folders are followed alike; a link
    to a folder that holds it (a loop), a broken link and a folder that cannot be listed are
    not read and named in ``not_read``; hidden names (``.name``) are passed over unnamed."""
    walk = FolderWalk()
    try:
        _walk(folder, recursive, {_identity(folder)}, walk)
    except OSError as err:
        walk.not_read.append(f"{shown(folder)}: cannot read it ({reason(err, 'unreadable')})")
    walk.files.sort()
    return walk


def _walk(folder: Path, recursive: bool, above: set[tuple[int, int]], walk: FolderWalk) -> None:
    try:
        with os.scandir(folder) as listing:
            entries = sorted((entry for entry in listing if not entry.name.startswith(".")), key=lambda e: e.name)
    except OSError as err:
        walk.not_read.append(f"{shown(folder)}: cannot list this folder ({reason(err, 'unreadable')})")
        return
    for entry in entries:  # DirEntry: no system call per plain file
        path = folder / entry.name
        if entry.is_dir():
            if recursive:
                _walk_folder(path, recursive, above, walk)
        elif entry.is_symlink() and not entry.is_file():
            walk.not_read.append(f"{shown(path)}: a symbolic link to {shown(os.readlink(path))}, which does not exist")
        elif os.path.splitext(entry.name)[1].lower() in IMAGE_SUFFIXES:
            walk.files.append(path)
        else:
            walk.other += 1


def _walk_folder(path: Path, recursive: bool, above: set[tuple[int, int]], walk: FolderWalk) -> None:
    try:
        identity = _identity(path)
    except OSError as err:  # a link loop the OS itself refuses (ELOOP)
        walk.not_read.append(f"{shown(path)}: cannot follow it ({reason(err, 'unreadable')})")
        return
    if identity in above:
        walk.not_read.append(f"{shown(path)}: a symbolic link to a folder that holds it (a loop), not followed")
        return
    _walk(path, recursive, above | {identity}, walk)


def refuse_unread(folder: Path, walk: FolderWalk) -> None:
    """A dataset is read whole or not at all: raise :class:`UserError` naming what the walk
    of ``folder`` could not read, if anything."""
    if walk.not_read:
        more = f" (and {len(walk.not_read) - 1} more)" if len(walk.not_read) > 1 else ""
        raise UserError(f"{walk.not_read[0]}{more}; fix or remove it to read the images in {shown(folder)}")


def image_files(folder: Path, recursive: bool = True) -> list[Path]:
    """The image files of a class folder (in its subfolders too, as torchvision's ImageFolder
    reads them), or directly in an unlabeled folder (``recursive=False``), links followed
    (:func:`walk_images`); :class:`UserError` if anything could not be read."""
    walk = walk_images(folder, recursive)
    refuse_unread(folder, walk)
    return walk.files


def class_folders(folder: Path) -> list[Path]:
    """The class folders (folders, or links to folders, holding images) directly in ``folder``."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if not p.name.startswith(".") and p.is_dir() and image_files(p))


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


# EXIF orientation -> the NumPy view of the stored H x W x 3 pixels that a viewer shows
ORIENTATIONS: dict[int, Callable[[np.ndarray], np.ndarray]] = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, k=-1),
    7: lambda a: a.transpose(1, 0, 2)[::-1, ::-1], 8: lambda a: np.rot90(a, k=1),
}  # fmt: skip
EXIF_ORIENTATION = 0x0112


def _in_srgb(path: Path, image: Image.Image, pixels: np.ndarray) -> np.ndarray:
    """``pixels`` converted from the file's embedded RGB colour profile to sRGB (the profile's
    default rendering intent), as a colour-managed viewer shows them; unchanged without a
    profile or with an sRGB one. A profile Pillow cannot read is a :class:`UserError`."""
    icc = image.info.get("icc_profile")
    if not icc:
        return pixels
    from PIL import Image as PILImage
    from PIL import ImageCms

    try:
        profile = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        if profile.profile.xcolor_space.strip() != "RGB" or "srgb" in ImageCms.getProfileDescription(profile).lower():
            return pixels
        intent = ImageCms.getDefaultIntent(profile)
        converted = ImageCms.profileToProfile(
            PILImage.fromarray(pixels), profile, ImageCms.createProfile("sRGB"), renderingIntent=intent, outputMode="RGB"
        )
    except (OSError, ValueError, ImageCms.PyCMSError):
        raise UserError(f"{path}: its embedded colour profile cannot be read; save it without one, or in sRGB") from None
    return np.asarray(converted)


def as_viewed(path: Path, image: Image.Image, pixels: np.ndarray) -> np.ndarray:
    """The stored ``pixels`` (H x W x 3 uint8) as an image viewer shows the file: turned or
    mirrored as its EXIF orientation says, and converted to sRGB from its colour profile."""
    orientation = image.getexif().get(EXIF_ORIENTATION, 1)
    turned = ORIENTATIONS.get(orientation, lambda a: a)(pixels)
    return _in_srgb(path, image, np.ascontiguousarray(turned))


def read_image_file(path: Path) -> np.ndarray:
    """One image file of any size as H x W x 3 uint8, as an image viewer shows it: the stored
    pixels converted exactly (see :func:`exact_rgb`), then oriented and colour-managed
    (:func:`as_viewed`).

    Raises :class:`UserError` naming the file if Pillow cannot read it or it would change."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return as_viewed(path, image, exact_rgb(path, image))
    except UserError:
        raise
    except Exception as err:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ...
        raise UserError(
            f"{path}: not a readable image ({reason(err, 'truncated, damaged, or not an image format Pillow reads')})"
        ) from None


def load_image_32(path: Path) -> np.ndarray:
    """One image file as 32 x 32 x 3 uint8, as a viewer shows it (see :func:`read_image_file`)."""
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
