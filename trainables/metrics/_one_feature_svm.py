"""``LinearSVC(C, class_weight="balanced").fit(x[:, None], y)`` for one feature, many at once.

SAP fits one LinearSVC per (code dim, factor): each a one-feature, squared-hinge, L2-regularised SVM
with an intercept, which sklearn (dual="auto" picks the primal here) hands to liblinear's trust-region
Newton solver (TRON), one-vs-rest over classes. With one feature every quantity TRON needs (objective,
gradient, Hessian) is a sum over the margin-violating points, and for a fixed class those points form
a prefix or suffix of the samples sorted by the feature. So this module sorts each feature once,
keeps prefix sums of 1, x and x^2 over all samples and over each class, finds the violating range by binary search with
liblinear's own floating-point test (``a*x + b < 1``, monotone in x), and replays TRON's iterations
(liblinear as vendored by scikit-learn: trust-region CG, its step-size rules, tolerance
``tol * max(min(pos, neg), 1) / n``) in O(log n) per evaluation instead of O(n).

Also reproduced from liblinear's ``train``: classes in sorted order; for two classes one problem with
class 1 positive, C+ = C w1 and C- = C w0; for more, class i against the rest with C+ = C w_i but
C- = C (liblinear does not weight the rest); prediction argmax of w x + b (two classes: > 0).
Sums run in a different order, so the weights agree to rounding, and a test point within rounding of
a decision boundary could fall on the other side (never seen in the tests).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

_TOL = 1e-4
_MAX_ITER = 1000


@njit(cache=True, nogil=True)
def _violators(xs, a, b, positive):
    """Index range [lo, hi) of sorted ``xs`` whose hinge is active at (a, b), by liblinear's own
    test (``_active``), which is monotone in x for fixed (a, b): bisect where it flips."""
    n = xs.shape[0]
    if n == 0:
        return 0, 0
    first_in = _active(xs[0], a, b, positive)
    if first_in == _active(xs[n - 1], a, b, positive):
        return (0, n) if first_in else (0, 0)
    lo, hi = 0, n - 1  # xs[lo] tests like xs[0], xs[hi] like xs[n - 1]
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _active(xs[mid], a, b, positive) == first_in:
            lo = mid
        else:
            hi = mid
    return (0, hi) if first_in else (hi, n)


@njit(cache=True, nogil=True)
def _active(x, a, b, positive):
    value = a * x + b * 1.0
    z = value if positive else -value
    return 1.0 - z > 0.0


@njit(cache=True, nogil=True)
def _sums(problem, a, b):
    """Sums over the margin violators of C, C x, C x^2, C y, C y x.

    ``problem``: (all samples' sorted x and prefix sums of 1, x, x^2; the positives' same; C+; C-).
    The violating negatives are the violators of the negatives' test among all samples, less the
    positives that pass that test: no per-class copy of the negatives is needed."""
    xs_all, prefix_all, xs_pos, prefix_pos, c_pos, c_neg = problem
    lo, hi = _violators(xs_pos, a, b, True)
    p0 = prefix_pos[hi, 0] - prefix_pos[lo, 0]
    p1 = prefix_pos[hi, 1] - prefix_pos[lo, 1]
    p2 = prefix_pos[hi, 2] - prefix_pos[lo, 2]
    lo, hi = _violators(xs_all, a, b, False)
    n0 = prefix_all[hi, 0] - prefix_all[lo, 0]
    n1 = prefix_all[hi, 1] - prefix_all[lo, 1]
    n2 = prefix_all[hi, 2] - prefix_all[lo, 2]
    lo, hi = _violators(xs_pos, a, b, False)
    n0 -= prefix_pos[hi, 0] - prefix_pos[lo, 0]
    n1 -= prefix_pos[hi, 1] - prefix_pos[lo, 1]
    n2 -= prefix_pos[hi, 2] - prefix_pos[lo, 2]
    p0, p1, p2 = c_pos * p0, c_pos * p1, c_pos * p2
    n0, n1, n2 = c_neg * n0, c_neg * n1, c_neg * n2
    return p0 + n0, p1 + n1, p2 + n2, p0 - n0, p1 - n1


@njit(cache=True, nogil=True)
def _objective(problem, a, b):
    s_c, s_cx, s_cxx, s_cy, s_cyx = _sums(problem, a, b)
    # sum over violators of C (1 - y(a x + b))^2, expanded with y^2 = 1
    loss = s_c - 2.0 * (a * s_cyx + b * s_cy) + a * a * s_cxx + 2.0 * a * b * s_cx + b * b * s_c
    return 0.5 * (a * a + b * b) + loss


@njit(cache=True, nogil=True)
def _gradient_hessian(problem, a, b):
    s_c, s_cx, s_cxx, s_cy, s_cyx = _sums(problem, a, b)
    g0 = a + 2.0 * (a * s_cxx + b * s_cx - s_cyx)
    g1 = b + 2.0 * (a * s_cx + b * s_c - s_cy)
    return g0, g1, 1.0 + 2.0 * s_cxx, 2.0 * s_cx, 1.0 + 2.0 * s_c


@njit(cache=True, nogil=True)
def _tron(problem, eps, max_iter):
    """liblinear's TRON from w = 0 on a 2-variable problem; returns (a, b)."""
    eta0, eta1, eta2 = 1e-4, 0.25, 0.75
    sigma1, sigma2, sigma3 = 0.25, 0.5, 4.0
    w0, w1 = 0.0, 0.0
    f = _objective(problem, w0, w1)
    g0, g1, h00, h01, h11 = _gradient_hessian(problem, w0, w1)
    delta = np.sqrt(g0 * g0 + g1 * g1)
    gnorm1 = delta
    search = delta > eps * gnorm1
    iteration = 1
    while iteration <= max_iter and search:
        # trcg: conjugate gradient on H s = -g inside the trust region
        s0, s1 = 0.0, 0.0
        r0, r1 = -g0, -g1
        d0, d1 = r0, r1
        cgtol = 0.1 * np.sqrt(g0 * g0 + g1 * g1)
        rtr = r0 * r0 + r1 * r1
        while True:
            if np.sqrt(r0 * r0 + r1 * r1) <= cgtol:
                break
            hd0 = h00 * d0 + h01 * d1
            hd1 = h01 * d0 + h11 * d1
            alpha = rtr / (d0 * hd0 + d1 * hd1)
            s0 += alpha * d0
            s1 += alpha * d1
            if np.sqrt(s0 * s0 + s1 * s1) > delta:
                s0 -= alpha * d0
                s1 -= alpha * d1
                std = s0 * d0 + s1 * d1
                sts = s0 * s0 + s1 * s1
                dtd = d0 * d0 + d1 * d1
                dsq = delta * delta
                rad = np.sqrt(std * std + dtd * (dsq - sts))
                if std >= 0:
                    alpha = (dsq - sts) / (std + rad)
                else:
                    alpha = (rad - std) / dtd
                s0 += alpha * d0
                s1 += alpha * d1
                r0 -= alpha * hd0
                r1 -= alpha * hd1
                break
            r0 -= alpha * hd0
            r1 -= alpha * hd1
            rnew = r0 * r0 + r1 * r1
            beta = rnew / rtr
            d0 = beta * d0 + r0
            d1 = beta * d1 + r1
            rtr = rnew
        new0, new1 = w0 + s0, w1 + s1
        gs = g0 * s0 + g1 * s1
        prered = -0.5 * (gs - (s0 * r0 + s1 * r1))
        fnew = _objective(problem, new0, new1)
        actred = f - fnew
        snorm = np.sqrt(s0 * s0 + s1 * s1)
        if iteration == 1:
            delta = min(delta, snorm)
        if fnew - f - gs <= 0:
            alpha = sigma3
        else:
            alpha = max(sigma1, -0.5 * (gs / (fnew - f - gs)))
        if actred < eta0 * prered:
            delta = min(max(alpha, sigma1) * snorm, sigma2 * delta)
        elif actred < eta1 * prered:
            delta = max(sigma1 * delta, min(alpha * snorm, sigma2 * delta))
        elif actred < eta2 * prered:
            delta = max(sigma1 * delta, min(alpha * snorm, sigma3 * delta))
        else:
            delta = max(delta, min(alpha * snorm, sigma3 * delta))
        if actred > eta0 * prered:
            iteration += 1
            w0, w1 = new0, new1
            f = fnew
            g0, g1, h00, h01, h11 = _gradient_hessian(problem, w0, w1)
            if np.sqrt(g0 * g0 + g1 * g1) <= eps * gnorm1:
                break
        if f < -1.0e32:
            break
        if abs(actred) <= 0 and prered <= 0:
            break
        if abs(actred) <= 1.0e-12 * abs(f) and abs(prered) <= 1.0e-12 * abs(f):
            break
    return w0, w1


