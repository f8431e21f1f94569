"""Sweep axes and the search: YAML -> what Tune runs. Pure (Ray only in ``tune_domains``).

An axis of ``sweep:`` is a list (a grid axis, as before) or one of

    grid: [a, b]          every value, crossed with everything else
    choice: [a, b]        sampled (Optuna: categorical)
    uniform: [lo, hi]     sampled, float in [lo, hi]
    loguniform: [lo, hi]  sampled, float, log-uniform (lo > 0)
    randint: [lo, hi]     sampled, integer in [lo, hi) (Tune's convention)

Grid axes (``seed`` above all) are crossed with every sampled point: a point means something only
over seeds. ``search.algorithm: grid`` draws ``num_samples`` points of the sampled axes up front
(seeded, so a resume sees the same ones); ``optuna`` asks TPE for each next point and sees the mean
of the point's grid trials. Axes named ``dataset.<key>`` reshape the data: categorical only.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

SAMPLED = ("choice", "uniform", "loguniform", "randint")
KINDS = ("grid", *SAMPLED)
DATA_PREFIX = "dataset."
SAMPLED_KEY = "__sampled__"  # grid algorithm: the pre-drawn points, one grid axis of dicts
GRID_KEY = "__grid__"  # an expanded grid (``StudySpec.grid_combinations``): one axis of dicts


@dataclass(frozen=True)
class Axis:
    name: str
    kind: str
    values: tuple[Any, ...] = ()
    low: float | None = None
    high: float | None = None

    @property
    def categorical(self) -> bool:
        return self.kind in ("grid", "choice")

    @property
    def sampled(self) -> bool:
        return self.kind != "grid"

    def corners(self) -> list[Any]:
        """Values that bound what this axis can produce: each category, or both ends."""
        if self.categorical:
            return list(self.values)
        if self.kind == "randint":
            return [int(self.low), int(self.high) - 1]
        return [self.low, self.high]

    def draw(self, rng: np.random.Generator) -> Any:
        if self.kind == "choice":
            return self.values[int(rng.integers(len(self.values)))]
        if self.kind == "uniform":
            return float(rng.uniform(self.low, self.high))
        if self.kind == "loguniform":
            return float(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        if self.kind == "randint":
            return int(rng.integers(int(self.low), int(self.high)))
        raise ValueError(f"axis {self.name!r} is a grid axis, not sampled")


def parse_axis(name: str, raw: Any) -> Axis:
    """One sweep entry -> an Axis; ValueError with the reason (the caller names the key)."""
    if isinstance(raw, list):
        kind, body = "grid", raw
    elif isinstance(raw, dict) and len(raw) == 1 and next(iter(raw)) in KINDS:
        kind, body = next(iter(raw.items()))
    else:
        raise ValueError(
            f"expected a list of values or one of {{{', '.join(KINDS)}: ...}}, got {raw!r}"
        )
    if not isinstance(body, list) or not body:
        raise ValueError(f"{kind}: needs a non-empty list, got {body!r}")
    if kind in ("grid", "choice"):
        return Axis(name, kind, values=tuple(body))
    if len(body) != 2 or not all(_is_number(v) for v in body):
        raise ValueError(f"{kind}: needs [low, high] numbers, got {body!r}")
    low, high = float(body[0]), float(body[1])
    if not (math.isfinite(low) and math.isfinite(high)) or not low < high:
        raise ValueError(f"{kind}: needs finite low < high, got {body!r}")
    if kind == "loguniform" and low <= 0:
        raise ValueError(f"loguniform: needs 0 < low, got {body!r}")
    if kind == "randint":
        if not all(float(v).is_integer() for v in body):
            raise ValueError(f"randint: needs integer [low, high), got {body!r}")
        return Axis(name, kind, low=int(low), high=int(high))
    return Axis(name, kind, low=low, high=high)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def grid_combinations(axes: list[Axis]) -> list[dict[str, Any]]:
    """Every combination of the grid axes, last axis fastest (Tune's grid order)."""
    return [
        dict(zip([a.name for a in axes], combo, strict=True))
        for combo in itertools.product(*(a.values for a in axes))
    ]


def draw_points(axes: list[Axis], n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` points of the sampled axes from a seeded generator: the same points every time."""
    rng = np.random.default_rng(seed)
    return [{axis.name: axis.draw(rng) for axis in axes} for _ in range(n)]


def tune_domains(axes: list[Axis]) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """Tune search domains for Optuna, and the axes whose categories are sent as indices.

    Optuna's categorical distribution holds only None / bool / int / float / str: a subset given
    as a mapping is chosen by its index and decoded in the trial.
    """
    from ray import tune

    domains: dict[str, Any] = {}
    by_index: dict[str, list[Any]] = {}
    for axis in axes:
        if axis.kind == "choice":
            values = list(axis.values)
            if all(v is None or isinstance(v, bool | int | float | str) for v in values):
                domains[axis.name] = tune.choice(values)
            else:
                by_index[axis.name] = values
                domains[axis.name] = tune.choice(list(range(len(values))))
        elif axis.kind == "uniform":
            domains[axis.name] = tune.uniform(axis.low, axis.high)
        elif axis.kind == "loguniform":
            domains[axis.name] = tune.loguniform(axis.low, axis.high)
        elif axis.kind == "randint":
            domains[axis.name] = tune.randint(int(axis.low), int(axis.high))
    return domains, by_index


def swept_axes(spec: Any) -> list[str]:
    """Axes that can differ between trials (and params a family expansion sets): what
    distinguishes them in tables."""
    axes = [a.name for a in spec.axis_list if a.sampled or len(a.values) > 1]
    return axes + [k for k in spec.expanded_keys if k not in axes]


def to_param_space(spec: Any, offset: int = 0) -> dict[str, Any]:
    """Tune's ``param_space`` for the grid algorithm (Optuna's is built in ``study.launch``):
    the drawn points (past ``offset`` points of earlier launches) as one grid axis of mappings."""
    params: dict[str, Any] = dict(spec.base_params)
    if spec.sampled_axes:
        params[SAMPLED_KEY] = {"grid_search": spec.sampled_points(offset)}
    if spec.expanded:  # not a product of axes: the combinations themselves, in the same order
        params[GRID_KEY] = {"grid_search": spec.grid_combinations()}
        return {"params": params}
    for axis in spec.grid_axes:
        params[axis.name] = {"grid_search": list(axis.values)}
    return {"params": params}
