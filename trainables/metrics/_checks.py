"""Input checks shared by all metrics: clear errors instead of silent NaN in a table."""

from __future__ import annotations

import numpy as np

from ..errors import InputError


def check_codes_factors(codes: np.ndarray, factors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    codes = np.asarray(codes, dtype=np.float64)
    factors = np.asarray(factors)
    if codes.ndim != 2 or factors.ndim != 2:
        raise InputError(f"codes and factors must be 2-D, got {codes.shape} and {factors.shape}")
    if len(codes) != len(factors):
        raise InputError(f"codes have {len(codes)} rows but factors have {len(factors)}")
    if len(codes) < 2:
        raise InputError("metrics need at least 2 samples")
    if not np.isfinite(codes).all():
        raise InputError("codes contain NaN or inf")
    if not np.issubdtype(factors.dtype, np.integer):
        raise InputError(f"factors must be integer classes, got dtype {factors.dtype}")
    constant = [k for k in range(factors.shape[1]) if np.all(factors[:, k] == factors[0, k])]
    if constant:
        raise InputError(f"factor column(s) {constant} are constant: drop fixed factors first")
    return codes, factors
