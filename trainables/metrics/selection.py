"""Picking the best: one rule for every place that ranks runs or trials by a metric.

``study status`` (best trial so far), ``study best`` (top runs), a probe study's ``source`` (best
upstream per group) and the report's pictures (each group's best run) all rank this way: the
direction from the family's declared outputs (``trainables.core.outputs``; callers pass its
``direction``) or the metric registry unless a mode is given, non-finite values never win, and a
tie goes to the item that comes first (the earliest run).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import TypeVar

from ..errors import UserError

T = TypeVar("T")


Direction = Callable[[str], bool | None]


def resolve_mode(metric: str, mode: str | None = None, direction: Direction | None = None) -> str:
    """``"max"`` or ``"min"``: ``mode`` if given, else ``direction(metric)`` (by default the
    metric registry's; a family's outputs: ``Declared.direction``)."""
    if mode is not None:
        if mode not in ("max", "min"):
            raise UserError(f"mode must be 'max' or 'min', got {mode!r}")
        return mode
    higher = (direction or _registry)(metric)
    if higher is None:
        raise UserError(f"is higher {metric!r} better? give mode: max or min")
    return "max" if higher else "min"


def default_mode(metric: str, direction: Direction | None = None) -> str:
    """``"min"`` for a metric whose lower values are better, else ``"max"`` (unknown: ``"max"``)."""
    return "min" if (direction or _registry)(metric) is False else "max"


def _registry(metric: str) -> bool | None:
    from . import higher_is_better  # the registry loads on first use

    return higher_is_better(metric)


def ranked(items: Iterable[T], score: Callable[[T], float | None], mode: str) -> list[T]:
    """The items with a finite score, best first; equal scores keep their order."""
    sign = -1.0 if mode == "max" else 1.0
    finite = [(s, i, item) for i, item in enumerate(items) if _finite(s := score(item))]
    return [item for _, _, item in sorted(finite, key=lambda t: (sign * t[0], t[1]))]


def best(items: Iterable[T], score: Callable[[T], float | None], mode: str) -> T | None:
    """The best item (``ranked``'s first), or None when none has a finite score."""
    order = ranked(items, score, mode)
    return order[0] if order else None


def _finite(value: float | None) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False
