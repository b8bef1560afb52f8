"""Data: readers for every CIFAR layout, the train/val split, three loaders, augmentation.

=====================  =============================================================
module                 holds
=====================  =============================================================
``catalog``            class names, label modes, channel statistics, official file names
``readers``            every on-disk layout to one :class:`ImageSet` per part
``splits``             the stratified, seeded train/val split
``augment``            batched augmentation (device loader), per-image pipeline (torchvision)
``device_loader``      the whole split as one tensor on the training device (default)
``ffcv_loader``        ``.beton`` files and FFCV's JIT ``Loader`` (optional extra)
``torchvision_loader`` a ``DataLoader`` with worker processes for per-image policies
``loaders``            the loader a trial config asks for
``info``               ``raycifar data info``: counts per split and class, channel statistics
=====================  =============================================================
"""

from raycifar.data.catalog import (
    CATALOG,
    CIFAR10_CLASSES,
    DATASETS,
    class_names,
    num_classes,
)
from raycifar.data.device_loader import DeviceLoader
from raycifar.data.readers import (
    FORMATS,
    ImageSet,
    Source,
    default_data_dir,
    detect_source,
    download,
    read_part,
)
from raycifar.data.splits import split_image_set, stratified_split, train_val_split

__all__ = [
    "CATALOG",
    "CIFAR10_CLASSES",
    "DATASETS",
    "FORMATS",
    "DeviceLoader",
    "ImageSet",
    "Source",
    "class_names",
    "default_data_dir",
    "detect_source",
    "download",
    "num_classes",
    "read_part",
    "split_image_set",
    "stratified_split",
    "train_val_split",
]
