"""raycifar: find the best CIFAR classifier under a parameter budget with Ray Tune + Ray Train.

``raycifar.load_model(ENTRY_ID_OR_FOLDER, results_dir=...)`` returns a promoted model in eval
mode; it is imported on first use, so ``import raycifar`` stays light (no torch).
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "load_model"]


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from raycifar.entries.load import load_model

        return load_model
    raise AttributeError(f"module 'raycifar' has no attribute {name!r}")