@njit(cache=True, nogil=True)
def _prefix(xs):
    out = np.zeros((xs.shape[0] + 1, 3))
    for i in range(xs.shape[0]):
        out[i + 1, 0] = out[i, 0] + 1.0
        out[i + 1, 1] = out[i, 1] + xs[i]
        out[i + 1, 2] = out[i, 2] + xs[i] * xs[i]
    return out


@njit(cache=True, nogil=True)
def _fit_predict(xs_all, prefix_all, ys_all, n_classes, class_weight, c, x_test):
    """Labels (0..n_classes-1) predicted for ``x_test`` by the one-feature LinearSVC.

    ``xs_all``: the training feature sorted, ``prefix_all`` its ``_prefix``, ``ys_all`` the labels
    in that order (the sort and its sums are shared by every factor fitted on this code dim)."""
    n = xs_all.shape[0]
    n_problems = 1 if n_classes == 2 else n_classes
    weights = np.empty((n_problems, 2))
    for problem in range(n_problems):
        positive = 1 if n_classes == 2 else problem
        xs_pos = xs_all[ys_all == positive]
        if n_classes == 2:
            c_pos, c_neg = c * class_weight[1], c * class_weight[0]
        else:
            c_pos, c_neg = c * class_weight[positive], c
        problem_data = (xs_all, prefix_all, xs_pos, _prefix(xs_pos), c_pos, c_neg)
        n_pos = xs_pos.shape[0]
        eps = _TOL * max(min(n_pos, n - n_pos), 1) / n
        weights[problem, 0], weights[problem, 1] = _tron(problem_data, eps, _MAX_ITER)
    predicted = np.empty(x_test.shape[0], np.int64)
    for i in range(x_test.shape[0]):
        if n_classes == 2:
            predicted[i] = 1 if weights[0, 0] * x_test[i] + weights[0, 1] > 0 else 0
            continue
        best = 0
        best_value = weights[0, 0] * x_test[i] + weights[0, 1]
        for k in range(1, n_classes):
            value = weights[k, 0] * x_test[i] + weights[k, 1]
            if value > best_value:
                best, best_value = k, value
        predicted[i] = best
    return predicted


