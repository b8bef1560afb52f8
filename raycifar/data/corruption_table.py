"""The constants of the 19 corruptions: the CIFAR table of hendrycks/robustness
``ImageNet-C/create_c/make_cifar_c.py`` (Apache-2.0) at :data:`SOURCE_COMMIT`, each with the
script's line, and the frost photographs' SHA-256. The functions are in
:mod:`raycifar.data.corruptions`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SOURCE_REPOSITORY = "hendrycks/robustness"
SOURCE_PATH = "ImageNet-C/create_c/make_cifar_c.py"
SOURCE_COMMIT = "ca360085d57889288c4143fddd8a707bbcae01bd"  # the last commit that changed the script
SOURCE_LICENSE = "Apache-2.0"
SIZE = 32  # the side of a CIFAR image (corruption_kernels.SIZE)
SEVERITIES = (1, 2, 3, 4, 5)

# The six frost photographs of the imagecorruptions wheel (package data imagecorruptions/frost/),
# byte-identical to ImageNet-C/create_c/frost*.{png,jpg} of hendrycks/robustness.
FROST_PHOTOS = {
    "frost1.png": "ff9f907860bd7a835d459e32f9d588062b7f61ee267343cc7222b56753a14755",
    "frost2.png": "fe211a89b336999c207a852ce05818d4545d0b57c5beadd824b4cc9d9a9b6137",
    "frost3.png": "2d0d50b4a9bb213f38b024ef7768731bb83cc08d2f26b5766bbc167cdfa0e504",
    "frost4.jpg": "3f8b91ca1a9fa7167b09e773da53f5ae60d0a1fd88f02a783f6e328a72887f6e",
    "frost5.jpg": "5fc6a19df4a429ba68abdcc8f8a4278d4c9f81c9ccafd2c92ab0c8cf8992ebd2",
    "frost6.jpg": "1f92b2f48408748085b68dd81d816ef239f42cef3029c25d041fcb6760fb4f25",
}
FROST_DRAWN = 5  # the script's randint(5): frost6.jpg is never drawn
FROST_PACKAGE = "imagecorruptions==1.1.2"

Images = np.ndarray
Rngs = Sequence[np.random.Generator]


@dataclass(frozen=True)
class Corruption:
    """One corruption: its five severities' constants (as in the script), the script's line
    holding them, its group and kind, and whether it is reimplemented rather than followed."""

    name: str
    constants: tuple
    source_line: int
    group: str  # "benchmark" (the 15 test corruptions) or "validation" (the 4 held out)
    kind: str  # noise, blur, weather, digital
    reimplemented: bool = False


# Glass blur: (sigma, max_delta, iterations); defocus: (radius, alias_blur); motion blur:
# (radius, sigma); zoom blur: np.arange(start, stop, step); fog: (strength, wibble decay); frost:
# (image weight, photo weight); snow: (loc, scale, zoom, threshold, blur radius, blur sigma,
# image weight); spatter: (loc, scale, sigma, threshold, intensity, mud); saturate: (scale,
# offset); elastic: (alpha, sigma, affine) in image sides (x 32).
CORRUPTIONS: dict[str, Corruption] = {
    c.name: c
    for c in (
        Corruption("gaussian_noise", (0.04, 0.06, 0.08, 0.09, 0.10), 131, "benchmark", "noise"),
        Corruption("shot_noise", (500, 250, 100, 75, 50), 138, "benchmark", "noise"),
        Corruption("impulse_noise", (0.01, 0.02, 0.03, 0.05, 0.07), 145, "benchmark", "noise"),
        Corruption("defocus_blur", ((0.3, 0.4), (0.4, 0.5), (0.5, 0.6), (1, 0.2), (1.5, 0.1)), 184, "benchmark", "blur"),
        Corruption("glass_blur", ((0.05, 1, 1), (0.25, 1, 1), (0.4, 1, 1), (0.25, 1, 2), (0.4, 1, 2)), 167, "benchmark", "blur"),
        Corruption("motion_blur", ((6, 1), (6, 1.5), (6, 2), (8, 2), (9, 2.5)), 198, "benchmark", "blur", reimplemented=True),
        Corruption("zoom_blur", ((1, 1.06, 0.01), (1, 1.11, 0.01), (1, 1.16, 0.01), (1, 1.21, 0.01), (1, 1.26, 0.01)), 216, "benchmark", "blur"),
        Corruption(
            "snow",
            (
                (0.1, 0.2, 1, 0.6, 8, 3, 0.95),
                (0.1, 0.2, 1, 0.5, 10, 4, 0.9),
                (0.15, 0.3, 1.75, 0.55, 10, 4, 0.9),
                (0.25, 0.3, 2.25, 0.6, 12, 6, 0.85),
                (0.3, 0.3, 1.25, 0.65, 14, 12, 0.8),
            ),
            251, "benchmark", "weather", reimplemented=True,
        ),
        Corruption("frost", ((1, 0.2), (1, 0.3), (0.9, 0.4), (0.85, 0.4), (0.75, 0.45)), 238, "benchmark", "weather"),
        Corruption("fog", ((0.2, 3), (0.5, 3), (0.75, 2.5), (1, 2), (1.5, 1.75)), 229, "benchmark", "weather"),
        Corruption("brightness", (0.05, 0.1, 0.15, 0.2, 0.3), 342, "benchmark", "digital"),
        Corruption("contrast", (0.75, 0.5, 0.4, 0.3, 0.15), 334, "benchmark", "digital"),
        Corruption(
            "elastic_transform",
            ((0, 0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)),
            385, "benchmark", "digital",
        ),
        Corruption("pixelate", (0.95, 0.9, 0.85, 0.75, 0.65), 374, "benchmark", "digital"),
        Corruption("jpeg_compression", (80, 65, 58, 50, 40), 364, "benchmark", "digital"),
        Corruption("speckle_noise", (0.06, 0.1, 0.12, 0.16, 0.2), 152, "validation", "noise"),
        Corruption("gaussian_blur", (0.4, 0.6, 0.7, 0.8, 1), 159, "validation", "blur"),
        Corruption(
            "spatter",
            (
                (0.62, 0.1, 0.7, 0.7, 0.5, 0),
                (0.65, 0.1, 0.8, 0.7, 0.5, 0),
                (0.65, 0.3, 1, 0.69, 0.5, 0),
                (0.65, 0.1, 0.7, 0.69, 0.6, 1),
                (0.65, 0.1, 0.5, 0.68, 0.6, 1),
            ),
            279, "validation", "weather",
        ),
        Corruption("saturate", ((0.3, 0), (0.1, 0), (1.5, 0), (2, 0.1), (2.5, 0.2)), 353, "validation", "digital"),
    )
}  # fmt: skip
BENCHMARK = tuple(name for name, c in CORRUPTIONS.items() if c.group == "benchmark")
VALIDATION = tuple(name for name, c in CORRUPTIONS.items() if c.group == "validation")
