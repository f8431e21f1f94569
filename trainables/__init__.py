"""Model families, the framework they run on, datasets and metrics.

``trainables.core`` is the framework (trainer interface, loop, evaluation, saved models, the family
registry); ``trainables.families`` the built-in families; ``trainables.data`` and
``trainables.metrics`` the datasets and metrics, each with its registry. A user's family, dataset
or metric joins through ``trainables.registry`` (dotted path, entry point or decorator).

Importable without Ray or MLflow; every name loads on first use, so ``trainables.errors`` costs
nothing and users of ``trainables.metrics`` and ``trainables.data`` do not pay for torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "GROUND_TRUTH": ".core.config",
    "DatasetConfig": ".core.config",
    "TrainConfig": ".core.config",
    "RegistryError": ".registry",
    "FAMILIES": ".core.family",
    "Family": ".core.family",
    "get_family": ".core.family",
    "register_family": ".core.family",
    "load_model": ".core.family",
    "LocalContext": ".core.context",
    "TrialContext": ".core.context",
    "check_metric_names": ".core.context",
    "Output": ".core.outputs",
    "NonFiniteLoss": ".core.trainer",
    "Phase": ".core.trainer",
    "Trainer": ".core.trainer",
    "SavedModel": ".core.saved",
    "prepare_view": ".core.view",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_LAZY)
