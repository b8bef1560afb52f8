"""The building blocks of :mod:`raycifar.data.corruptions`: Gaussian blur as scikit-image does
it, bilinear centre zoom, HSV, the defocus and motion-blur kernels, the plasma fractal, and the
uint8 conversion of the source script (clip, times 255, truncate)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

SIZE = 32
Images = np.ndarray
Rngs = Sequence[np.random.Generator]


def _unit(images: Images) -> np.ndarray:
    return images.astype(np.float64) / 255.0


def _to_uint8(unit: np.ndarray) -> Images:
    """[0, 1] floats to uint8 as the script does: clipped, times 255, truncated."""
    return (np.clip(unit, 0, 1) * 255).astype(np.uint8)


def _draw(rngs: Rngs, draw: Callable[[np.random.Generator], np.ndarray]) -> np.ndarray:
    """One draw per image, stacked: image i's numbers come from rngs[i] only."""
    return np.stack([draw(rng) for rng in rngs])


def _gaussian(
    unit: np.ndarray, sigma: float, spatial: tuple[int, int] = (1, 2), mode: str = "nearest", truncate: float = 4.0
) -> np.ndarray:
    """A Gaussian blur of the spatial axes only (scikit-image's ``gaussian`` defaults: nearest
    edges, truncated at 4 sigma)."""
    from scipy.ndimage import gaussian_filter

    sigmas = [sigma if axis in spatial else 0.0 for axis in range(unit.ndim)]
    return gaussian_filter(unit, sigmas, mode=mode, truncate=truncate)


def _linear_zoom_matrix(size: int, factor: float) -> np.ndarray:
    """The (round(size * factor) x size) matrix of a bilinear zoom along one axis, corners
    aligned (scipy.ndimage.zoom with order=1): output j samples input j * (size-1) / (out-1)."""
    out = int(round(size * factor))
    where = np.arange(out) * ((size - 1) / (out - 1)) if out > 1 else np.zeros(1)
    low = np.minimum(np.floor(where).astype(np.int64), size - 1)
    high = np.minimum(low + 1, size - 1)
    frac = where - low
    matrix = np.zeros((out, size))
    np.add.at(matrix, (np.arange(out), low), 1 - frac)
    np.add.at(matrix, (np.arange(out), high), frac)
    return matrix


def clipped_zoom(batch: np.ndarray, factor: float) -> np.ndarray:
    """Zoom the centre of every image (N x H x W x C) by ``factor`` (bilinear, as
    scipy.ndimage.zoom with order=1), cropped back to H x W."""
    side = batch.shape[1]
    crop = int(np.ceil(side / factor))
    top = (side - crop) // 2
    matrix = _linear_zoom_matrix(crop, factor)
    trim = (matrix.shape[0] - side) // 2
    matrix = matrix[trim : trim + side].astype(batch.dtype)
    centre = batch[:, top : top + crop, top : top + crop]
    return np.einsum("ij,njkc,lk->nilc", matrix, centre, matrix, optimize=True)


def rgb_to_hsv(rgb: np.ndarray) -> np.ndarray:
    """RGB in [0, 1] to HSV in [0, 1] (hue as a fraction of a turn; grey has hue 0)."""
    value = rgb.max(-1)
    delta = value - rgb.min(-1)
    safe = np.where(delta == 0, 1.0, delta)
    saturation = np.where(value == 0, 0.0, delta / np.where(value == 0, 1.0, value))
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    hue = np.where(b == value, 4.0 + (r - g) / safe, 0.0)
    hue = np.where(g == value, 2.0 + (b - r) / safe, hue)
    hue = np.where(r == value, (g - b) / safe, hue)
    hue = np.where(delta == 0, 0.0, (hue / 6.0) % 1.0)
    return np.stack([hue, saturation, value], -1)


def hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """The inverse of :func:`rgb_to_hsv`."""
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    sector = np.floor(h * 6.0)
    f = h * 6.0 - sector
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    sector = sector.astype(np.int64) % 6
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    return np.stack([np.choose(sector, [c[channel] for c in choices]) for channel in range(3)], -1)


def disk_kernel(radius: float, alias_blur: float) -> np.ndarray:
    """The defocus kernel: a normalised disk of ``radius`` on a 17 x 17 grid (radius up to 8),
    smoothed by a 3 x 3 Gaussian of ``alias_blur``."""
    import cv2

    reach = 8 if radius <= 8 else int(radius)
    grid = np.arange(-reach, reach + 1)
    xx, yy = np.meshgrid(grid, grid)
    disk = (xx**2 + yy**2 <= radius**2).astype(np.float32)
    disk /= disk.sum()
    size = (3, 3) if radius <= 8 else (5, 5)
    return cv2.GaussianBlur(disk, ksize=size, sigmaX=alias_blur)


def motion_kernel(radius: float, sigma: float, angle: float) -> np.ndarray:
    """A motion-blur kernel after ImageMagick's ``MotionBlurImage``: ``2 * ceil(radius) + 1``
    taps along ``angle`` (degrees) from the centre, on one side only, tap i at
    (round(i cos a), round(i sin a)) weighted exp(-i^2 / (2 sigma^2)), normalised."""
    taps = int(2 * np.ceil(radius) + 1)
    weights = np.exp(-(np.arange(taps) ** 2) / (2.0 * sigma**2))
    weights /= weights.sum()
    rad = np.deg2rad(angle)
    kernel = np.zeros((2 * taps + 1, 2 * taps + 1), np.float64)
    for i, weight in enumerate(weights):
        dx = int(np.ceil(i * np.cos(rad) - 0.5))
        dy = int(np.ceil(i * np.sin(rad) - 0.5))
        kernel[taps + dy, taps + dx] += weight
    return kernel


def _motion_blur_one(image: np.ndarray, radius: float, sigma: float, angle: float) -> np.ndarray:
    """One uint8 image (H x W or H x W x C) blurred by :func:`motion_kernel`, rounded to uint8."""
    import cv2

    blurred = cv2.filter2D(
        image.astype(np.float64), -1, motion_kernel(radius, sigma, angle), borderType=cv2.BORDER_REPLICATE
    )
    return np.clip(np.rint(blurred), 0, 255).astype(np.uint8)


def plasma_fractal(rngs: Rngs, decay: float, size: int = SIZE) -> np.ndarray:
    """One diamond-square height map per generator (N x size x size, scaled to [0, 1]); the
    random amplitude starts at 100 and is divided by ``decay`` at each halving."""
    assert size & (size - 1) == 0, "size must be a power of two"
    maps = np.zeros((len(rngs), size, size))
    step, wibble = size, 100.0

    def noisy_mean(total: np.ndarray) -> np.ndarray:
        return total / 4 + wibble * _draw(rngs, lambda rng: rng.uniform(-wibble, wibble, total.shape[1:]))

    while step >= 2:
        half = step // 2
        corners = maps[:, 0:size:step, 0:size:step]
        squares = corners + np.roll(corners, -1, axis=1)
        squares = squares + np.roll(squares, -1, axis=2)
        maps[:, half:size:step, half:size:step] = noisy_mean(squares)
        centres = maps[:, half:size:step, half:size:step]
        corners = maps[:, 0:size:step, 0:size:step]
        across = centres + np.roll(centres, 1, axis=1) + corners + np.roll(corners, -1, axis=2)
        maps[:, 0:size:step, half:size:step] = noisy_mean(across)
        down = centres + np.roll(centres, 1, axis=2) + corners + np.roll(corners, -1, axis=1)
        maps[:, half:size:step, 0:size:step] = noisy_mean(down)
        step //= 2
        wibble /= decay
    maps -= maps.min(axis=(1, 2), keepdims=True)
    return maps / maps.max(axis=(1, 2), keepdims=True)
