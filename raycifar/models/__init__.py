"""models: the network, the registry of named models, exact parameter counts, model files.

============  ===================================================================
module        holds
============  ===================================================================
``registry``  the named models (``resnet18``, ``seresnet56`` ...) and model names (no torch)
``resnet``    the network builder (timm's SE and DropPath)
``budget``    exact parameter and MAC counts; widths fitted to a budget
``files``     ``model.safetensors`` and ``config.json``: save, check, load, rebuild
============  ===================================================================

``from raycifar.models import create_model`` builds a registered model; it is imported on
first use, so that ``raycifar.models.registry`` stays free of torch.

May import: torch, timm, the ground modules.
"""

from __future__ import annotations

from typing import Any

__all__ = ["CifarResNet", "build_model", "create_model"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from raycifar.models import resnet

        return getattr(resnet, name)
    raise AttributeError(f"module 'raycifar.models' has no attribute {name!r}")
