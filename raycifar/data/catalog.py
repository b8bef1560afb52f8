"""What raycifar knows about each dataset: class names, label modes, channel statistics and
the names of the official files.

Label indices follow the official files; the official class names are in alphabetical order,
so an image folder whose class folders carry these names maps to the same indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from raycifar.config import DatasetName

DATASETS: tuple[str, ...] = get_args(DatasetName)

CIFAR10_CLASSES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
CIFAR100_FINE_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle",
    "bowl", "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle",
    "chair", "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur",
    "dolphin", "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard",
    "lamp", "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck", "pine_tree",
    "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road", "rocket",
    "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television", "tiger", "tractor",
    "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf", "woman", "worm",
)  # fmt: skip
CIFAR100_COARSE_CLASSES = (
    "aquatic_mammals", "fish", "flowers", "food_containers", "fruit_and_vegetables",
    "household_electrical_devices", "household_furniture", "insects", "large_carnivores",
    "large_man-made_outdoor_things", "large_natural_outdoor_scenes", "large_omnivores_and_herbivores",
    "medium_mammals", "non-insect_invertebrates", "people", "reptiles", "small_mammals", "trees",
    "vehicles_1", "vehicles_2",
)  # fmt: skip


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset: its official folder/archive names and per-channel statistics (0..1 scale)."""

    name: str
    title: str
    python_folder: str
    python_archive: str
    binary_folder: str
    binary_archive: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]


CATALOG = {
    "cifar10": DatasetInfo(
        "cifar10", "CIFAR-10", "cifar-10-batches-py", "cifar-10-python.tar.gz", "cifar-10-batches-bin",
        "cifar-10-binary.tar.gz", (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616),
    ),
    "cifar100": DatasetInfo(
        "cifar100", "CIFAR-100", "cifar-100-python", "cifar-100-python.tar.gz", "cifar-100-binary",
        "cifar-100-binary.tar.gz", (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762),
    ),
}  # fmt: skip


def class_names(dataset: str, label_mode: str = "fine") -> tuple[str, ...]:
    """The class names of ``dataset`` under ``label_mode`` (CIFAR-10 has fine labels only)."""
    if dataset == "cifar10":
        return CIFAR10_CLASSES
    return CIFAR100_COARSE_CLASSES if label_mode == "coarse" else CIFAR100_FINE_CLASSES


def num_classes(dataset: str, label_mode: str = "fine") -> int:
    """10 for CIFAR-10, 100 for CIFAR-100 fine labels, 20 for its coarse labels."""
    return len(class_names(dataset, label_mode))
