"""Disentanglement metrics: one registry. Each entry scores codes against factor classes.

Every evaluator takes (codes_train, factors_train, codes_test, factors_test, rng, n_jobs) and returns a dict of
final metric names (DESIGN section 6) to floats; metrics that need no test split use the train part.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import dci as _dci
from . import mig as _mig

# (codes_train, factors_train, codes_test, factors_test, rng, n_jobs) -> {final name: value}
Evaluator = Callable[..., dict]


@dataclass(frozen=True)
class MetricSpec:
    evaluate: Evaluator
    outputs: tuple[str, ...]
    higher_is_better: bool = True
    bounds: tuple[float, float] = (0.0, 1.0)


def _eval_mig(ctr, ftr, cte, fte, rng, n_jobs=1) -> dict[str, float]:
    return {"mig": _mig.mig(ctr, ftr)}


def _eval_dci(ctr, ftr, cte, fte, rng, n_jobs=1) -> dict[str, float]:
    scores = _dci.dci(ctr, ftr, cte, fte, rng=rng, n_jobs=n_jobs)
    return {
        "dci_disentanglement": scores.disentanglement,
        "dci_completeness": scores.completeness,
        "dci_informativeness": scores.informativeness_test,
        "dci_informativeness_train": scores.informativeness_train,
    }


METRICS: dict[str, MetricSpec] = {
    "mig": MetricSpec(_eval_mig, ("mig",)),
    "dci": MetricSpec(
        _eval_dci,
        (
            "dci_disentanglement",
            "dci_completeness",
            "dci_informativeness",
            "dci_informativeness_train",
        ),
    ),
}


def get_metric(name: str) -> MetricSpec:
    if name not in METRICS:
        raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
    return METRICS[name]


def higher_is_better(output: str) -> bool | None:
    """Direction of a final metric name, or None if no registered metric produces it."""
    for spec in METRICS.values():
        if output in spec.outputs:
            return spec.higher_is_better
    return None


__all__ = ["METRICS", "MetricSpec", "get_metric", "higher_is_better"]
