"""Data: readers for every CIFAR layout, the train/val split, three loaders, augmentation.

=====================  =============================================================
module                 holds
=====================  =============================================================
``catalog``            class names, label modes, channel statistics, official file names
``readers``            every on-disk layout to one :class:`ImageSet` per part
``official``           the official python and binary layouts (folder or .tar.gz): batch names, decoding
``image_files``        image files: the one folder walk (links, loops), the exact 8-bit RGB conversion, what a viewer shows
``file_names``         file names that are not UTF-8, written ``\\xNN`` in every file and message
``splits``             the stratified, seeded train/val split
``augment``            batched augmentation (device loader), per-image pipeline (torchvision)
``device_loader``      the whole split as one tensor on the training device (default)
``ffcv_loader``        ``.beton`` files and FFCV's JIT ``Loader`` (optional extra)
``torchvision_loader`` a ``DataLoader`` with worker processes for per-image policies
``loaders``            the loader a trial config asks for (the decoded split kept per process)
``fingerprint``        what identifies the data files, without reading them
``info``               ``raycifar data info``: counts per split and class, channel statistics
``corruptions``        the 19 CIFAR-10-C corruptions at CIFAR strength (published constants)
``corruption_table``   the published constants, with the source script's line and commit
``corruption_kernels`` their building blocks: blur, zoom, HSV, kernels, plasma fractal
``corrupted_set``      ``raycifar data corrupt``: a corrupted copy of a test split, cached
``corrupted_reader``   a corrupted set (ours or the official CIFAR-10-C) checked and streamed by batch
``array_files``        competition files (pickle, .npy, .npz of image arrays) checked and streamed by batch
=====================  =============================================================

May import: torch, torchvision, numpy, SciPy, OpenCV, Pillow, FFCV (optional), the ground modules
(config, errors).
"""

from typing import Any

# Names are imported from their module on first use, so that importing the package (or its
# torch-free ``catalog``) does not import torch: read-only commands stay instant. Each module
# is imported by an import statement, so that import-linter sees it.
_HOMES = {
    "CATALOG": "catalog", "CIFAR10_CLASSES": "catalog", "DATASETS": "catalog", "class_names": "catalog",
    "num_classes": "catalog",
    "DeviceLoader": "device_loader",
    "ImageSet": "readers", "Source": "readers", "default_data_dir": "readers",
    "detect_source": "readers", "download": "readers", "read_part": "readers",
    "split_image_set": "splits", "stratified_split": "splits", "train_val_split": "splits",
}  # fmt: skip
__all__ = sorted(_HOMES)


def __getattr__(name: str) -> Any:
    home = _HOMES.get(name)
    if home == "catalog":
        from raycifar.data import catalog as module
    elif home == "device_loader":
        from raycifar.data import device_loader as module
    elif home == "readers":
        from raycifar.data import readers as module
    elif home == "splits":
        from raycifar.data import splits as module
    else:
        raise AttributeError(f"module 'raycifar.data' has no attribute {name!r}")
    return getattr(module, name)
