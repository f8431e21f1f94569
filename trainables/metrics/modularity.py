"""Modularity and explicitness. Ridgeway & Mozer 2018, "Learning Deep Disentangled Embeddings with
the F-Statistic Loss", Sec. 3 (disentanglement_lib's ``modularity_explicitness``).

Modularity: from the MI matrix m (codes x factors) on 20-bin discretised codes, per code
1 - (sum_k m^2 - max_k m^2) / (max_k m^2 (K - 1)) (0 when a code has no MI), averaged over codes.
Explicitness: per factor, one-vs-rest ROC-AUC (micro average over classes, as the reference's
MultiLabelBinarizer) of a LogisticRegression on codes standardised with the train mean and std.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import label_binarize
from threadpoolctl import threadpool_limits

from ._checks import check_codes_factors
from ._information import discretise, mutual_information


def modularity_from_mi(mi: np.ndarray) -> float:
    squared = mi**2
    top = squared.max(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        delta = (squared.sum(axis=1) - top) / (top * (squared.shape[1] - 1.0))
    per_code = np.where(top == 0.0, 0.0, 1.0 - delta)
    return float(per_code.mean())


def modularity(codes: np.ndarray, factors: np.ndarray, *, n_bins: int = 20) -> float:
    codes, factors = check_codes_factors(codes, factors)
    return modularity_from_mi(mutual_information(discretise(codes, n_bins), factors))


class ExplicitnessScores(NamedTuple):
    train: float
    test: float


def _auc(labels: np.ndarray, classes: np.ndarray, proba: np.ndarray) -> float:
    # The reference binarises with the classes seen in y (MultiLabelBinarizer): columns must match
    # the classifier's classes, which holds when every class appears in both splits.
    present = np.unique(labels)
    if not np.array_equal(present, classes):
        raise ValueError("explicitness needs every factor class present in train and test")
    onehot = label_binarize(labels, classes=classes)
    if onehot.shape[1] == 1:  # binary factor: label_binarize gives one column
        onehot = np.hstack([1 - onehot, onehot])
    return float(roc_auc_score(onehot, proba))


def explicitness(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
) -> ExplicitnessScores:
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    codes_test, factors_test = check_codes_factors(codes_test, factors_test)
    mean, std = codes_train.mean(axis=0), codes_train.std(axis=0)
    if (std == 0).any():
        raise ValueError("explicitness: a code dimension is constant on the train points")
    x_train, x_test = (codes_train - mean) / std, (codes_test - mean) / std
    train, test = [], []
    # One BLAS thread per fit: on ~10 features, BLAS threads cost more than they give (the five
    # fits at 4,000 points: 2.2 s with two threads on two cores, 0.5 s with one). BLAS only: the
    # limit is process-wide, and fast DCI's histogram trees beside it (OpenMP) keep their threads.
    with threadpool_limits(limits=1, user_api="blas"):
        for k in range(factors_train.shape[1]):
            model = LogisticRegression().fit(x_train, factors_train[:, k])
            train.append(_auc(factors_train[:, k], model.classes_, model.predict_proba(x_train)))
            test.append(_auc(factors_test[:, k], model.classes_, model.predict_proba(x_test)))
    return ExplicitnessScores(float(np.mean(train)), float(np.mean(test)))
