"""Model families: one registry. A family is a ``Trainer`` subclass (``trainables.loop``): its Config,
modules, optimisers and step; the shared loop, evaluation path and saved models do the rest.

Importable without Ray or MLflow; the registry and everything that needs torch load on first use, so
``trainables.metrics`` and ``trainables.data`` users do not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

from ._config import DatasetConfig, TrainConfig

_LAZY = {
    "FAMILIES": "._registry",
    "Family": "._registry",
    "get_family": "._registry",
    "LocalContext": "._context",
    "TrialContext": "._context",
    "NonFiniteLoss": ".loop",
    "Trainer": ".loop",
    "SavedModel": "._saved",
    "load_model": "._saved",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["DatasetConfig", "TrainConfig", *_LAZY]
