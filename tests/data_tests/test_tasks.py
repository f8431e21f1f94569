from __future__ import annotations

import numpy as np

from trainables.data import load, subset
from trainables.data.cache import cache_dir
from trainables.data.tasks import (
    HIDDEN_LAYERS,
    HIDDEN_UNITS,
    normalised_inputs,
    task_parameters,
    task_targets,
)


def _inputs(n=300):
    ds = subset(load("dsprites"), {"orientation": 0})
    classes = ds.sample_factors(n, np.random.default_rng(3))
    return normalised_inputs(ds, classes)


def test_inputs_in_unit_range():
    ds = load("dsprites")
    x = normalised_inputs(ds, ds.index_to_classes(np.array([0, ds.num_samples - 1])))
    assert np.allclose(x[0], -1.0) and np.allclose(x[1], 1.0)


def test_architecture_is_4x300_tanh_standard_normal():
    params = task_parameters(0, 0, 5)
    assert [w.shape for w, _ in params] == [(5, 300), (300, 300), (300, 300), (300, 300), (300, 1)]
    assert len(params) == HIDDEN_LAYERS + 1 and HIDDEN_UNITS == 300
    weights = np.concatenate([w.ravel() for w, _ in params] + [b for _, b in params])
    assert abs(weights.mean()) < 0.01 and abs(weights.std() - 1.0) < 0.01


def test_targets_deterministic_and_match_manual_forward():
    x = _inputs()
    a = task_targets(x, n_tasks=3, task_seed=7, cache=False)
    b = task_targets(x, n_tasks=3, task_seed=7, cache=False)
    assert np.array_equal(a, b)
    h = x
    params = task_parameters(7, 2, x.shape[1])
    for w, bias in params[:-1]:
        h = np.tanh(h @ w + bias)
    assert np.allclose(a[:, 2], (h @ params[-1][0] + params[-1][1])[:, 0])


def test_task_i_independent_of_n_tasks_and_seed_matters():
    x = _inputs()
    five = task_targets(x, n_tasks=5, task_seed=0, cache=False)
    ten = task_targets(x, n_tasks=10, task_seed=0, cache=False)
    assert np.array_equal(five, ten[:, :5])
    other = task_targets(x, n_tasks=5, task_seed=1, cache=False)
    assert not np.allclose(five, other)
    assert np.std(five, axis=0).min() > 1.0  # untouched scale: targets are of order tens


def test_cache_hit_returns_same_values_and_writes_files():
    x = _inputs()
    first = task_targets(x, n_tasks=2, task_seed=0)
    files = sorted((cache_dir() / "targets").glob("*.npy"))
    assert len(files) == 2 and not list((cache_dir() / "targets").glob("*.tmp"))
    assert np.array_equal(task_targets(x, n_tasks=2, task_seed=0), first)
    # A corrupt entry is recomputed, not trusted.
    files[0].write_bytes(b"garbage")
    assert np.array_equal(task_targets(x, n_tasks=2, task_seed=0), first)
