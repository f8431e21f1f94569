"""DCI: Disentanglement, Completeness, Informativeness. Eastwood & Williams 2018, Sec. 3.

Reference mode, as disentanglement_lib's ``dci.py``: one GradientBoostingClassifier (sklearn
defaults) per factor on all codes; R[j, k] = |feature importance| of code j for factor k;
informativeness = accuracy. Work is spread over cores at the level of single trees: every factor's fit
runs at once, and the one tree per class of each boosting stage (independent of each other: they
share the stage's gradients) go to one shared thread pool. Factor-level parallelism alone is capped by
the largest factor (40 of dSprites' 113 classes: at most 1.77x on 2 cores). Each tree gets a copy
of the RandomState positioned where sklearn's sequential loop would hand it over, so the fitted
model is the one ``GradientBoostingClassifier.fit`` returns (tested).

Fast mode fits the same model with ``_exact_boosting`` (sklearn's algorithm, RNG included, in
numba-compiled code that sorts each code dim once): the same trees and importances to rounding, many
times faster, spread over cores the same way (trees of a stage on the shared pool). Its deviation
from reference is measured by ``benchmarks/metrics.py`` and tested.
"""

from __future__ import annotations

import copy
import os
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from scipy.stats import entropy as scipy_entropy
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.ensemble._gb import _update_terminal_regions
from sklearn.tree import DecisionTreeRegressor

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


_RAND_R_MAX = 0x7FFFFFFF  # the bound sklearn's splitter draws its seed under


class _TreeParallelGBC(GradientBoostingClassifier):
    """GradientBoostingClassifier whose per-class trees of each stage are fitted on a thread pool.

    Overrides the private ``_fit_stage`` of the pinned scikit-learn; ``test_exact_boosting``
    checks the fitted trees against the plain estimator's, bit for bit.
    """

    tree_pool: ThreadPoolExecutor | None = None

    def _fit_stage(
        self, i, X, y, raw_predictions, sample_weight, sample_mask, random_state, X_csc=None,
        X_csr=None,
    ):  # fmt: skip
        plain = X_csc is not None or self.subsample < 1.0 or not self._loss.is_multiclass
        if self.tree_pool is None or plain:
            return super()._fit_stage(
                i, X, y, raw_predictions, sample_weight, sample_mask, random_state, X_csc, X_csr
            )
        neg_gradient = -self._loss.gradient(
            y_true=y, raw_prediction=raw_predictions, sample_weight=None
        )
        # Each tree's splitter draws one seed from the shared RandomState: hand tree k a copy
        # taken after k draws, as the sequential loop would.
        states = []
        for _ in range(self.n_trees_per_iteration_):
            states.append(copy.deepcopy(random_state))
            random_state.randint(0, _RAND_R_MAX)

        def fit_tree(k: int) -> DecisionTreeRegressor:
            tree = DecisionTreeRegressor(
                criterion="squared_error",
                max_depth=self.max_depth,
                min_samples_split=self.min_samples_split,
                min_samples_leaf=self.min_samples_leaf,
                min_weight_fraction_leaf=self.min_weight_fraction_leaf,
                min_impurity_decrease=self.min_impurity_decrease,
                max_features=self.max_features,
                max_leaf_nodes=self.max_leaf_nodes,
                random_state=states[k],
                ccp_alpha=self.ccp_alpha,
            )
            return tree.fit(X, neg_gradient[:, k], sample_weight=sample_weight, check_input=False)

        trees = list(self.tree_pool.map(fit_tree, range(self.n_trees_per_iteration_)))
        for k, tree in enumerate(trees):
            _update_terminal_regions(
                self._loss, tree.tree_, X, np.array(y == k, dtype=np.float64), neg_gradient[:, k],
                raw_predictions, sample_weight, sample_mask, learning_rate=self.learning_rate, k=k,
            )  # fmt: skip
            self.estimators_[i, k] = tree
        return raw_predictions


ESTIMATORS = ("boosted_trees", "random_forest", "lasso")


