"""Disentanglement metrics: one registry. Importable without Ray or MLflow.

Every evaluator takes a ``MetricInput`` (codes and factor classes with an explicit train/test split,
and for the sampling metrics a ``CodeSource``) and returns final metric names -> floats.
Defaults are disentanglement_lib's study settings (Locatello et al. 2019); ``mode="fast"`` swaps
gradient-boosted trees for histogram boosting where a metric uses them.
"""

from __future__ import annotations

import importlib
from typing import Any

from .names import ALIASES, MODES, SAMPLED

# The registry and the evaluators load on first use (``catalog``): they import scikit-learn, SciPy
# and numba (about 1.5 s), which `study status` never needs.
_LAZY = {
    **dict.fromkeys(("CodeSource", "EncodedDataset", "GridCodes", "grid_covered"), "._sources"),
    **dict.fromkeys(
        (
            "METRICS",
            "MetricInput",
            "MetricSpec",
            "describe_estimator",
            "get_metric",
            "register_metric",
            "higher_is_better",
            "metric_directions",
            "run_metrics",
        ),
        ".catalog",
    ),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])


__all__ = ["ALIASES", "MODES", "SAMPLED", *_LAZY]
