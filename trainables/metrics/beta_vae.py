"""BetaVAE score. Higgins et al. 2017, "beta-VAE", Sec. 3.

A training point: two batches sharing one factor value per pair; feature = mean |z1 - z2| over the
batch, label = the shared factor. Score = accuracy of a LogisticRegression (sklearn defaults, as
disentanglement_lib's ``beta_vae_sklearn``). Study defaults: batch 64, 10,000 train / 5,000 eval points.
All pairs are sampled and encoded in batches, not one point at a time.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from sklearn.linear_model import LogisticRegression

from ._sources import CodeSource


class BetaVAEScores(NamedTuple):
    train_accuracy: float
    eval_accuracy: float


def _points(
    source: CodeSource, n_points: int, batch_size: int, rng: np.random.Generator, chunk: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    features, labels = [], []
    for start in range(0, n_points, chunk):
        n = min(chunk, n_points - start)
        index = rng.integers(0, source.num_factors, n)
        z1, z2 = source.paired_batches(index, batch_size, rng)  # (n, batch, D) each
        np.subtract(z1, z2, out=z1)  # in place: these batches are ours, and large
        features.append(np.abs(z1, out=z1).mean(axis=1))
        labels.append(index)
    return np.concatenate(features), np.concatenate(labels)


def beta_vae(
    source: CodeSource,
    *,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
) -> BetaVAEScores:
    x_train, y_train = _points(source, num_train, batch_size, rng)
    model = LogisticRegression(random_state=int(rng.integers(2**31 - 1)))
    model.fit(x_train, y_train)
    x_eval, y_eval = _points(source, num_eval, batch_size, rng)
    return BetaVAEScores(
        float(np.mean(model.predict(x_train) == y_train)),
        float(np.mean(model.predict(x_eval) == y_eval)),
    )
