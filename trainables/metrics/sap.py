"""SAP score. Kumar et al. 2018, "Variational Inference of Disentangled Latent Concepts", Sec. 3.

Score matrix S[j, k]: discrete factors, test accuracy of a one-code LinearSVC(C=0.01,
class_weight="balanced") (disentanglement_lib's study setting); continuous factors, the squared
correlation of code j and factor k (0 for a constant code). SAP = mean over factors of the gap between
the two highest entries of its column. The SVMs are solved by ``_one_feature_svm``: liblinear's
solver replayed on prefix sums of the sorted code, the same predictions as LinearSVC (tested against
it) without its O(n) pass per solver step; code dims on threads.
"""

from __future__ import annotations

import numpy as np

from ._checks import check_codes_factors
from ._one_feature_svm import accuracy_matrix


def score_matrix_discrete(
    codes_train, factors_train, codes_test, factors_test, n_jobs: int = 1
) -> np.ndarray:
    return accuracy_matrix(codes_train, factors_train, codes_test, factors_test, n_jobs=n_jobs)


def score_matrix_continuous(codes: np.ndarray, factors: np.ndarray) -> np.ndarray:
    """Squared correlation of every (code, factor) pair, vectorised (ddof=1 as np.cov)."""
    codes = codes - codes.mean(axis=0)
    factors = factors - factors.mean(axis=0)
    n = len(codes) - 1
    cov = codes.T @ factors / n  # (D, K)
    var_codes = (codes**2).sum(axis=0) / n
    var_factors = (factors**2).sum(axis=0) / n
    with np.errstate(divide="ignore", invalid="ignore"):
        matrix = cov**2 / np.outer(var_codes, var_factors)
    matrix[var_codes <= 1e-12, :] = 0.0
    return matrix


def top_two_gap(matrix: np.ndarray) -> float:
    ordered = np.sort(matrix, axis=0)
    return float(np.mean(ordered[-1] - ordered[-2]))


def sap(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    continuous: bool = False,
    n_jobs: int = 1,
) -> float:
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    if codes_train.shape[1] < 2:
        raise ValueError("sap needs at least 2 code dimensions")
    if continuous:
        return top_two_gap(score_matrix_continuous(codes_train, factors_train.astype(float)))
    if codes_test is None or factors_test is None:
        raise ValueError("discrete SAP needs test codes and factors")
    codes_test, factors_test = check_codes_factors(codes_test, factors_test)
    return top_two_gap(
        score_matrix_discrete(codes_train, factors_train, codes_test, factors_test, n_jobs)
    )
