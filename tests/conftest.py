"""Shared fixtures: small CIFAR-10 datasets written in the official byte layout."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from cifar_files import write_cifar10  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SHARED_CIFAR10 = REPO.parent / "shared" / "data" / "cifar10"
TINY_SPACE = Path(__file__).parent / "tiny_space.yaml"


@pytest.fixture(scope="session")
def cifar_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two training batches of 300 images and a 200-image test batch, learnable."""
    return write_cifar10(tmp_path_factory.mktemp("cifar"), train_batches=2, per_batch=300, test=200)
