"""Sweep axes -> Tune ``param_space``. Pure (no Ray import): ``{"grid_search": [...]}`` is exactly what
``tune.grid_search`` returns."""

from __future__ import annotations

from typing import Any

from .spec import StudySpec


def to_param_space(spec: StudySpec) -> dict[str, Any]:
    params: dict[str, Any] = dict(spec.base_params)
    for axis, values in spec.axes.items():
        params[axis] = {"grid_search": list(values)}
    return {"params": params}


def swept_axes(spec: StudySpec) -> list[str]:
    """Axes with more than one value: what distinguishes trials in tables."""
    return [axis for axis, values in spec.axes.items() if len(values) > 1]
