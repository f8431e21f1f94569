"""Downstream factor prediction (the usefulness test of Locatello et al. 2019, Sec. 6).

Per factor, a classifier predicts the factor class from the codes, trained on the first 10, 100, 1,000
and 10,000 training points and tested on the test points; reported: mean test accuracy over factors.
Predictors as disentanglement_lib: LogisticRegressionCV(Cs=10, KFold(5)) and a default
GradientBoostingClassifier.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegressionCV
from sklearn.model_selection import KFold

from ._checks import check_codes_factors

PREDICTORS = {
    "logistic_regression": lambda seed: LogisticRegressionCV(Cs=10, cv=KFold(n_splits=5)),
    "boosted_trees": lambda seed: GradientBoostingClassifier(random_state=seed),
}
TRAIN_SIZES = (10, 100, 1_000, 10_000)


def _fit_one(predictor: str, x_train, y_train, x_test, y_test, seed: int) -> float:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # folds with a missing class at size 10
        warnings.simplefilter("ignore", FutureWarning)  # sklearn 1.9 attribute notice
        model = PREDICTORS[predictor](seed)
        try:
            model.fit(x_train, y_train)
        except ValueError:
            # Too few points for the predictor (e.g. one class among 10 samples): the reference
            # raises; score the majority-class prediction instead (documented deviation).
            values, counts = np.unique(y_train, return_counts=True)
            return float(np.mean(y_test == values[np.argmax(counts)]))
    return float(np.mean(model.predict(x_test) == y_test))


def downstream(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    predictor: str,
    rng: np.random.Generator,
    train_sizes: Sequence[int] = TRAIN_SIZES,
    n_jobs: int = 1,
) -> dict[int, float]:
    """Mean test accuracy over factors for each train size available in ``codes_train``."""
    if predictor not in PREDICTORS:
        raise ValueError(f"unknown predictor {predictor!r}; known: {sorted(PREDICTORS)}")
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    codes_test, factors_test = np.asarray(codes_test, float), np.asarray(factors_test)
    sizes = [s for s in train_sizes if s <= len(codes_train)]
    jobs = [(s, k) for s in sizes for k in range(factors_train.shape[1])]
    seeds = rng.integers(0, 2**31 - 1, len(jobs))
    accuracies = Parallel(n_jobs=n_jobs)(
        delayed(_fit_one)(
            predictor, codes_train[:s], factors_train[:s, k], codes_test, factors_test[:, k], seed
        )
        for (s, k), seed in zip(jobs, seeds, strict=True)
    )
    result: dict[int, list[float]] = {}
    for (s, _), accuracy in zip(jobs, accuracies, strict=True):
        result.setdefault(s, []).append(accuracy)
    return {s: float(np.mean(v)) for s, v in result.items()}