@njit(cache=True, nogil=True)
def _accuracies(x_train, x_test, labels_train, labels_test, n_classes, class_weights, c):
    """Test accuracy of every factor's one-feature SVM on one code dim."""
    order = np.argsort(x_train, kind="mergesort")
    xs_all = x_train[order]
    prefix_all = _prefix(xs_all)
    out = np.empty(labels_train.shape[1])
    for k in range(labels_train.shape[1]):
        ys_all = labels_train[:, k][order]
        predicted = _fit_predict(
            xs_all, prefix_all, ys_all, n_classes[k], class_weights[k], c, x_test
        )
        out[k] = np.mean(predicted == labels_test[:, k])
    return out


def encode_labels(factors_train: np.ndarray, factors_test: np.ndarray):
    """Per factor: train labels as 0..K-1 (sorted classes), test labels the same (-1 if unseen),
    class counts and "balanced" class weights n / (K * count)."""
    n_factors = factors_train.shape[1]
    labels_train = np.empty(factors_train.shape, np.int64)
    labels_test = np.empty(factors_test.shape, np.int64)
    n_classes = np.empty(n_factors, np.int64)
    weights = []
    for k in range(n_factors):
        classes, labels_train[:, k] = np.unique(factors_train[:, k], return_inverse=True)
        if len(classes) < 2:
            raise ValueError(f"factor {k} has one class in the training rows: no SVM to fit")
        index = np.clip(np.searchsorted(classes, factors_test[:, k]), 0, len(classes) - 1)
        labels_test[:, k] = np.where(classes[index] == factors_test[:, k], index, -1)
        n_classes[k] = len(classes)
        weights.append(len(factors_train) / (len(classes) * np.bincount(labels_train[:, k])))
    class_weights = np.zeros((n_factors, n_classes.max()))
    for k, w in enumerate(weights):
        class_weights[k, : len(w)] = w
    return labels_train, labels_test, n_classes, class_weights


def accuracy_matrix(codes_train, factors_train, codes_test, factors_test, c=0.01, n_jobs=1):
    """(n_codes, n_factors) test accuracy of ``LinearSVC(C=c, class_weight="balanced")`` fitted on
    each single code dim for each factor, as SAP computes it; code dims on ``n_jobs`` threads."""
    labels = encode_labels(factors_train, factors_test)
    codes_train = np.asarray(codes_train, np.float64)
    codes_test = np.asarray(codes_test, np.float64)

    def column(j):
        return _accuracies(
            np.ascontiguousarray(codes_train[:, j]), np.ascontiguousarray(codes_test[:, j]),
            *labels, c,
        )  # fmt: skip

    n_codes = codes_train.shape[1]
    if n_jobs == 1:
        return np.stack([column(j) for j in range(n_codes)])
    with ThreadPoolExecutor(n_jobs if n_jobs > 0 else None) as pool:
        return np.stack(list(pool.map(column, range(n_codes))))


def predict_labels(
    x_train: np.ndarray, y_train: np.ndarray, x_test: np.ndarray, c: float = 0.01
) -> np.ndarray:
    """What ``LinearSVC(C=c, class_weight="balanced").fit(x_train[:, None], y_train)`` predicts
    for ``x_test[:, None]``."""
    y_train = np.asarray(y_train)
    labels_train, _, n_classes, class_weights = encode_labels(y_train[:, None], y_train[:1, None])
    x_train = np.asarray(x_train, np.float64)
    order = np.argsort(x_train, kind="mergesort")
    predicted = _fit_predict(
        x_train[order], _prefix(x_train[order]), labels_train[order, 0], n_classes[0],
        class_weights[0], c, np.ascontiguousarray(x_test, np.float64),
    )  # fmt: skip
    return np.unique(y_train)[predicted]
