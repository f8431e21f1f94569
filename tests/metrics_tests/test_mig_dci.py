from __future__ import annotations

import numpy as np
import pytest

from trainables.metrics import METRICS, get_metric
from trainables.metrics.dci import completeness, dci, disentanglement
from trainables.metrics.mig import mig


@pytest.fixture
def factors(rng):
    return np.column_stack([rng.integers(0, n, 3000) for n in (3, 6, 10, 8)])


def test_mig_identity_is_one_and_permutation_invariant(factors, rng):
    codes = factors.astype(float) + rng.uniform(0, 0.01, factors.shape)
    assert mig(codes, factors) > 0.95
    assert mig(codes[:, ::-1], factors) == pytest.approx(mig(codes, factors))


def test_mig_duplicated_codes_is_low(factors):
    codes = np.hstack([factors, factors]).astype(float)
    assert mig(codes, factors) < 0.05


def test_mig_scale_invariant_and_rotation_drops(factors, rng):
    codes = factors.astype(float) + rng.uniform(0, 0.5, factors.shape)
    base = mig(codes, factors)
    assert mig(codes * 7.0 + 3.0, factors) == pytest.approx(base)
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert mig(codes @ q, factors) < base - 0.3


def test_mig_noise_codes_near_zero(factors, rng):
    assert mig(rng.normal(size=(3000, 4)), factors) < 0.05


def test_disentanglement_one_code_two_factors_closed_form():
    importance = np.hstack([np.eye(5), np.eye(5)])  # code j explains factors j and j+5
    assert disentanglement(importance) == pytest.approx(1 - np.log(2) / np.log(10))
    assert completeness(importance) == pytest.approx(1.0)


def test_completeness_one_factor_two_codes_closed_form():
    importance = np.vstack([np.eye(4), np.eye(4)])  # (8 codes, 4 factors): two codes per factor
    assert completeness(importance) == pytest.approx(1 - np.log(2) / np.log(8))
    assert disentanglement(importance) == pytest.approx(1.0)


def test_dci_diagonal_and_uniform():
    assert disentanglement(np.eye(4)) == pytest.approx(1.0)
    assert completeness(np.eye(4)) == pytest.approx(1.0)
    assert disentanglement(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-9)
    assert completeness(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-9)
    assert disentanglement(np.zeros((3, 3))) == pytest.approx(0.0, abs=1e-9)


def test_dci_identity_codes(rng):
    f = np.column_stack([rng.integers(0, n, 900) for n in (3, 5, 4)])
    codes = f + rng.normal(0, 0.05, f.shape)
    scores = dci(codes[:600], f[:600], codes[600:], f[600:], rng=rng, n_jobs=1)
    assert scores.disentanglement > 0.9 and scores.completeness > 0.9
    assert scores.informativeness_test > 0.95
    noise = rng.normal(size=f.shape)
    low = dci(noise[:600], f[:600], noise[600:], f[600:], rng=rng, n_jobs=1)
    assert low.informativeness_test < 0.6 and low.disentanglement < scores.disentanglement


def test_dci_parallel_equals_sequential(rng):
    f = np.column_stack([rng.integers(0, n, 400) for n in (3, 4)])
    codes = f + rng.normal(0, 0.5, f.shape)
    one = dci(codes[:300], f[:300], codes[300:], f[300:], rng=np.random.default_rng(1), n_jobs=1)
    two = dci(codes[:300], f[:300], codes[300:], f[300:], rng=np.random.default_rng(1), n_jobs=2)
    assert one == two


@pytest.mark.parametrize("name", sorted(METRICS))
def test_registry_rejects_bad_input(name, rng):
    spec = get_metric(name)
    f = np.column_stack([rng.integers(0, 3, 50), rng.integers(0, 4, 50)])
    codes = rng.normal(size=(50, 3))
    bad = codes.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        spec.evaluate(bad, f, codes, f, rng)
    with pytest.raises(ValueError, match="rows"):
        spec.evaluate(codes[:40], f, codes, f, rng)
    constant = f.copy()
    constant[:, 1] = 2
    with pytest.raises(ValueError, match="constant"):
        spec.evaluate(codes, constant, codes, constant, rng)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_registry_outputs_are_floats_within_bounds(name, rng):
    spec = get_metric(name)
    f = np.column_stack([rng.integers(0, 3, 200), rng.integers(0, 4, 200)])
    codes = f + rng.normal(0, 0.3, f.shape)
    out = spec.evaluate(codes[:150], f[:150], codes[150:], f[150:], rng)
    assert set(out) == set(spec.outputs)
    for value in out.values():
        assert type(value) is float and spec.bounds[0] <= value <= spec.bounds[1]


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'foo'"):
        get_metric("foo")
