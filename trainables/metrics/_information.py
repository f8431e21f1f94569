"""Discretisation and mutual information, vectorised over all (code, factor) pairs at once."""

from __future__ import annotations

import numpy as np


def discretise(codes: np.ndarray, n_bins: int = 20) -> np.ndarray:
    """Equal-width histogram bins over each code's range, as disentanglement_lib's
    ``_histogram_discretize``: bin ids 0..n_bins-1, int64 (N, D)."""
    codes = np.asarray(codes, dtype=np.float64)
    out = np.empty(codes.shape, dtype=np.int64)
    for j in range(codes.shape[1]):
        edges = np.histogram_bin_edges(codes[:, j], bins=n_bins)
        # digitize against the left edges, as the reference does: the maximum lands in the last bin.
        out[:, j] = np.digitize(codes[:, j], edges[:-1]) - 1
    return out


def _relabel(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels as 0..n_labels-1 for bincount. Small non-negative integers (bin ids, factor classes)
    are used as they are: unused values only add empty bins, and no sort is needed."""
    if labels.dtype.kind in "iu" and len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low >= 0 and high < 4 * len(labels) + 64:
            return labels.astype(np.intp, copy=False), high + 1
    _, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape), int(inverse.max(initial=-1)) + 1


def entropy(labels: np.ndarray) -> np.ndarray:
    """Plug-in entropy (nats) of each column of a discrete array: (K,)."""
    labels = np.asarray(labels)
    result = np.empty(labels.shape[1])
    for k in range(labels.shape[1]):
        counts = np.bincount(_relabel(labels[:, k])[0])
        p = counts[counts > 0] / len(labels)
        result[k] = -(p * np.log(p)).sum()
    return result


def mutual_information(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Plug-in mutual information (nats) between every column of ``a`` and of ``b``: (Da, Db).

    Equal to sklearn's ``mutual_info_score`` per pair; one joint histogram per pair via bincount.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    n = len(a)
    relabelled_b = [_relabel(b[:, k]) for k in range(b.shape[1])]
    result = np.empty((a.shape[1], b.shape[1]))
    for i in range(a.shape[1]):
        ai, na = _relabel(a[:, i])
        pa = np.bincount(ai, minlength=na) / n
        for k, (bk, nb) in enumerate(relabelled_b):
            joint = np.bincount(ai * nb + bk, minlength=na * nb).reshape(na, nb) / n
            pb = joint.sum(axis=0)
            nz = joint > 0
            result[i, k] = (joint[nz] * np.log(joint[nz] / np.outer(pa, pb)[nz])).sum()
    return np.maximum(result, 0.0)
