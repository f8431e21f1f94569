from __future__ import annotations

import numpy as np
import pytest


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Every test gets its own on-disk cache: no state leaks between tests or from the user."""
    monkeypatch.setenv("DISENTANGLE_CACHE", str(tmp_path_factory.mktemp("cache")))


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture
def tmp_mlflow(tmp_path) -> str:
    """A real MLflow SQLite store under tmp_path."""
    return f"sqlite:///{tmp_path / 'mlruns.db'}"
