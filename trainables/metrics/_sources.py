"""Where sampling metrics (FactorVAE, BetaVAE) get codes for chosen factor classes.

``GridCodes``: a code table with one row per point of the factor grid (official order, last factor
fastest), e.g. a whole dataset encoded once. ``EncodedDataset``: a ground-truth dataset plus an encode
function (images -> codes), rendered and encoded on demand in batches.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from ..data.base import grid_strides
from ..errors import InputError


class CodeSource:
    factor_sizes: tuple[int, ...]

    @property
    def num_factors(self) -> int:
        return len(self.factor_sizes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        return np.stack([rng.integers(0, s, n) for s in self.factor_sizes], axis=1)

    def codes(self, classes: np.ndarray) -> np.ndarray:  # (N, K) int -> (N, D) float
        raise NotImplementedError

    def fixed_batches(
        self, fixed: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> np.ndarray:
        """Codes of one batch per entry of ``fixed``: uniform grid points that all share the first
        point's class of factor ``fixed[i]`` (FactorVAE votes). Returns (n, batch_size, D)."""
        n = len(fixed)
        classes = self.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        rows = np.arange(n)
        classes[rows, :, fixed] = classes[rows, 0, fixed][:, None]
        return self.codes(classes.reshape(n * batch_size, -1)).reshape(n, batch_size, -1)

    def paired_batches(
        self, shared: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Two batches per entry of ``shared`` whose i-th points share the class of factor
        ``shared[i]`` and are otherwise independent (BetaVAE points). Returns 2 x (n, batch_size, D)."""
        n = len(shared)
        first = self.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        second = self.sample_factors(n * batch_size, rng).reshape(n, batch_size, -1)
        rows = np.arange(n)
        second[rows, :, shared] = first[rows, :, shared]
        return (
            self.codes(first.reshape(n * batch_size, -1)).reshape(n, batch_size, -1),
            self.codes(second.reshape(n * batch_size, -1)).reshape(n, batch_size, -1),
        )


class GridCodes(CodeSource):
    def __init__(self, codes: np.ndarray, factor_sizes: Sequence[int]):
        codes = np.asarray(codes, dtype=np.float64)
        self.factor_sizes = tuple(int(s) for s in factor_sizes)
        expected = int(np.prod(self.factor_sizes))
        if codes.ndim != 2 or len(codes) != expected:
            raise InputError(
                f"a code table for factor sizes {self.factor_sizes} needs {expected} rows "
                f"(one per grid point), got shape {codes.shape}"
            )
        if not np.isfinite(codes).all():
            raise InputError("codes contain NaN or inf")
        self.table = codes
        self._sizes = np.asarray(self.factor_sizes, dtype=np.int64)
        self._strides = grid_strides(self.factor_sizes)

    def codes(self, classes: np.ndarray) -> np.ndarray:
        # ravel_multi_index: C loop, ~5x faster than an integer matmul with the strides.
        return self.table[np.ravel_multi_index(np.asarray(classes).T, self.factor_sizes)]

    # Grid fast paths: sample flat row indices and move them along one factor's stride, instead of
    # sampling K class columns; uniform over the grid exactly as the class-space versions.
    def _align(self, index: np.ndarray, to: np.ndarray, factor: np.ndarray) -> np.ndarray:
        stride = self._strides[factor][:, None]
        size = self._sizes[factor][:, None]
        return index + ((to // stride) % size - (index // stride) % size) * stride

    def fixed_batches(
        self, fixed: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> np.ndarray:
        index = rng.integers(0, len(self.table), (len(fixed), batch_size))
        index = self._align(index, index[:, :1], fixed)
        return np.take(self.table, index, axis=0)

    def paired_batches(
        self, shared: np.ndarray, batch_size: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        first = rng.integers(0, len(self.table), (len(shared), batch_size))
        second = self._align(rng.integers(0, len(self.table), first.shape), first, shared)
        return np.take(self.table, first, axis=0), np.take(self.table, second, axis=0)


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
