"""The compiled boosting behind fast DCI grows sklearn's trees, node for node."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sklearn.ensemble import GradientBoostingClassifier

from trainables.metrics import _exact_boosting
from trainables.metrics.dci import _TreeParallelGBC, dci

SIZES = (2, 3, 5)


def _codes(kind: str, factors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    base = factors / (np.array(SIZES) - 1)
    n = len(factors)
    if kind == "continuous":
        return np.hstack([base, rng.normal(size=(n, 2))]) + rng.normal(0, 0.05, (n, 5))
    if kind == "discrete":  # many tied values: split positions must skip ties as sklearn does
        return np.hstack([factors, rng.integers(0, 3, (n, 2))]).astype(float)
    if kind == "constant_dims":  # constant features: the splitter's bookkeeping and RNG draws
        return np.hstack([base + rng.normal(0, 0.05, base.shape), np.zeros((n, 2))])
    raise ValueError(kind)


def _sklearn_trees(model: GradientBoostingClassifier):
    for stage in model.estimators_:
        for tree in stage:
            yield tree.tree_


@pytest.mark.parametrize("kind", ["continuous", "discrete", "constant_dims"])
@pytest.mark.parametrize("factor", [0, 2])  # binary (one tree per stage) and 5 classes
def test_same_trees_importances_and_predictions_as_sklearn(kind, factor):
    rng = np.random.default_rng(4)
    factors = np.stack([rng.integers(0, s, 700) for s in SIZES], axis=1)
    codes = _codes(kind, factors, rng)
    train, test = slice(0, 500), slice(500, None)
    labels = factors[:, factor]
    reference = GradientBoostingClassifier(random_state=11).fit(codes[train], labels[train])
    ours = _exact_boosting.fit(codes[train], labels[train], 11)

    # Node for node, with one exception: a node whose targets are all equal has impurity ~1e-15
    # from rounding, which sklearn may still split (EPSILON is 2e-16), at a position decided by
    # rounding. Such splits move nothing (importance ~1e-15, equal leaf values), so compare the
    # trees that have none.
    n_trees = ours.feature.shape[1]
    identical = 0
    for index, tree in enumerate(_sklearn_trees(reference)):
        stage, k = divmod(index, n_trees)
        count = tree.node_count
        split = tree.feature >= 0
        identical += (
            np.array_equal(np.where(split, tree.feature, -1), ours.feature[stage, k, :count])
            and np.allclose(tree.threshold[split], ours.threshold[stage, k, :count][split])
            and np.allclose(tree.value[~split, 0, 0], ours.value[stage, k, :count][~split])
        )
    assert identical >= 0.85 * reference.estimators_.size
    np.testing.assert_allclose(ours.feature_importances, reference.feature_importances_, atol=1e-3)
    assert np.array_equal(
        _exact_boosting.predict(ours, codes[test]), reference.predict(codes[test])
    )
    train_labels = _exact_boosting.decision_to_labels(ours, ours.train_raw)
    assert np.array_equal(train_labels, reference.predict(codes[train]))


def test_fast_dci_matches_reference_dci_on_varied_codes():
    rng = np.random.default_rng(5)
    factors = np.stack([rng.integers(0, s, 900) for s in SIZES], axis=1)
    for kind in ("continuous", "discrete", "constant_dims"):
        codes = _codes(kind, factors, rng)
        split = (codes[:600], factors[:600], codes[600:], factors[600:])
        reference = dci(*split, rng=np.random.default_rng(2), mode="reference")
        fast = dci(*split, rng=np.random.default_rng(2), mode="fast")
        # Importances agree to ~1e-15 unless two splits tie to rounding; then a tree differs and
        # D moves by up to ~0.002 here (benchmarks/metrics.py measures study-size codes).
        np.testing.assert_allclose(fast, reference, atol=0.005)
        assert fast.informativeness_test == reference.informativeness_test


def test_tree_parallel_reference_fits_sklearns_model_exactly():
    """Reference DCI fits each stage's per-class trees on a thread pool: same model, bit for bit."""
    rng = np.random.default_rng(6)
    factors = np.stack([rng.integers(0, s, 400) for s in SIZES], axis=1)
    codes = _codes("discrete", factors, rng)  # ties: tree RNG matters, so its hand-over is checked
    plain = GradientBoostingClassifier(random_state=9).fit(codes, factors[:, 2])
    with ThreadPoolExecutor(3) as pool:
        threaded = _TreeParallelGBC(random_state=9)
        threaded.tree_pool = pool
        threaded.fit(codes, factors[:, 2])
    assert np.array_equal(threaded.feature_importances_, plain.feature_importances_)
    for ours, theirs in zip(threaded.estimators_.ravel(), plain.estimators_.ravel(), strict=True):
        assert np.array_equal(ours.tree_.feature, theirs.tree_.feature)
        assert np.array_equal(ours.tree_.threshold, theirs.tree_.threshold)
        assert np.array_equal(ours.tree_.value, theirs.tree_.value)


def test_needs_two_classes():
    with pytest.raises(ValueError, match="2 classes"):
        _exact_boosting.fit(np.zeros((5, 2)), np.zeros(5, int), 0)
