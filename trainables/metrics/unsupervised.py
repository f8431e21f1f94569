"""Unsupervised scores of a representation (Locatello et al. 2019, Sec. 4; disentanglement_lib's
``unsupervised_metrics``): no factors needed.

Gaussian total correlation: KL between N(0, C) and the product of its marginals.
Gaussian Wasserstein correlation: squared 2-Wasserstein distance between the same two Gaussians,
2 tr C - 2 tr sqrt(C diag(C)); normalised by tr C. Mutual information score: mean plug-in MI between
distinct pairs of 20-bin discretised code dims.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import scipy.linalg

from ._information import discretise, mutual_information


class UnsupervisedScores(NamedTuple):
    gaussian_total_correlation: float
    gaussian_wasserstein_correlation: float
    gaussian_wasserstein_correlation_norm: float
    mutual_info_score: float


def gaussian_total_correlation(cov: np.ndarray) -> float:
    return float(0.5 * (np.sum(np.log(np.diag(cov))) - np.linalg.slogdet(cov)[1]))


def gaussian_wasserstein_correlation(cov: np.ndarray) -> float:
    root = scipy.linalg.sqrtm(cov * np.diag(cov)[:, None])
    return float(2 * np.trace(cov) - 2 * np.real(np.trace(root)))


def unsupervised(codes: np.ndarray, *, n_bins: int = 20) -> UnsupervisedScores:
    codes = np.asarray(codes, dtype=np.float64)
    if codes.ndim != 2 or codes.shape[1] < 2 or len(codes) < 3:
        raise ValueError(f"unsupervised scores need codes (N >= 3, D >= 2), got {codes.shape}")
    if not np.isfinite(codes).all():
        raise ValueError("codes contain NaN or inf")
    if (codes.std(axis=0) == 0).any():
        raise ValueError("unsupervised scores: a code dimension is constant")
    cov = np.cov(codes, rowvar=False)
    wasserstein = gaussian_wasserstein_correlation(cov)
    discrete = discretise(codes, n_bins)
    mi = mutual_information(discrete, discrete)
    np.fill_diagonal(mi, 0.0)
    d = codes.shape[1]
    return UnsupervisedScores(
        gaussian_total_correlation(cov),
        wasserstein,
        wasserstein / float(np.trace(cov)),
        float(mi.sum() / (d * d - d)),
    )
