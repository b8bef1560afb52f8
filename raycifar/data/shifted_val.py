"""The validation split's corrupted twin: what ``select: val_acc_shift`` and ``select: mean`` score.

The twin has the same images and labels as the validation split, each corrupted once: by one
of the 4 corruptions CIFAR-10-C holds out for validation (speckle noise, Gaussian blur,
spatter, saturate; :data:`raycifar.data.corruption_table.VALIDATION`) at one severity 1–5.
Both are drawn per image from the split seed, and each image's corruption is seeded by
(split seed, corruption, severity, image index) as in :func:`raycifar.data.corruptions.corrupt`,
so the twin is the same for every trial of a sweep, in every process, and after a resume. None
of the 15 test corruptions (``benchmark``) is ever used: selection never tunes on them.

Making the twin costs about 0.2 ms per image on one CPU core (1 s for a 5,000-image split);
it is kept in the process beside the decoded split, for the next trial on the same data.
"""

from __future__ import annotations

import numpy as np

from raycifar.data.corruption_table import SEVERITIES
from raycifar.data.readers import ImageSet

TWIN_STREAM = 24  # the seed stream of the twin's draws, apart from the split's own (a constant)
_TWINS: dict[tuple, ImageSet] = {}
TWINS_KEPT = 2


def twin_plan(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image of a ``count``-image split: the index into ``VALIDATION`` of its corruption,
    and its severity (1–5), drawn from ``seed`` (the split seed)."""
    from raycifar.data.corruptions import VALIDATION

    rng = np.random.default_rng([seed, TWIN_STREAM])
    return rng.integers(0, len(VALIDATION), count), rng.choice(np.array(SEVERITIES), count)


def shifted_twin(val: ImageSet, seed: int) -> ImageSet:
    """``val`` with each image corrupted as :func:`twin_plan` says; same labels and order."""
    from raycifar.data.corruptions import FUNCTIONS, VALIDATION, image_rngs

    corruption, severity = twin_plan(len(val), seed)
    images = np.empty_like(val.images)
    for place, name in enumerate(VALIDATION):
        for level in SEVERITIES:
            chosen = np.flatnonzero((corruption == place) & (severity == level))
            if len(chosen):
                rngs = [image_rngs(seed, name, level, int(i), int(i) + 1)[0] for i in chosen]
                images[chosen] = FUNCTIONS[name](val.images[chosen], level, rngs)
    return ImageSet(images, val.labels, val.class_names)


def kept_twin(val: ImageSet, seed: int, key: tuple | None) -> ImageSet:
    """:func:`shifted_twin`, kept in this process under ``key`` (None: never kept)."""
    if key is not None and key in _TWINS:
        return _TWINS[key]
    twin = shifted_twin(val, seed)
    if key is not None:
        while len(_TWINS) >= TWINS_KEPT:
            _TWINS.pop(next(iter(_TWINS)))
        _TWINS[key] = twin
    return twin
