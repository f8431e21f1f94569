"""InfoMEC: InfoM (modularity), InfoE (explicitness), InfoC (compactness).

Hsu, Dorrell, Whittington, Wu & Finn 2023, "Disentanglement via Latent Quantization" (NeurIPS),
Sec. 5 and App. (InfoMEC); reused in Hsu et al. 2024, "Tripod". Settings follow the authors'
released evaluation (``disentangle/metrics/infomec.py`` of kylehkhsu/latent_quantization).

All three are built from information normalised by the factor's entropy, so they read the same for
factors with few or many classes:

* NMI[i, j] = I(code_i; factor_j) / H(factor_j). Continuous codes: each code is standardised and
  I is the k-NN estimate of sklearn's ``mutual_info_classif`` (``n_neighbors=10``). Discrete codes:
  plug-in I (``mutual_info_score``). H is always the plug-in entropy of the factor classes (nats).
* Active codes: a code whose range max - min exceeds ``active_threshold`` (1/20) of the largest code
  range; for discrete codes the authors keep every non-constant code (range > 0). Collapsed codes
  carry no information and would otherwise count as perfectly "modular" or dilute compactness.
* InfoM: per active code, the share of its NMI held by its best factor, max_j NMI / sum_j NMI,
  rescaled from [1/K, 1] to [0, 1] (K factors); mean over active codes.
* InfoC: per factor, max_i NMI / sum_i NMI over active codes, rescaled from [1/A, 1] to [0, 1]
  (A active codes); mean over factors.
* InfoE: per factor, an unpenalised multinomial logistic regression (lbfgs, ``max_iter=100``,
  ``class_weight="balanced"``) predicts the factor from all codes (standardised if continuous,
  one-hot if discrete); score 1 - logloss(model) / logloss(null), the null being the same model fit
  on a constant input (intercept only); mean over factors. With balanced classes the null predicts
  uniform probabilities, so its log loss is log(n_classes).

Deviations from the authors' script, all in cases where it returns NaN or is not reproducible:

* A code (row) or factor (column) whose NMI sums to zero scores 0 (no concentration), as does the
  rescaling when there is a single factor (InfoM) or a single active code (InfoC), which is 1 when
  that row/column carries information, else 0. The script divides 0 by 0 there.
* The k-NN estimate jitters the codes; the jitter's seed is drawn from ``rng`` (one seed for every
  code, so a code's NMI does not depend on which other codes are present or their order).
* InfoE is in-sample (fit and scored on the same points) like the script when no test split is
  given; with ``codes_test`` and ``factors_test`` it is fit on train and scored on test.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

import numpy as np
import sklearn
from sklearn.exceptions import ConvergenceWarning
from sklearn.feature_selection import mutual_info_classif
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import log_loss
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from ._checks import check_codes_factors
from ._information import entropy, mutual_information

# No penalty: ``penalty=None`` until sklearn 1.8 deprecated it in favour of ``C=np.inf``.
_SKLEARN = tuple(int(p) for p in sklearn.__version__.split(".")[:2])
_UNPENALISED = {"C": np.inf} if _SKLEARN >= (1, 8) else {"penalty": None}


class InfoMECScores(NamedTuple):
    infom: float
    infoe: float
    infoc: float
    num_active: int
    nmi: np.ndarray
    """Normalised mutual information of every code (active or not) with each factor,
    shape (n_codes, n_factors)."""


def normalised_mutual_information(
    codes: np.ndarray,
    factors: np.ndarray,
    *,
    discrete_codes: bool = False,
    n_neighbors: int = 10,
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """I(code_i; factor_j) / H(factor_j), shape (n_codes, n_factors); see the module docstring."""
    codes, factors = check_codes_factors(codes, factors)
    if discrete_codes:
        mi = mutual_information(codes, factors)
    else:
        seed = int(np.random.default_rng(rng).integers(0, 2**31 - 1))
        scaled = StandardScaler().fit_transform(codes)
        mi = np.empty((codes.shape[1], factors.shape[1]))
        for j in range(factors.shape[1]):
            for i in range(codes.shape[1]):
                mi[i, j] = mutual_info_classif(
                    scaled[:, [i]], factors[:, j], discrete_features=False,
                    n_neighbors=n_neighbors, random_state=seed,
                )[0]  # fmt: skip
    return mi / entropy(factors)


def active_codes(
    codes: np.ndarray, *, discrete_codes: bool = False, active_threshold: float = 0.05
) -> np.ndarray:
    """Boolean mask of codes whose range exceeds ``active_threshold`` of the largest range
    (any non-constant code when discrete)."""
    ranges = np.ptp(np.asarray(codes, dtype=np.float64), axis=0)
    if discrete_codes:
        return ranges > 0
    return ranges > active_threshold * ranges.max(initial=0.0)


def concentration(nmi: np.ndarray) -> float:
    """Mean over rows of (max / sum - 1/n) / (1 - 1/n), n the number of columns.

    Row shares of the best column rescaled so a uniform row scores 0 and a one-hot row 1. Rows with
    no information score 0; with one column an informative row scores 1.
    """
    if nmi.shape[0] == 0:
        return 0.0
    n = nmi.shape[1]
    total = nmi.sum(axis=1)
    share = np.divide(nmi.max(axis=1), total, out=np.zeros_like(total), where=total > 0)
    if n == 1:
        return float(np.mean(total > 0))
    per_row = np.where(total > 0, (share - 1.0 / n) / (1.0 - 1.0 / n), 0.0)
    return float(per_row.mean())


def _design(train: np.ndarray, test: np.ndarray, discrete_codes: bool) -> tuple:
    if discrete_codes:
        encoder = OneHotEncoder(handle_unknown="ignore", sparse_output=False).fit(train)
    else:
        encoder = StandardScaler().fit(train)
    return encoder.transform(train), encoder.transform(test)


def _log_loss(x_train, y_train, x_test, y_test) -> float:
    model = LogisticRegression(
        **_UNPENALISED, class_weight="balanced", solver="lbfgs", max_iter=100, tol=1e-4
    )
    with warnings.catch_warnings():
        # Unpenalised fits of separable classes never converge; the authors stop at 100 steps too.
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", FutureWarning)
        model.fit(x_train, y_train)
    return float(log_loss(y_test, model.predict_proba(x_test), labels=model.classes_))


def explicitness(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    discrete_codes: bool = False,
) -> float:
    """InfoE: mean over factors of 1 - logloss(codes model) / logloss(intercept-only model)."""
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    if (codes_test is None) != (factors_test is None):
        raise ValueError("infomec: give both codes_test and factors_test, or neither")
    if codes_test is None:
        codes_test, factors_test = codes_train, factors_train
    else:
        codes_test, factors_test = np.asarray(codes_test, float), np.asarray(factors_test)
        if codes_test.shape[1] != codes_train.shape[1]:
            raise ValueError("infomec: train and test codes have different widths")
    x_train, x_test = _design(codes_train, codes_test, discrete_codes)
    null_train, null_test = np.zeros((len(x_train), 1)), np.zeros((len(x_test), 1))
    scores = []
    for j in range(factors_train.shape[1]):
        y_train, y_test = factors_train[:, j], factors_test[:, j]
        model = _log_loss(x_train, y_train, x_test, y_test)
        null = _log_loss(null_train, y_train, null_test, y_test)
        scores.append(1.0 - model / null)
    return float(np.mean(scores))


def infomec(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray | None = None,
    factors_test: np.ndarray | None = None,
    *,
    discrete_codes: bool = False,
    n_neighbors: int = 10,
    active_threshold: float = 0.05,
    rng: np.random.Generator | None = None,
) -> InfoMECScores:
    """InfoM, InfoE and InfoC of Hsu et al. 2023 (definitions in the module docstring).

    Args:
        codes_train: Representation, shape (n_samples, n_codes); NMI and activity use these.
        factors_train: Discrete ground-truth factors, shape (n_samples, n_factors).
        codes_test, factors_test: Optional held-out split on which InfoE is scored (fit on train).
            Without them InfoE is in-sample, as in the authors' evaluation.
        discrete_codes: Codes take few values (e.g. quantised latents): plug-in MI and one-hot
            inputs for InfoE instead of k-NN MI and standardised inputs.
        n_neighbors: k of the k-NN MI estimate (continuous codes).
        active_threshold: A continuous code is active if its range exceeds this fraction of the
            largest code range.
        rng: Seeds the k-NN estimate's jitter (continuous codes), for reproducible scores.

    Returns:
        InfoMECScores; infom, infoe, infoc in [0, 1] (InfoE may dip below 0 on a test split),
        higher is better.

    Example:
        >>> import numpy as np
        >>> factors = np.indices((3, 4, 5)).reshape(3, -1).T  # the full factor grid
        >>> s = infomec(factors, factors, discrete_codes=True)
        >>> round(s.infom, 3), round(s.infoc, 3), s.num_active
        (1.0, 1.0, 3)
    """
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    nmi = normalised_mutual_information(
        codes_train, factors_train, discrete_codes=discrete_codes, n_neighbors=n_neighbors, rng=rng
    )
    active = active_codes(
        codes_train, discrete_codes=discrete_codes, active_threshold=active_threshold
    )
    pruned = nmi[active]
    infoe = explicitness(
        codes_train, factors_train, codes_test, factors_test, discrete_codes=discrete_codes
    )
    return InfoMECScores(
        infom=concentration(pruned),
        infoe=infoe,
        infoc=concentration(pruned.T) if pruned.shape[0] else 0.0,
        num_active=int(active.sum()),
        nmi=nmi,
    )
