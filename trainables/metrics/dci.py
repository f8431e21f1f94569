"""DCI: Disentanglement, Completeness, Informativeness. Eastwood & Williams 2018, Sec. 3.

Reference mode, as disentanglement_lib's ``dci.py``: one GradientBoostingClassifier (sklearn
defaults) per factor on all codes; R[j, k] = |feature importance| of code j for factor k;
informativeness = accuracy. Factors are fitted in parallel (joblib), which leaves the values unchanged.

Fast mode: HistGradientBoostingClassifier (binned features, same depth 3, 100 iterations, learning
rate 0.1) and R from the summed split gains of its trees. Its deviation from reference is measured by
``benchmarks/metrics.py`` and documented in the README.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import entropy as scipy_entropy
from sklearn.ensemble import GradientBoostingClassifier, HistGradientBoostingClassifier

from ._checks import check_codes_factors


class DCIScores(NamedTuple):
    disentanglement: float
    completeness: float
    informativeness_train: float
    informativeness_test: float


def disentanglement(importance: np.ndarray) -> float:
    """Importance-weighted mean over codes of 1 - H_K(row). importance: (n_codes, n_factors)."""
    per_code = 1.0 - scipy_entropy(importance.T + 1e-11, base=importance.shape[1])
    if importance.sum() == 0.0:  # no code matters: weight codes equally (reference behaviour)
        importance = np.ones_like(importance)
    weights = importance.sum(axis=1) / importance.sum()
    return float(np.sum(per_code * weights))


def completeness(importance: np.ndarray) -> float:
    """Importance-weighted mean over factors of 1 - H_D(column)."""
    per_factor = 1.0 - scipy_entropy(importance + 1e-11, base=importance.shape[0])
    if importance.sum() == 0.0:
        importance = np.ones_like(importance)
    weights = importance.sum(axis=0) / importance.sum()
    return float(np.sum(per_factor * weights))


def _gain_importance(model: HistGradientBoostingClassifier, n_features: int) -> np.ndarray:
    """Split-gain importance summed over every tree, normalised to sum 1 (as GBT's impurity one).

    Reads the fitted predictors' node arrays (``feature_idx``, ``gain``, ``is_leaf``), which sklearn
    has kept stable since HistGradientBoosting was introduced.
    """
    importance = np.zeros(n_features)
    for iteration in model._predictors:
        for tree in iteration:
            nodes = tree.nodes[~tree.nodes["is_leaf"].astype(bool)]
            np.add.at(importance, nodes["feature_idx"], np.maximum(nodes["gain"], 0.0))
    total = importance.sum()
    return importance / total if total > 0 else importance


def _fit_factor(x_train, y_train, x_test, y_test, random_state, mode="reference"):
    if mode == "fast":
        model = HistGradientBoostingClassifier(
            max_depth=3, early_stopping=False, random_state=random_state
        )
        model.fit(x_train, y_train)
        importance = _gain_importance(model, x_train.shape[1])
    else:
        model = GradientBoostingClassifier(random_state=random_state)
        model.fit(x_train, y_train)
        importance = model.feature_importances_
    return (
        np.abs(importance),
        float(np.mean(model.predict(x_train) == y_train)),
        float(np.mean(model.predict(x_test) == y_test)),
    )


def importance_matrix(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    rng: np.random.Generator,
    n_jobs: int = -1,
    mode: str = "reference",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(importance (n_codes, n_factors), train accuracy (K,), test accuracy (K,))."""
    if mode not in ("reference", "fast"):
        raise ValueError(f"unknown DCI mode {mode!r}; use 'reference' or 'fast'")
    n_factors = factors_train.shape[1]
    seeds = rng.integers(0, 2**31 - 1, n_factors)
    # Largest first (cost grows with the number of classes: one tree per class per stage), one
    # factor per dispatch, so the long fits do not end up queued behind each other.
    order = np.argsort(
        [-len(np.unique(factors_train[:, k])) for k in range(n_factors)], kind="stable"
    )
    fitted = Parallel(n_jobs=n_jobs, batch_size=1, prefer="threads")(
        delayed(_fit_factor)(
            codes_train, factors_train[:, k], codes_test, factors_test[:, k], int(seeds[k]), mode
        )
        for k in order
    )
    fits = [None] * n_factors
    for k, fit in zip(order, fitted, strict=True):
        fits[k] = fit
    importance = np.stack([f[0] for f in fits], axis=1)
    return importance, np.array([f[1] for f in fits]), np.array([f[2] for f in fits])


def dci(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    rng: np.random.Generator,
    n_jobs: int = -1,
    mode: str = "reference",
) -> DCIScores:
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    codes_test, factors_test = np.asarray(codes_test, float), np.asarray(factors_test)
    if codes_test.shape[1] != codes_train.shape[1] or len(codes_test) != len(factors_test):
        raise ValueError("test codes/factors do not match the train shapes")
    importance, acc_train, acc_test = importance_matrix(
        codes_train, factors_train, codes_test, factors_test, rng=rng, n_jobs=n_jobs, mode=mode
    )
    return DCIScores(
        disentanglement(importance),
        completeness(importance),
        float(acc_train.mean()),
        float(acc_test.mean()),
    )
