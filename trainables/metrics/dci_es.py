"""DCI-ES: Explicitness (E) and Size (S). Eastwood et al. 2023, "DCI-ES: An Extended Disentanglement
Framework with Connections to Identifiability" (ICLR), Sec. 4 (the two new scores; D, C and I stay
in ``dci.py``).

Why: DCI's informativeness asks *whether* a factor can be read out of the codes by one fixed probe;
DCI-ES asks *how easily*: how much probe capacity is needed before the loss gets low. A factor
stored in one code dimension is read with a stump; one spread nonlinearly over many dimensions needs
many trees. E summarises the whole loss-capacity curve instead of one point of it.

Explicitness, per factor j (the paper's loss-capacity curve and its area):

* Probes: gradient-boosted trees (``HistGradientBoostingClassifier``, sklearn defaults: learning
  rate 0.1, 31 leaves per tree, no early stopping), capacity = number of boosting iterations.
  Boosting is sequential, so one fit with ``max(capacities)`` iterations read through
  ``staged_predict`` gives exactly the probes of every smaller capacity: one fit per factor. (The
  authors' code, andreinicolicioiu/DCI-ES, sweeps MLPs by parameter count on a log axis, random
  Fourier features, and random forests by depth on a linear axis; boosted trees by count are the
  cheap CPU member of the tree family, one fit for the whole sweep.)
* Loss ell(kappa): the test error rate 1 - accuracy, as the authors' code for categorical factors
  (its baseline losses are 1 - 1/K for uniform K-class factors). Bounded and meaningful after a
  single boosting step; cross-entropy after one shrunken step stays near the prior for any codes.
* Baseline ell_b: the test error of the best constant predictor fitted on the train split (the
  train-majority class), the "probe of capacity 0". Lowest achievable loss ell* = 0 (noise-free
  factor classes; the authors' code: "we assume l* = 0").
* Curve: ell is clipped at ell_b (the constant predictor is available to every probe class, so the
  best probe of capacity <= kappa never does worse) and replaced by its running minimum (best probe
  up to kappa), then extended flat to ``max_capacity`` if that is larger than the grid's last point.
* Axis: x = log(capacity). For the default doubling grid (1, 2, ..., 64) that is the grid index;
  the log base cancels in the ratio below.
* Area: trapezoid rule over x, between ell and ell* = 0 (as the authors' code).

Normalisation (derivation). Write L = x_max - x_min and AUC = integral of the clipped running-min
curve over [x_min, x_max]. Since 0 <= curve <= ell_b pointwise, 0 <= AUC <= L * ell_b, with
equality at the top iff the curve equals ell_b everywhere (no probe beats the baseline) and at the
bottom iff it is 0 everywhere (zero loss already at the smallest capacity). The affine map sending
those two extremes to 0 and 1 is

    E_j = 1 - AUC / (L * ell_b),      E_j in [0, 1].

The issue's "1 - 2 AUC / ..." is this with the rectangle replaced by a triangle of half its area
(the authors' code computes 1 - 2 AUC / (L * ell_b)); that sends a curve flat at the baseline to
-1, not 0, so it is the normalisation for a different reference curve (a straight line from
(x_min, ell_b) down to (x_max, 0)), not the one asked for here. E_ours = (1 + E_2) / 2. The authors'
code also subtracts the curve's own minimum instead of ell* = 0, which would give a flat noise curve
E = 1; we do not. A single capacity (L = 0) gives the limit 1 - ell / ell_b. Reported E: the mean
over factors of E_j.

Size (the paper's S, Sec. 4): representation size relative to the ground truth,
S = d_z / d_c = number of factors / number of code dimensions. S = 1 for a code as large as the
factors, S < 1 for a larger code (S = 1/2 for 10 codes of 5 factors), S > 1 when the code is too
small to hold each factor in its own dimension. It depends on shapes only: the paper pairs it with E
because larger codes can be more explicit (E up) at the cost of size (S down).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
from joblib import Parallel, delayed
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from ._checks import check_codes_factors

CAPACITIES = (1, 2, 4, 8, 16, 32, 64)


class DCIESScores(NamedTuple):
    explicitness: float
    explicitness_per_factor: np.ndarray
    """(num_factors,) E_j."""
    size: float
    curves: np.ndarray
    """(num_factors, num_capacities) raw test error rates (before clipping and running minimum)."""
    baseline_losses: np.ndarray
    """(num_factors,) test error rate of the train-majority constant predictor."""


def explicitness_from_curve(
    losses: Sequence[float],
    capacities: Sequence[float],
    baseline: float,
    *,
    max_capacity: float | None = None,
) -> float:
    """E = 1 - AUC / ((x_max - x_min) * baseline) on x = log(capacity); see the module docstring.

    losses: test loss at each capacity (any loss with ell* = 0: error rate here). The curve is
    clipped at ``baseline``, replaced by its running minimum and extended flat to ``max_capacity``.
    """
    losses = np.asarray(losses, dtype=np.float64)
    capacities = np.asarray(capacities, dtype=np.float64)
    if losses.shape != capacities.shape or losses.ndim != 1 or len(losses) == 0:
        raise ValueError(f"losses {losses.shape} and capacities {capacities.shape} do not match")
    if not (capacities > 0).all() or not (np.diff(capacities) > 0).all():
        raise ValueError("capacities must be positive and strictly increasing")
    if not np.isfinite(losses).all() or (losses < 0).any():
        raise ValueError("losses must be finite and non-negative")
    if not baseline > 0:
        raise ValueError(f"baseline loss must be positive, got {baseline}")
    curve = np.minimum.accumulate(np.minimum(losses, baseline))
    x = np.log(capacities)
    if max_capacity is not None and np.log(max_capacity) > x[-1]:
        x, curve = np.append(x, np.log(max_capacity)), np.append(curve, curve[-1])
    width = x[-1] - x[0]
    if width == 0.0:
        return float(1.0 - curve[0] / baseline)
    area = float(np.sum(np.diff(x) * (curve[1:] + curve[:-1]) / 2.0))
    return float(1.0 - area / (width * baseline))


def representation_size(num_codes: int, num_factors: int) -> float:
    """S = d_z / d_c: factors per code dimension (Eastwood et al. 2023, Sec. 4)."""
    if num_codes < 1 or num_factors < 1:
        raise ValueError("size needs at least one code dimension and one factor")
    return num_factors / num_codes


def _factor_curve(x_train, y_train, x_test, y_test, capacities, seed):
    values, counts = np.unique(y_train, return_counts=True)
    baseline = float(np.mean(y_test != values[np.argmax(counts)]))
    model = HistGradientBoostingClassifier(
        max_iter=int(capacities[-1]), early_stopping=False, random_state=seed
    ).fit(x_train, y_train)
    wanted = {int(c): i for i, c in enumerate(capacities)}
    losses = np.empty(len(capacities))
    last = None
    for stage, predicted in enumerate(model.staged_predict(x_test), start=1):
        last = float(np.mean(predicted != y_test))
        if stage in wanted:
            losses[wanted[stage]] = last
    # Boosting that stopped before a capacity (n_iter_ < c) is the same model at every larger c.
    losses[[i for c, i in wanted.items() if c > model.n_iter_]] = last
    return losses, baseline


def dci_es(
    codes_train: np.ndarray,
    factors_train: np.ndarray,
    codes_test: np.ndarray,
    factors_test: np.ndarray,
    *,
    capacities: tuple[int, ...] = CAPACITIES,
    rng: np.random.Generator,
    n_jobs: int = 1,
) -> DCIESScores:
    """Explicitness (mean and per factor) from boosted-tree loss-capacity curves, and Size.

    capacities: numbers of boosting iterations, positive and strictly increasing. Cost: one boosted
    fit of max(capacities) iterations (one tree per class per iteration) per factor.
    n_jobs: factors fitted at once, in processes (each fit on one OpenMP thread).
    """
    codes_train, factors_train = check_codes_factors(codes_train, factors_train)
    codes_test, factors_test = np.asarray(codes_test, float), np.asarray(factors_test)
    if codes_test.ndim != 2 or codes_test.shape[1] != codes_train.shape[1]:
        raise ValueError("test codes do not match the train shapes")
    if factors_test.ndim != 2 or factors_test.shape[1] != factors_train.shape[1]:
        raise ValueError("test factors do not match the train shapes")
    if len(codes_test) != len(factors_test):
        raise ValueError(f"test codes have {len(codes_test)} rows but factors {len(factors_test)}")
    if not np.isfinite(codes_test).all():
        raise ValueError("test codes contain NaN or inf")
    capacities = tuple(int(c) for c in capacities)
    if not capacities or capacities[0] < 1 or (np.diff(capacities) <= 0).any():
        raise ValueError(f"capacities must be positive and strictly increasing, got {capacities}")
    n_factors = factors_train.shape[1]
    seeds = rng.integers(0, 2**31 - 1, n_factors)
    n_workers = os.cpu_count() if n_jobs in (None, -1) else max(1, n_jobs)
    # Largest first (cost grows with the classes: one tree per class per iteration).
    order = np.argsort(
        [-len(np.unique(factors_train[:, k])) for k in range(n_factors)], kind="stable"
    )
    # Processes, not threads: the tree grower is Python between its compiled loops (threads queue on
    # the GIL), and its OpenMP threads are held to 1 per fit (loky does so in its workers), so n_jobs
    # is the number of cores used.
    with threadpool_limits(limits=1, user_api="openmp"):
        fitted = Parallel(n_jobs=min(n_workers, n_factors), batch_size=1)(
            delayed(_factor_curve)(
                codes_train, factors_train[:, k], codes_test, factors_test[:, k], capacities, seed
            )
            for k, seed in zip(order, seeds[order].tolist(), strict=True)
        )
    fitted = [fit for _, fit in sorted(zip(order, fitted, strict=True), key=lambda p: p[0])]
    curves = np.stack([losses for losses, _ in fitted])
    baselines = np.array([baseline for _, baseline in fitted])
    per_factor = np.array(
        [explicitness_from_curve(c, capacities, b) for c, b in zip(curves, baselines, strict=True)]
    )
    return DCIESScores(
        explicitness=float(per_factor.mean()),
        explicitness_per_factor=per_factor,
        size=representation_size(codes_train.shape[1], n_factors),
        curves=curves,
        baseline_losses=baselines,
    )