def _fit_factor(
    x_train, y_train, x_test, y_test, random_state, mode, presorted, tree_pool,
    estimator="boosted_trees",
):  # fmt: skip
    if estimator != "boosted_trees":
        return _fit_other(x_train, y_train, x_test, y_test, random_state, estimator)
    if mode == "fast":
        model = _exact_boosting.fit(x_train, y_train, random_state, presorted, tree_pool)
        train_predicted = _exact_boosting.decision_to_labels(model, model.train_raw)
        test_predicted = _exact_boosting.predict(model, x_test)
        importance = model.feature_importances
    else:
        model = _TreeParallelGBC(random_state=random_state)
        model.tree_pool = tree_pool
        model.fit(x_train, y_train)
        train_predicted, test_predicted = model.predict(x_train), model.predict(x_test)
        importance = model.feature_importances_
    return (
        np.abs(importance),
        float(np.mean(train_predicted == y_train)),
        float(np.mean(test_predicted == y_test)),
    )


def _fit_other(x_train, y_train, x_test, y_test, random_state, estimator):
    """The importance estimators of the wider literature: a random forest (100 trees, sklearn
    defaults), or ``lasso``: an L1-penalised multinomial logistic regression (C = 0.1) on
    standardised codes, importance = mean |coefficient| over classes (the classification form of
    Eastwood & Williams' lasso)."""
    if estimator == "random_forest":
        from sklearn.ensemble import RandomForestClassifier

        model = RandomForestClassifier(n_estimators=100, random_state=random_state, n_jobs=1)
        model.fit(x_train, y_train)
        importance = model.feature_importances_
    elif estimator == "lasso":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        model = make_pipeline(
            StandardScaler(),
            LogisticRegression(l1_ratio=1.0, solver="saga", C=0.1, max_iter=2000,
                               random_state=random_state),
        )  # fmt: skip
        model.fit(x_train, y_train)
        importance = np.abs(model[-1].coef_).mean(axis=0)
    else:
        raise ValueError(f"unknown DCI estimator {estimator!r}; known: {list(ESTIMATORS)}")
    train_predicted, test_predicted = model.predict(x_train), model.predict(x_test)
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
    estimator: str = "boosted_trees",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(importance (n_codes, n_factors), train accuracy (K,), test accuracy (K,))."""
    if mode not in ("reference", "fast"):
        raise ValueError(f"unknown DCI mode {mode!r}; use 'reference' or 'fast'")
    n_factors = factors_train.shape[1]
    seeds = rng.integers(0, 2**31 - 1, n_factors)
    # Every factor's trees split the same codes: sort them once.
    fast = mode == "fast" and estimator == "boosted_trees"
    presorted = _exact_boosting.sorted_features(codes_train) if fast else None
    n_workers = os.cpu_count() if n_jobs in (None, -1) else max(1, n_jobs)
    # Largest first (cost grows with the number of classes: one tree per class per stage).
    order = np.argsort(
        [-len(np.unique(factors_train[:, k])) for k in range(n_factors)], kind="stable"
    )
    tree_pool = ThreadPoolExecutor(n_workers) if n_workers > 1 else None
    try:
        # Every factor at once; their trees share the pool's n_workers threads.
        fitted = Parallel(n_jobs=n_factors if tree_pool else 1, batch_size=1, prefer="threads")(
            delayed(_fit_factor)(
                codes_train,
                factors_train[:, k],
                codes_test,
                factors_test[:, k],
                int(seeds[k]),
                mode,
                presorted,
                tree_pool,
                estimator,
            )
            for k in order
        )
    finally:
        if tree_pool:
            tree_pool.shutdown()
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
    estimator: str = "boosted_trees",
) -> DCIScores:
    return dci_with_importance(
        codes_train, factors_train, codes_test, factors_test, rng=rng, n_jobs=n_jobs, mode=mode,
        estimator=estimator,
    )[0]  # fmt: skip


def dci_with_importance(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    rng: np.random.Generator,
    n_jobs: int = -1,
    mode: str = "reference",
    estimator: str = "boosted_trees",
) -> tuple[DCIScores, np.ndarray]:
    """DCI scores and the importance matrix R (n_codes, n_factors) they come from."""
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    codes_test, factors_test = np.asarray(codes_test, float), np.asarray(factors_test)
    if codes_test.shape[1] != codes_train.shape[1] or len(codes_test) != len(factors_test):
        raise ValueError("test codes/factors do not match the train shapes")
    importance, acc_train, acc_test = importance_matrix(
        codes_train, factors_train, codes_test, factors_test, rng=rng, n_jobs=n_jobs, mode=mode,
        estimator=estimator,
    )  # fmt: skip
    scores = DCIScores(
        disentanglement(importance),
        completeness(importance),
        float(acc_train.mean()),
        float(acc_test.mean()),
    )
    return scores, importance
