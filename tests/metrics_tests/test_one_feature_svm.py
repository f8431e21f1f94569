"""SAP's one-feature SVM solver predicts what sklearn's LinearSVC predicts."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.svm import LinearSVC

from trainables.metrics._one_feature_svm import accuracy_matrix, predict_labels


def _case(kind: str, n_classes: int, n: int, rng: np.random.Generator):
    labels = rng.integers(0, n_classes, n)
    if kind == "informative":
        x = labels / n_classes + rng.normal(0, 0.3, n)
    elif kind == "noise":
        x = rng.normal(size=n)
    elif kind == "ties":  # few distinct values: many points exactly on the same margin
        x = rng.integers(0, 5, n).astype(float)
    elif kind == "imbalanced":  # balanced class weights matter; liblinear leaves "rest" unweighted
        labels = np.minimum(rng.geometric(0.4, n) - 1, n_classes - 1)
        x = labels + rng.normal(0, 1.0, n)
    else:  # "saturated": far-apart clusters, most points outside every margin
        x = np.tanh(labels - n_classes / 2) * 3 + rng.normal(0, 0.1, n)
    return x, labels


@pytest.mark.parametrize("kind", ["informative", "noise", "ties", "imbalanced", "saturated"])
@pytest.mark.parametrize("n_classes", [2, 3, 7, 40])
def test_predictions_equal_linear_svc(kind, n_classes):
    rng = np.random.default_rng(n_classes)
    x, labels = _case(kind, n_classes, 1_500, rng)
    train, test = slice(0, 1_000), slice(1_000, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LinearSVC(C=0.01, class_weight="balanced").fit(x[train, None], labels[train])
    expected = model.predict(x[test, None])
    assert np.array_equal(predict_labels(x[train], labels[train], x[test]), expected)


def test_accuracy_matrix_matches_per_pair_fits_and_threads_agree():
    rng = np.random.default_rng(3)
    factors = np.column_stack([rng.integers(0, k, 900) for k in (2, 5, 12)])
    codes = np.column_stack([factors[:, 1] + rng.normal(0, 0.5, 900), rng.normal(size=900)])
    split = (codes[:600], factors[:600], codes[600:], factors[600:])
    expected = np.empty((2, 3))
    for j in range(2):
        for k in range(3):
            model = LinearSVC(C=0.01, class_weight="balanced").fit(
                codes[:600, j : j + 1], factors[:600, k]
            )
            expected[j, k] = np.mean(model.predict(codes[600:, j : j + 1]) == factors[600:, k])
    assert np.array_equal(accuracy_matrix(*split), expected)
    assert np.array_equal(accuracy_matrix(*split, n_jobs=2), expected)


def test_unseen_test_class_counts_as_wrong_and_one_class_is_an_error():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    factors = np.array([[0], [0], [1], [1]])
    accuracy = accuracy_matrix(x[:, None], factors, np.array([[0.0], [3.0]]), np.array([[0], [2]]))
    assert accuracy[0, 0] == 0.5  # the test point of class 2 cannot be predicted
    with pytest.raises(ValueError, match="factor 0 has one class"):
        accuracy_matrix(x[:, None], np.zeros((4, 1), int), x[:, None], np.zeros((4, 1), int))
