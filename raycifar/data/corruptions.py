"""The 19 corruptions of CIFAR-10-C (Hendrycks & Dietterich, ICLR 2019), at CIFAR strength.

The constants are those of the authors' script ``ImageNet-C/create_c/make_cifar_c.py`` in
hendrycks/robustness (Apache-2.0) at :data:`SOURCE_COMMIT`; :data:`CORRUPTIONS` gives each
one's five severities and the script's line. The code is raycifar's own, on NumPy, SciPy,
OpenCV and Pillow. It follows the script's arithmetic, including three of its quirks that
shape the published data set (so that a score on this set compares with one on CIFAR-10-C):

- glass blur's "swap" is a copy (the script's tuple assignment of NumPy views writes the
  neighbour's pixel into the current one and leaves the neighbour unchanged), and its
  neighbour offsets are drawn from {-1, 0} (``randint(-1, 1)``);
- frost draws one of the first five photographs (``randint(5)``): the sixth is never used;
- every result is truncated, not rounded, to uint8 (``np.uint8(...)``).

Two are reimplemented, not followed: the script blurs motion blur and snow with ImageMagick's
``MotionBlurImage``; here an OpenCV kernel does the same sum (a one-sided line of
``2 * radius + 1`` taps weighted by a Gaussian of ``sigma``, at the given angle, edges
replicated), so those two are close to, not equal to, the published images.

Every function takes uint8 images (N x 32 x 32 x 3, RGB), a severity (1..5) and one NumPy
generator per image, and returns uint8 images of the same shape. Image ``i`` draws its random
numbers only from ``rngs[i]``, so an image's corruption does not depend on the others.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import numpy as np

from raycifar.data.corruption_kernels import (  # noqa: F401 - the kernels are part of this module's interface
    _draw,
    _gaussian,
    _motion_blur_one,
    _to_uint8,
    _unit,
    clipped_zoom,
    disk_kernel,
    hsv_to_rgb,
    motion_kernel,
    plasma_fractal,
    rgb_to_hsv,
)
from raycifar.data.corruption_table import (  # noqa: F401 - the table is part of this module's interface
    BENCHMARK,
    CORRUPTIONS,
    FROST_DRAWN,
    FROST_PACKAGE,
    FROST_PHOTOS,
    SEVERITIES,
    SIZE,
    SOURCE_COMMIT,
    SOURCE_LICENSE,
    SOURCE_PATH,
    SOURCE_REPOSITORY,
    VALIDATION,
    Corruption,
    Images,
    Rngs,
)

# --- noise -----------------------------------------------------------------------------------------


def gaussian_noise(images: Images, severity: int, rngs: Rngs) -> Images:
    scale = CORRUPTIONS["gaussian_noise"].constants[severity - 1]
    return _to_uint8(_unit(images) + _draw(rngs, lambda rng: rng.normal(0, scale, images.shape[1:])))


def shot_noise(images: Images, severity: int, rngs: Rngs) -> Images:
    photons = CORRUPTIONS["shot_noise"].constants[severity - 1]
    unit = _unit(images)
    return _to_uint8(np.stack([rng.poisson(image * photons) for rng, image in zip(rngs, unit, strict=True)]) / photons)


def impulse_noise(images: Images, severity: int, rngs: Rngs) -> Images:
    """Salt and pepper: each value (per channel) becomes 0 or 1, half each, with the chance
    given by the severity."""
    amount = CORRUPTIONS["impulse_noise"].constants[severity - 1]
    draws = _draw(rngs, lambda rng: rng.random((2, *images.shape[1:])))
    flipped, salt = draws[:, 0] < amount, draws[:, 1] < 0.5
    unit = _unit(images)
    unit[flipped & salt] = 1.0
    unit[flipped & ~salt] = 0.0
    return _to_uint8(unit)


def speckle_noise(images: Images, severity: int, rngs: Rngs) -> Images:
    scale = CORRUPTIONS["speckle_noise"].constants[severity - 1]
    unit = _unit(images)
    return _to_uint8(unit + unit * _draw(rngs, lambda rng: rng.normal(0, scale, images.shape[1:])))


# --- blur ------------------------------------------------------------------------------------------


def gaussian_blur(images: Images, severity: int, rngs: Rngs) -> Images:
    return _to_uint8(_gaussian(_unit(images), CORRUPTIONS["gaussian_blur"].constants[severity - 1]))


def glass_blur(images: Images, severity: int, rngs: Rngs) -> Images:
    """Blur, move pixels locally, blur again. Positions are visited from the bottom-right
    corner up to (2, 2); each takes the value of its neighbour at a drawn offset in
    {-max_delta .. max_delta - 1} (the script's copy, see the module docstring)."""
    sigma, delta, iterations = CORRUPTIONS["glass_blur"].constants[severity - 1]
    moved = (_gaussian(_unit(images), sigma) * 255).astype(np.uint8)
    positions = range(SIZE - delta, delta, -1)
    count = len(positions)
    offsets = _draw(rngs, lambda rng: rng.integers(-delta, delta, size=(iterations, count, count, 2)))
    every = np.arange(len(images))
    for it in range(iterations):
        for hi, h in enumerate(positions):
            for wi, w in enumerate(positions):
                dx, dy = offsets[:, it, hi, wi, 0], offsets[:, it, hi, wi, 1]
                moved[:, h, w] = moved[every, h + dy, w + dx]
    return _to_uint8(_gaussian(moved / 255.0, sigma))


def defocus_blur(images: Images, severity: int, rngs: Rngs) -> Images:
    import cv2

    radius, alias_blur = CORRUPTIONS["defocus_blur"].constants[severity - 1]
    kernel = disk_kernel(radius, alias_blur)
    return _to_uint8(np.stack([cv2.filter2D(image, -1, kernel) for image in _unit(images)]))


def motion_blur(images: Images, severity: int, rngs: Rngs) -> Images:
    """Reimplemented (the script calls ImageMagick): see :func:`motion_kernel`; the angle is
    drawn uniformly in [-45, 45) degrees."""
    radius, sigma = CORRUPTIONS["motion_blur"].constants[severity - 1]
    return np.stack(
        [_motion_blur_one(image, radius, sigma, rng.uniform(-45, 45)) for rng, image in zip(rngs, images, strict=True)]
    )


def zoom_blur(images: Images, severity: int, rngs: Rngs) -> Images:
    """The mean of the image and its centre zoomed by each factor of np.arange(start, stop, step)."""
    start, stop, step = CORRUPTIONS["zoom_blur"].constants[severity - 1]
    factors = np.arange(start, stop, step)
    unit = _unit(images).astype(np.float32)
    total = np.zeros_like(unit)
    for factor in factors:
        total += clipped_zoom(unit, factor)
    return _to_uint8((unit + total) / (len(factors) + 1))


# --- weather ---------------------------------------------------------------------------------------


def snow(images: Images, severity: int, rngs: Rngs) -> Images:
    """Flakes (thresholded, zoomed Gaussian noise) motion-blurred at an angle in [-135, -45)
    degrees (reimplemented, see :func:`motion_kernel`), added twice (the layer and its
    180-degree rotation) to a brightened image."""
    loc, scale, zoom_factor, threshold, radius, sigma, keep = CORRUPTIONS["snow"].constants[severity - 1]
    unit = _unit(images).astype(np.float32)
    layers = _draw(rngs, lambda rng: rng.normal(loc, scale, (SIZE, SIZE)))
    layers = clipped_zoom(layers[..., np.newaxis], zoom_factor)[..., 0]
    layers[layers < threshold] = 0
    layers = (np.clip(layers, 0, 1) * 255).astype(np.uint8)
    flakes = (
        np.stack(
            [
                _motion_blur_one(layer, radius, sigma, rng.uniform(-135, -45))
                for rng, layer in zip(rngs, layers, strict=True)
            ]
        )[..., np.newaxis]
        / 255.0
    )
    grey = unit @ np.array([0.299, 0.587, 0.114], np.float32)
    unit = keep * unit + (1 - keep) * np.maximum(unit, grey[..., np.newaxis] * 1.5 + 0.5)
    return _to_uint8(unit + flakes + np.rot90(flakes, k=2, axes=(1, 2)))


@lru_cache(maxsize=4)
def frost_layers(folder: str) -> tuple[np.ndarray, ...]:
    """The six frost photographs of ``folder`` as RGB float arrays, shrunk to a fifth (bilinear)."""
    import cv2

    layers = []
    for name in FROST_PHOTOS:
        photo = cv2.imread(str(Path(folder) / name))
        layers.append(cv2.resize(photo, (0, 0), fx=0.2, fy=0.2)[..., ::-1].astype(np.float64))
    return tuple(layers)


def frost(images: Images, severity: int, rngs: Rngs, photos: Path | None = None) -> Images:
    """The image, darkened, plus a random 32 x 32 crop of one of the first five frost photographs."""
    if photos is None:
        raise ValueError("frost needs the folder of the six frost photographs")
    keep, weight = CORRUPTIONS["frost"].constants[severity - 1]
    layers = frost_layers(str(photos))
    crops = []
    for rng in rngs:
        layer = layers[rng.integers(FROST_DRAWN)]
        top, left = rng.integers(0, layer.shape[0] - SIZE), rng.integers(0, layer.shape[1] - SIZE)
        crops.append(layer[top : top + SIZE, left : left + SIZE])
    return np.clip(keep * images + weight * np.stack(crops), 0, 255).astype(np.uint8)


def fog(images: Images, severity: int, rngs: Rngs) -> Images:
    strength, decay = CORRUPTIONS["fog"].constants[severity - 1]
    unit = _unit(images)
    top = unit.max(axis=(1, 2, 3), keepdims=True)
    unit = unit + strength * plasma_fractal(rngs, decay)[..., np.newaxis]
    return _to_uint8(unit * top / (top + strength))


def spatter(images: Images, severity: int, rngs: Rngs) -> Images:
    """Water (severities with mud = 0: pale turquoise drops with shaded edges) or mud (dark
    brown blotches) from thresholded, blurred Gaussian noise."""
    import cv2

    loc, scale, sigma, threshold, intensity, mud = CORRUPTIONS["spatter"].constants[severity - 1]
    unit = _unit(images).astype(np.float32)
    liquid = _gaussian(_draw(rngs, lambda rng: rng.normal(loc, scale, (SIZE, SIZE))), sigma)
    liquid[liquid < threshold] = 0
    if not mud:
        out = []
        shade = np.array([[-2, -1, 0], [-1, 1, 1], [0, 1, 2]], np.float32)
        water = np.array([175, 238, 238], np.float32) / 255.0
        for image, layer in zip(unit, liquid, strict=True):
            layer8 = np.clip(layer * 255, 0, 255).astype(np.uint8)
            dist = cv2.distanceTransform(255 - cv2.Canny(layer8, 50, 150), cv2.DIST_L2, 5)
            _, dist = cv2.threshold(dist, 20, 20, cv2.THRESH_TRUNC)
            dist = cv2.equalizeHist(cv2.blur(dist, (3, 3)).astype(np.uint8))
            dist = cv2.blur(cv2.filter2D(dist, cv2.CV_8U, shade), (3, 3)).astype(np.float32)
            mask = layer8 * dist
            top = mask.max()
            mask = mask / top * intensity if top > 0 else mask
            out.append(image + mask[..., np.newaxis] * water)
        return _to_uint8(np.stack(out))
    mask = _gaussian((liquid > threshold).astype(np.float32), intensity)
    mask[mask < 0.8] = 0
    brown = np.array([63, 42, 20], np.float32) / 255.0
    return _to_uint8(unit * (1 - mask[..., np.newaxis]) + brown * mask[..., np.newaxis])


# --- digital ---------------------------------------------------------------------------------------


def brightness(images: Images, severity: int, rngs: Rngs) -> Images:
    hsv = rgb_to_hsv(_unit(images))
    hsv[..., 2] = np.clip(hsv[..., 2] + CORRUPTIONS["brightness"].constants[severity - 1], 0, 1)
    return _to_uint8(hsv_to_rgb(hsv))


def saturate(images: Images, severity: int, rngs: Rngs) -> Images:
    scale, offset = CORRUPTIONS["saturate"].constants[severity - 1]
    hsv = rgb_to_hsv(_unit(images))
    hsv[..., 1] = np.clip(hsv[..., 1] * scale + offset, 0, 1)
    return _to_uint8(hsv_to_rgb(hsv))


def contrast(images: Images, severity: int, rngs: Rngs) -> Images:
    unit = _unit(images)
    means = unit.mean(axis=(1, 2), keepdims=True)
    return _to_uint8((unit - means) * CORRUPTIONS["contrast"].constants[severity - 1] + means)


def elastic_transform(images: Images, severity: int, rngs: Rngs) -> Images:
    """A random affine warp (corners moved by up to ``affine`` x 32 pixels, reflected edges),
    then a smooth random displacement field (uniform noise blurred by ``sigma`` x 32, times
    ``alpha`` x 32), sampled bilinearly with reflected edges."""
    import cv2
    from scipy.ndimage import gaussian_filter, map_coordinates

    alpha, sigma, affine = (SIZE * v for v in CORRUPTIONS["elastic_transform"].constants[severity - 1])
    centre, third = np.float32([SIZE, SIZE]) // 2, SIZE // 3
    corners = np.float32([centre + third, [centre[0] + third, centre[1] - third], centre - third])
    ys, xs, zs = np.meshgrid(np.arange(SIZE), np.arange(SIZE), np.arange(3), indexing="ij")
    out = []
    for rng, image in zip(rngs, images, strict=True):
        unit = image.astype(np.float32) / 255.0
        moved = corners + rng.uniform(-affine, affine, size=corners.shape).astype(np.float32)
        unit = cv2.warpAffine(
            unit, cv2.getAffineTransform(corners, moved), (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT_101
        )
        dx, dy = (
            (gaussian_filter(rng.uniform(-1, 1, (SIZE, SIZE)), sigma, mode="reflect", truncate=3) * alpha).astype(
                np.float32
            )
            for _ in range(2)
        )
        coords = [(ys + dy[..., np.newaxis]).ravel(), (xs + dx[..., np.newaxis]).ravel(), zs.ravel()]
        out.append(map_coordinates(unit, coords, order=1, mode="reflect").reshape(unit.shape))
    return _to_uint8(np.stack(out))


def _through_pil(images: Images, change: Callable) -> Images:
    from PIL import Image

    return np.stack([np.asarray(change(Image.fromarray(image))) for image in images])


def pixelate(images: Images, severity: int, rngs: Rngs) -> Images:
    """Box-downsample to int(32 x c) pixels a side and box-upsample back."""
    from PIL import Image

    side = int(SIZE * CORRUPTIONS["pixelate"].constants[severity - 1])
    return _through_pil(images, lambda im: im.resize((side, side), Image.BOX).resize((SIZE, SIZE), Image.BOX))


def jpeg_quality(severity: int) -> int:
    return int(CORRUPTIONS["jpeg_compression"].constants[severity - 1])


def jpeg_compression(images: Images, severity: int, rngs: Rngs) -> Images:
    """Encode as JPEG with Pillow at the severity's quality (Pillow's default 4:2:0 chroma
    subsampling) and decode."""
    from io import BytesIO

    from PIL import Image

    def encode(image: Image.Image) -> Image.Image:
        buffer = BytesIO()
        image.save(buffer, "JPEG", quality=jpeg_quality(severity))
        return Image.open(buffer).convert("RGB")

    return _through_pil(images, encode)


FUNCTIONS: dict[str, Callable[..., Images]] = {
    "gaussian_noise": gaussian_noise,
    "shot_noise": shot_noise,
    "impulse_noise": impulse_noise,
    "defocus_blur": defocus_blur,
    "glass_blur": glass_blur,
    "motion_blur": motion_blur,
    "zoom_blur": zoom_blur,
    "snow": snow,
    "frost": frost,
    "fog": fog,
    "brightness": brightness,
    "contrast": contrast,
    "elastic_transform": elastic_transform,
    "pixelate": pixelate,
    "jpeg_compression": jpeg_compression,
    "speckle_noise": speckle_noise,
    "gaussian_blur": gaussian_blur,
    "spatter": spatter,
    "saturate": saturate,
}
assert tuple(FUNCTIONS) == tuple(CORRUPTIONS)


def image_rngs(seed: int, name: str, severity: int, start: int, stop: int) -> list[np.random.Generator]:
    """The generators of images ``start``..``stop - 1`` for one corruption and severity: each
    seeded by (seed, the corruption's place in :data:`CORRUPTIONS`, severity, image index), so
    that an image's corruption is the same whatever else is written (fewer images, other
    corruptions or severities)."""
    place = list(CORRUPTIONS).index(name)
    return [np.random.default_rng([seed, place, severity, i]) for i in range(start, stop)]


def corrupt(
    images: Images, name: str, severity: int, seed: int, start: int = 0, frost_photos: Path | None = None
) -> Images:
    """``images`` (uint8 N x 32 x 32 x 3, the test set's images ``start``.. ``start + N - 1``)
    corrupted by ``name`` at ``severity``, deterministically from ``seed``."""
    if name not in FUNCTIONS:
        raise KeyError(name)
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity}: must be 1..5")
    rngs = image_rngs(seed, name, severity, start, start + len(images))
    if name == "frost":
        return frost(images, severity, rngs, frost_photos)
    return FUNCTIONS[name](images, severity, rngs)
