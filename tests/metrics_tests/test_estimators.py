"""Named estimators: MIG's and DCI's variants from the literature, selectable as options, described
in each run's ``estimator.<metric>`` tag; the defaults stay disentanglement_lib's."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_selection import mutual_info_classif

from trainables.metrics import describe_estimator, get_metric
from trainables.metrics.dci import dci, dci_with_importance
from trainables.metrics.mig import mig, mutual_information_matrix


@pytest.fixture
def case():
    rng = np.random.default_rng(0)
    factors = rng.integers(0, 5, (800, 3))
    codes = np.hstack([factors + rng.normal(0, 0.2, factors.shape), rng.normal(size=(800, 2))])
    return codes, factors


def test_the_default_mig_estimator_is_the_histogram(case):
    codes, factors = case
    assert mig(codes, factors) == mig(codes, factors, estimator="histogram")


def test_quantile_bins_ignore_monotone_transforms_and_histograms_do_not(case):
    codes, factors = case
    warped = np.exp(3 * codes)  # order kept, spacing changed
    assert mig(warped, factors, estimator="quantile") == mig(codes, factors, estimator="quantile")
    assert mig(warped, factors) != mig(codes, factors)


def test_knn_mi_is_scikit_learns(case):
    codes, factors = case
    mi = mutual_information_matrix(codes, factors, estimator="knn")
    expected = mutual_info_classif(codes, factors[:, 1], n_neighbors=3, random_state=0)
    assert np.allclose(mi[:, 1], expected)
    assert mi[0, 0] > 1.0 and mi[3, 0] < 0.05  # informative code vs a noise code (nats)
    assert 0.7 < mig(codes, factors, estimator="knn") <= 1.0


def test_unknown_estimators_are_refused(case):
    codes, factors = case
    with pytest.raises(ValueError, match="unknown MIG estimator"):
        mig(codes, factors, estimator="kde")
    with pytest.raises(ValueError, match="unknown DCI estimator"):
        dci(codes, factors, codes, factors, rng=np.random.default_rng(0), estimator="svm")


@pytest.mark.parametrize("estimator", ["random_forest", "lasso"])
def test_other_dci_estimators_find_the_diagonal(case, estimator):
    codes, factors = case
    scores, importance = dci_with_importance(
        codes[:600], factors[:600], codes[600:], factors[600:],
        rng=np.random.default_rng(0), n_jobs=1, estimator=estimator,
    )  # fmt: skip
    assert importance.shape == (5, 3)
    assert np.array_equal(importance[:3].argmax(axis=0), [0, 1, 2])  # code k holds factor k
    assert scores.disentanglement > 0.6 and scores.informativeness_test > 0.8
    mixed = codes @ np.random.default_rng(1).normal(size=(5, 5))
    mixed_scores = dci(mixed[:600], factors[:600], mixed[600:], factors[600:],
                       rng=np.random.default_rng(0), n_jobs=1, estimator=estimator)  # fmt: skip
    assert mixed_scores.disentanglement < scores.disentanglement


def test_estimators_are_options_and_described():
    from trainables.core.config import TrainConfig

    assert "estimator" in get_metric("mig").options and "estimator" in get_metric("dci").options
    cfg = TrainConfig(metrics=["mig", "dci"], metric_options={"dci": {"estimator": "lasso"}})
    assert cfg.metric_options["dci"]["estimator"] == "lasso"
    assert "20 equal-width bins" in describe_estimator("mig")
    assert "8 equal-frequency" in describe_estimator("mig", {"mig": {"estimator": "quantile", "n_bins": 8}})
    assert "fast mode" in describe_estimator("dci", mode="fast")
    assert "L1 logistic" in describe_estimator("dci", {"dci": {"estimator": "lasso"}}, "fast")


def test_every_run_tags_how_its_scores_were_estimated():
    from study.tracking import TrackingInfo, run_record

    info = TrackingInfo("sqlite:///x.db", "1", "p", "s", "vae", {"name": "dsprites"})
    params = {"metrics": ["mig", "dci", "irs"], "metric_mode": "fast",
              "metric_options": {"mig": {"estimator": "knn"}}}  # fmt: skip
    tags = run_record(info, "t", "trial", params)["tags"]
    assert tags["estimator.mig"].startswith("k-NN")
    assert "gradient-boosted" in tags["estimator.dci"] and "fast mode" in tags["estimator.dci"]
    assert "interventional robustness" in tags["estimator.irs"]
