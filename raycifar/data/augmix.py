"""AugMix (Hendrycks et al., ICLR 2020) as batched tensor operations for the device loader.

Each image gets ``width`` chains of 1–3 operations (``depth``), each operation and its
strength drawn per image; the chains are mixed with per-image Dirichlet weights, and the mix
with the image itself by a per-image Beta weight (both with AugMix's α = 1: uniform on the
simplex and on [0, 1]). All of it is a handful of tensor operations per chain step on the
whole batch: an image's operation is chosen by a mask, and every geometric operation of a
step is one ``grid_sample`` with one affine matrix per image. There is no per-image Python.

The operations are AugMix's own, without those that overlap with the test corruptions of
CIFAR-10-C, as in the paper: no brightness, contrast, color, sharpness, noise, blur or JPEG
(torchvision's ``AugMix`` keeps the first four unless ``all_ops=False``, and draws one chain
per call, not per image). The held-out validation corruptions never appear either.

Strengths follow the paper's code: a level drawn uniformly in [0.1, ``severity``] on a scale
of 10, rotation up to 30°, shear up to 0.3, translation up to a third of the image, posterize
to 4–8 bits, solarize above 256 − 256·level/10. Geometric operations turn about the image
centre, resample bilinearly and fill with black; images stay on the 0–255 grid between
operations, as PIL images do.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

OPERATIONS = (
    "autocontrast", "equalize", "posterize", "solarize",
    "rotate", "shear_x", "shear_y", "translate_x", "translate_y",
)  # fmt: skip
EXCLUDED_OPERATIONS = ("brightness", "contrast", "color", "sharpness", "noise", "blur", "jpeg")
GEOMETRIC = ("rotate", "shear_x", "shear_y", "translate_x", "translate_y")
MAX_DEPTH = 3


@dataclass(frozen=True)
class AugMixSettings:
    """``severity`` 1–10 (the paper's 3), ``width`` chains per image (3), ``depth`` operations
    per chain (0: 1–3 drawn per image and chain, as in the paper)."""

    severity: int = 3
    width: int = 3
    depth: int = 0


def _uniform(count: int, low: float, high: float, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(count, generator=generator, device=generator.device) * (high - low) + low


def _sign(count: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, 2, (count,), generator=generator, device=generator.device).float() * 2 - 1


# --- colour operations on 0–255 float images (N, C, H, W) ---------------------------------------


def autocontrast(images: torch.Tensor) -> torch.Tensor:
    """Stretch each channel of each image to span 0–255 (a flat channel is left as it is), with
    PIL's lookup table: ``int(v * scale + offset)``, in double precision as PIL computes it."""
    values = images.double()
    low = values.amin(dim=(2, 3), keepdim=True)
    high = values.amax(dim=(2, 3), keepdim=True)
    scale = torch.full_like(high, 255.0) / (high - low).clamp(min=1.0)  # `255.0 / t` multiplies by 1 / t
    stretched = torch.floor(values * scale - low * scale).clamp(0, 255)
    return torch.where(high > low, stretched, values).float()


def equalize(images: torch.Tensor) -> torch.Tensor:
    """Histogram equalization of each channel of each image, with PIL's lookup table."""
    count, channels, height, width = images.shape
    levels = images.round().long().clamp(0, 255).view(count * channels, height * width)
    histogram = torch.zeros(count * channels, 256, device=images.device).scatter_add_(
        1, levels, torch.ones_like(levels, dtype=torch.float32)
    )
    # PIL: step = (pixels - count of the last used level) // 255; lut[i] = (cdf before i + step // 2) // step
    last = 255 - (histogram.flip(1) > 0).float().argmax(dim=1, keepdim=True)
    step = torch.div(height * width - histogram.gather(1, last), 255, rounding_mode="floor")
    before = histogram.cumsum(1) - histogram
    lut = torch.div(before + torch.div(step, 2, rounding_mode="floor"), step.clamp(min=1), rounding_mode="floor")
    lut = torch.where(step > 0, lut.clamp(max=255), torch.arange(256.0, device=images.device))
    return lut.gather(1, levels).view(count, channels, height, width)


def posterize(images: torch.Tensor, bits: torch.Tensor) -> torch.Tensor:
    """Keep the top ``bits[k]`` (1–8) bits of every value of image k."""
    drop = (2 ** (8 - bits)).view(-1, 1, 1, 1)
    return torch.div(images.round(), drop, rounding_mode="floor") * drop


def solarize(images: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """Invert (255 − v) every value v ≥ ``threshold[k]`` of image k."""
    return torch.where(images >= threshold.view(-1, 1, 1, 1), 255.0 - images, images)


# --- geometric operations: one affine matrix per image -------------------------------------------


def affine_matrices(operation: torch.Tensor, level: torch.Tensor, sign: torch.Tensor, side: int) -> torch.Tensor:
    """(N, 2, 3) matrices in ``affine_grid``'s normalized coordinates (output -> input) for the
    geometric operation index ``operation[k]`` (an index into :data:`OPERATIONS`; others: identity)."""
    count = len(operation)
    theta = torch.zeros(count, 2, 3, device=operation.device)
    theta[:, 0, 0] = theta[:, 1, 1] = 1.0
    angle = sign * torch.deg2rad(torch.floor(level * 30.0 / 10))
    shear = sign * level * 0.3 / 10
    shift = sign * torch.floor(level * (side / 3) / 10) * 2 / side
    index = {name: OPERATIONS.index(name) for name in GEOMETRIC}
    rotate = operation == index["rotate"]
    theta[rotate, 0, 0] = torch.cos(angle[rotate])
    theta[rotate, 0, 1] = -torch.sin(angle[rotate])
    theta[rotate, 1, 0] = torch.sin(angle[rotate])
    theta[rotate, 1, 1] = torch.cos(angle[rotate])
    theta[operation == index["shear_x"], 0, 1] = shear[operation == index["shear_x"]]
    theta[operation == index["shear_y"], 1, 0] = shear[operation == index["shear_y"]]
    theta[operation == index["translate_x"], 0, 2] = shift[operation == index["translate_x"]]
    theta[operation == index["translate_y"], 1, 2] = shift[operation == index["translate_y"]]
    return theta


def warp(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Bilinear resampling of each image by its matrix, black outside, back on the 0–255 grid."""
    grid = nn.functional.affine_grid(theta, list(images.shape), align_corners=False)
    return nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False).round()


# --- the chain step and the mix ------------------------------------------------------------------


def apply_operations(
    images: torch.Tensor, operation: torch.Tensor, level: torch.Tensor, sign: torch.Tensor
) -> torch.Tensor:
    """Image k after operation ``OPERATIONS[operation[k]]`` at ``level[k]`` (0.1–10); an
    ``operation[k]`` of -1 leaves it as it is. Each operation runs once, on its images only."""
    out = images.clone()
    geometric = operation >= OPERATIONS.index(GEOMETRIC[0])
    if geometric.any():
        theta = affine_matrices(operation[geometric], level[geometric], sign[geometric], images.shape[-1])
        out[geometric] = warp(images[geometric], theta)
    for name, transform in (
        ("autocontrast", lambda x, lv: autocontrast(x)),
        ("equalize", lambda x, lv: equalize(x)),
        ("posterize", lambda x, lv: posterize(x, 4 - torch.floor(lv * 4 / 10))),
        ("solarize", lambda x, lv: solarize(x, 256 - torch.floor(lv * 256 / 10))),
    ):
        chosen = operation == OPERATIONS.index(name)
        if chosen.any():
            out[chosen] = transform(images[chosen], level[chosen])
    return out


def augmix(
    images: torch.Tensor, generator: torch.Generator, settings: AugMixSettings = AugMixSettings()
) -> torch.Tensor:
    """AugMix of uint8 or 0–255 float (N, C, H, W) images: float32 (N, C, H, W) on the 0–255
    scale (not rounded: the mix is a weighted average), every draw from ``generator``."""
    count = len(images)
    original = images.float()
    weights = -torch.log(
        torch.rand(count, settings.width, generator=generator, device=generator.device).clamp(min=1e-12)
    )
    weights = weights / weights.sum(dim=1, keepdim=True)  # Dirichlet(1, ..., 1)
    mixed = torch.zeros_like(original)
    for chain in range(settings.width):
        if settings.depth > 0:
            depth = torch.full((count,), settings.depth, device=generator.device)
        else:
            depth = torch.randint(1, MAX_DEPTH + 1, (count,), generator=generator, device=generator.device)
        chained = original
        for step in range(int(depth.max())):
            operation = torch.randint(0, len(OPERATIONS), (count,), generator=generator, device=generator.device)
            operation = torch.where(depth > step, operation, torch.full_like(operation, -1))
            level = _uniform(count, 0.1, float(settings.severity), generator)
            chained = apply_operations(chained, operation, level, _sign(count, generator))
        mixed += weights[:, chain].view(-1, 1, 1, 1) * chained
    skip = torch.rand(count, generator=generator, device=generator.device).view(-1, 1, 1, 1)  # Beta(1, 1)
    return skip * original + (1 - skip) * mixed


def jensen_shannon(logits: torch.Tensor, views: int = 3) -> torch.Tensor:
    """AugMix's consistency loss: the Jensen–Shannon divergence among the softmax outputs of
    ``views`` equal parts of ``logits`` ((views·N, classes): clean first, then the AugMix
    views), averaged over the N images."""
    probabilities = [part.softmax(dim=1) for part in logits.chunk(views)]
    log_mean = torch.stack(probabilities).mean(dim=0).clamp(1e-7, 1).log()
    return sum(nn.functional.kl_div(log_mean, p, reduction="batchmean") for p in probabilities) / views
