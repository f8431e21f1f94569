"""DCI: Disentanglement, Completeness, Informativeness. Eastwood & Williams 2018, Sec. 3.

Reference mode, as disentanglement_lib's ``dci.py``: one GradientBoostingClassifier (sklearn
defaults) per factor on all codes; R[j, k] = |feature importance| of code j for factor k;
informativeness = accuracy. Factors are fitted in parallel (joblib), which leaves the values unchanged.

Fast mode fits the same model with ``_exact_boosting`` (sklearn's algorithm, RNG included, in
numba-compiled code that sorts each code dim once): the same trees and importances to rounding, many
times faster. Its deviation from reference is measured by ``benchmarks/metrics.py`` and tested.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import entropy as scipy_entropy
from sklearn.ensemble import GradientBoostingClassifier

from . import _exact_boosting
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


def _fit_factor(x_train, y_train, x_test, y_test, random_state, mode, presorted):
    if mode == "fast":
        model = _exact_boosting.fit(x_train, y_train, random_state, presorted)
        train_predicted = _exact_boosting.decision_to_labels(model, model.train_raw)
        test_predicted = _exact_boosting.predict(model, x_test)
        importance = model.feature_importances
    else:
        model = GradientBoostingClassifier(random_state=random_state)
        model.fit(x_train, y_train)
        train_predicted, test_predicted = model.predict(x_train), model.predict(x_test)
        importance = model.feature_importances_
    return (
        np.abs(importance),
        float(np.mean(train_predicted == y_train)),
        float(np.mean(test_predicted == y_test)),
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
    # Every factor's trees split the same codes: sort them once.
    presorted = _exact_boosting.sorted_features(codes_train) if mode == "fast" else None
    # Largest first (cost grows with the number of classes: one tree per class per stage), one
    # factor per dispatch, so the long fits do not end up queued behind each other.
    order = np.argsort(
        [-len(np.unique(factors_train[:, k])) for k in range(n_factors)], kind="stable"
    )
    fitted = Parallel(n_jobs=n_jobs, batch_size=1, prefer="threads")(
        delayed(_fit_factor)(
            codes_train,
            factors_train[:, k],
            codes_test,
            factors_test[:, k],
            int(seeds[k]),
            mode,
            presorted,
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
