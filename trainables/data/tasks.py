"""Multi-task regression targets: random MLPs h(z, theta_i) on the true factors.

Section 3.1 of the multi-task paper: task i is an MLP with 4 hidden layers of 300 tanh units and one
output; every weight and bias ~ N(0, 1). ``theta_i`` is drawn from ``(task_seed, i)`` alone, so task 5 is
the same network whether a study uses 5 or 10 tasks. Inputs are the factor *values* rescaled to [-1, 1]
per factor (min -> -1, max -> 1), our documented choice; the paper's code fed raw values.
Targets are computed in float64 and cached per (inputs, task_seed, task index, generator version).
"""

from __future__ import annotations

import numpy as np

from .base import GroundTruthData
from .cache import cache_key, cached_array

GENERATOR_VERSION = 1
HIDDEN_UNITS = 300
HIDDEN_LAYERS = 4
_CHUNK = 65_536  # rows per forward pass: bounds memory at ~150 MB of activations


def normalised_inputs(dataset: GroundTruthData, classes: np.ndarray) -> np.ndarray:
    """Factor values rescaled to [-1, 1] per factor, float64 (N, K)."""
    values = dataset.values(classes)
    lo = np.array([v.min() for v in dataset.factor_values])
    hi = np.array([v.max() for v in dataset.factor_values])
    span = np.where(hi > lo, hi - lo, 1.0)
    return 2.0 * (values - lo) / span - 1.0


def task_parameters(
    task_seed: int, index: int, n_inputs: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Weights and biases of task ``index``: depends on (task_seed, index, n_inputs) only."""
    rng = np.random.default_rng([GENERATOR_VERSION, task_seed, index])
    widths = [n_inputs] + [HIDDEN_UNITS] * HIDDEN_LAYERS + [1]
    return [
        (rng.standard_normal((fan_in, fan_out)), rng.standard_normal(fan_out))
        for fan_in, fan_out in zip(widths[:-1], widths[1:], strict=True)
    ]


def task_forward(inputs: np.ndarray, params: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    out = np.empty(len(inputs))
    for start in range(0, len(inputs), _CHUNK):
        h = inputs[start : start + _CHUNK]
        for weight, bias in params[:-1]:
            h = np.tanh(h @ weight + bias)
        weight, bias = params[-1]
        out[start : start + _CHUNK] = (h @ weight + bias)[:, 0]
    return out


MASKS = ("all", "grow", "independent", "random")


def task_mask(
    kind: str, index: int, n_factors: int, *, task_seed: int = 0, group: int = 2, p: float = 0.5
) -> np.ndarray:
    """Which factors task ``index`` sees: bool (n_factors,).

    all: every factor. grow: the first (index mod K) + 1 factors. independent: disjoint groups of
    ``group`` factors, task i takes group i mod n_groups. random: each factor with probability ``p``
    (seeded by task_seed and index; at least one factor).
    """
    mask = np.zeros(n_factors, dtype=bool)
    if kind == "all":
        mask[:] = True
    elif kind == "grow":
        mask[: index % n_factors + 1] = True
    elif kind == "independent":
        if group < 1:
            raise ValueError(f"task mask group size must be >= 1, got {group}")
        n_groups = -(-n_factors // group)
        start = (index % n_groups) * group
        mask[start : start + group] = True
    elif kind == "random":
        rng = np.random.default_rng([GENERATOR_VERSION, task_seed, index, 7])
        mask = rng.random(n_factors) < p
        if not mask.any():
            mask[rng.integers(n_factors)] = True
    else:
        raise ValueError(f"unknown task mask {kind!r}; known: {list(MASKS)}")
    return mask


def task_targets(
    inputs: np.ndarray,
    *,
    n_tasks: int,
    task_seed: int,
    mask: str = "all",
    mask_group: int = 2,
    mask_p: float = 0.5,
    cache: bool = True,
) -> np.ndarray:
    """Targets of tasks 0..n_tasks-1 for rows of normalised inputs: float64 (N, n_tasks).

    Task i is a network on the factors its mask selects; its weights depend on (task_seed, i, number
    of inputs) only, so task i is unchanged by n_tasks.
    """
    inputs = np.ascontiguousarray(inputs, dtype=np.float64)
    columns = []
    inputs_key = cache_key(inputs=inputs) if cache else ""
    for index in range(n_tasks):
        seen = task_mask(
            mask, index, inputs.shape[1], task_seed=task_seed, group=mask_group, p=mask_p
        )

        def compute(index: int = index, seen: np.ndarray = seen) -> np.ndarray:
            x = np.ascontiguousarray(inputs[:, seen])
            return task_forward(x, task_parameters(task_seed, index, x.shape[1]))

        if cache:
            key = cache_key(
                inputs=inputs_key, task_seed=task_seed, index=index, version=GENERATOR_VERSION,
                mask=seen.tolist(),
            )  # fmt: skip
            columns.append(cached_array("targets", key, compute))
        else:
            columns.append(compute())
    return np.stack(columns, axis=1) if columns else np.empty((len(inputs), 0))
