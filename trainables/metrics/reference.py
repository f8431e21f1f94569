"""Adapters to run disentanglement_lib 1.5's own metric code on our data, for parity tests and
benchmarks only (never at run time). Its metric modules need no TensorFlow once ``gin.tf`` is an
empty module; `make setup` installs it with ``--no-deps``.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence

import numpy as np


def load_reference() -> types.SimpleNamespace | None:
    """disentanglement_lib's metric modules with the study's gin bindings, or None if absent."""
    sys.modules.setdefault("gin.tf", types.ModuleType("gin.tf"))
    try:
        import gin
        from disentanglement_lib.evaluation.metrics import (
            beta_vae,
            dci,
            factor_vae,
            mig,
            modularity_explicitness,
            sap_score,
            unsupervised_metrics,
            utils,
        )
    except ImportError:
        return None
    gin.clear_config()
    gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
    gin.bind_parameter("discretizer.num_bins", 20)
    gin.bind_parameter("prune_dims.threshold", 0.05)
    return types.SimpleNamespace(
        mig=mig, sap=sap_score, dci=dci, factor_vae=factor_vae, beta_vae=beta_vae,
        modularity=modularity_explicitness, unsupervised=unsupervised_metrics, utils=utils,
    )  # fmt: skip


class GridGroundTruth:
    """disentanglement_lib's GroundTruthData over a factor grid whose observations are row indices
    of a code table (so its ``representation_function`` is ``lambda rows: table[rows]``)."""

    def __init__(self, factor_sizes: Sequence[int]):
        self.sizes = tuple(int(s) for s in factor_sizes)
        self.num_factors = len(self.sizes)
        self.factors_num_values = list(self.sizes)

    def sample_factors(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        return np.stack([random_state.randint(s, size=n) for s in self.sizes], axis=1)

    def sample_observations_from_factors(self, factors: np.ndarray, random_state) -> np.ndarray:
        return np.ravel_multi_index(factors.T, self.sizes)

    def sample_observations(self, n: int, random_state: np.random.RandomState) -> np.ndarray:
        return self.sample_observations_from_factors(self.sample_factors(n, random_state), None)
