"""FactorVAE score. Kim & Mnih 2018, "Disentangling by Factorising", Sec. 4.

A vote: fix one factor over a batch, normalise each code's batch variance by its global variance, and
take the code with the least. A majority-vote classifier maps code -> factor; the score is its accuracy.
Study defaults (disentanglement_lib): batch 64, 10,000 train and 5,000 eval votes, 10,000 points for the
global variance, dims with std < 0.05 pruned.

Reference quirk reproduced by default: disentanglement_lib takes the argmin *within the active dims*
and then uses it as an index into *all* dims, so when a dim is pruned before others the votes land on
the wrong code. ``corrected=True`` (metric ``factor_vae_corrected``) maps it back to the true code index.
Votes are drawn in one batch: all vote batches are sampled and encoded at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ._sources import CodeSource


class FactorVAEScores(NamedTuple):
    train_accuracy: float
    eval_accuracy: float
    num_active_dims: int


def _votes(
    source: CodeSource,
    n_votes: int,
    batch_size: int,
    rng: np.random.Generator,
    global_variances: np.ndarray,
    active: np.ndarray,
    corrected: bool,
    chunk: int = 512,
) -> np.ndarray:
    votes = np.zeros((source.num_factors, len(global_variances)), dtype=np.int64)
    active_index = np.flatnonzero(active)
    for start in range(0, n_votes, chunk):
        n = min(chunk, n_votes - start)
        fixed = rng.integers(0, source.num_factors, n)  # (n,)
        codes = source.fixed_batches(fixed, batch_size, rng)  # (n, batch, D)
        # Batch variance (ddof=1) from sums, after shifting by each batch's first code for stability.
        centred = codes - codes[:, :1]
        sums = centred.sum(axis=1)
        local = (np.einsum("nbd,nbd->nd", centred, centred) - sums * sums / batch_size) / (
            batch_size - 1
        )
        argmin = np.argmin(local[:, active] / global_variances[active], axis=1)
        code = active_index[argmin] if corrected else argmin
        np.add.at(votes, (fixed, code), 1)
    return votes


def factor_vae(
    source: CodeSource,
    *,
    rng: np.random.Generator,
    batch_size: int = 64,
    num_train: int = 10_000,
    num_eval: int = 5_000,
    num_variance_estimate: int = 10_000,
    prune_threshold: float = 0.05,
    corrected: bool = False,
) -> FactorVAEScores:
    codes = source.codes(source.sample_factors(num_variance_estimate, rng))
    global_variances = codes.var(axis=0, ddof=1)
    active = np.sqrt(global_variances) >= prune_threshold
    if not active.any():  # every code collapsed: the reference scores 0
        return FactorVAEScores(0.0, 0.0, 0)
    args = (batch_size, rng, global_variances, active, corrected)
    train_votes = _votes(source, num_train, *args)
    classifier = np.argmax(train_votes, axis=0)  # code -> factor
    columns = np.arange(train_votes.shape[1])
    train_accuracy = train_votes[classifier, columns].sum() / train_votes.sum()
    eval_votes = _votes(source, num_eval, *args)
    eval_accuracy = eval_votes[classifier, columns].sum() / eval_votes.sum()
    return FactorVAEScores(float(train_accuracy), float(eval_accuracy), int(active.sum()))
