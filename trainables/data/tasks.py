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


def task_targets(
    inputs: np.ndarray, *, n_tasks: int, task_seed: int, cache: bool = True
) -> np.ndarray:
    """Targets of tasks 0..n_tasks-1 for rows of normalised inputs: float64 (N, n_tasks)."""
    inputs = np.ascontiguousarray(inputs, dtype=np.float64)
    columns = []
    inputs_key = cache_key(inputs=inputs) if cache else ""
    for index in range(n_tasks):

        def compute(index: int = index) -> np.ndarray:
            return task_forward(inputs, task_parameters(task_seed, index, inputs.shape[1]))

        if cache:
            key = cache_key(
                inputs=inputs_key, task_seed=task_seed, index=index, version=GENERATOR_VERSION
            )
            columns.append(cached_array("targets", key, compute))
        else:
            columns.append(compute())
    return np.stack(columns, axis=1) if columns else np.empty((len(inputs), 0))
