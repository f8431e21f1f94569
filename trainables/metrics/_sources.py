"""Where sampling metrics (FactorVAE, BetaVAE) get codes for chosen factor classes.

``GridCodes``: a code table with one row per point of the factor grid (official order, last factor
fastest), e.g. a whole dataset encoded once. ``EncodedDataset``: a ground-truth dataset plus an encode
function (images -> codes), rendered and encoded on demand in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np


class CodeSource:
    factor_sizes: tuple[int, ...]

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)

    def codes(self, classes: np.ndarray) -> np.ndarray:  # (N, K) int -> (N, D) float
        raise NotImplementedError


class GridCodes(CodeSource):
    def __init__(self, codes: np.ndarray, factor_sizes: Sequence[int]):
        codes = np.asarray(codes, dtype=np.float64)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        expected = int(np.prod(self.factor_sizes))
        if codes.ndim != 2 or len(codes) != expected:
            raise ValueError(
                f"a code table for factor sizes {self.factor_sizes} needs {expected} rows "
                f"(one per grid point), got shape {codes.shape}"
            )
        if not np.isfinite(codes).all():
            raise ValueError("codes contain NaN or inf")
        self.table = codes

    def codes(self, classes: np.ndarray) -> np.ndarray:
        # ravel_multi_index: C loop, ~5x faster than an integer matmul with the strides.
        return self.table[np.ravel_multi_index(np.asarray(classes).T, self.factor_sizes)]


class EncodedDataset(CodeSource):
    def __init__(self, dataset, encode: Callable[[np.ndarray], np.ndarray], batch_size: int = 512):
        self.dataset = dataset
        self.encode = encode
        self.batch_size = batch_size
        self.factor_sizes = tuple(dataset.factor_sizes)

    def codes(self, classes: np.ndarray) -> np.ndarray:
        out = [
            np.asarray(self.encode(self.dataset.images_float(classes[i : i + self.batch_size])))
            for i in range(0, len(classes), self.batch_size)
        ]
        codes = np.concatenate(out).astype(np.float64)
        if not np.isfinite(codes).all():
            raise ValueError("encoder produced NaN or inf codes")
        return codes


def grid_covered(factors: np.ndarray) -> tuple[int, ...] | None:
    """Factor sizes if the rows of ``factors`` are exactly the full grid in official order."""
    factors = np.asarray(factors)
    if factors.ndim != 2 or not np.issubdtype(factors.dtype, np.integer) or factors.min() < 0:
        return None
    sizes = tuple(int(s) for s in factors.max(axis=0) + 1)
    if len(factors) != int(np.prod(sizes)):
        return None
    grid = np.stack(np.unravel_index(np.arange(len(factors)), sizes), axis=1)
    return sizes if np.array_equal(grid, factors) else None
