"""DCI-ES explicitness and size (Eastwood et al. 2023): the curve formula by hand, known answers."""

from __future__ import annotations

import numpy as np
import pytest

from trainables.metrics.dci_es import dci_es, explicitness_from_curve, representation_size

CAPS = (1, 2, 4, 8)
SIZES = (3, 4, 5)


def _numpy_explicitness(losses, capacities, baseline):
    # Independent few lines: clip at the baseline, running minimum, trapezoid on log capacity.
    curve = np.minimum.accumulate(np.minimum(np.asarray(losses, float), baseline))
    x = np.log(np.asarray(capacities, float))
    return 1.0 - np.trapezoid(curve, x) / ((x[-1] - x[0]) * baseline)


def test_flat_at_baseline_is_zero_and_zero_loss_is_one():
    assert explicitness_from_curve([0.8] * 4, CAPS, 0.8) == pytest.approx(0.0, abs=1e-12)
    assert explicitness_from_curve([0.0] * 4, CAPS, 0.8) == pytest.approx(1.0)
    # Worse than the constant predictor at every capacity is no better than it: clipped to 0.
    assert explicitness_from_curve([0.95, 0.9, 1.0, 0.85], CAPS, 0.8) == pytest.approx(0.0)
    # Zero loss from the smallest capacity on is 1 whatever the grid.
    assert explicitness_from_curve([0.0] * 7, (1, 2, 4, 8, 16, 32, 64), 0.5) == pytest.approx(1.0)


def test_hand_worked_piecewise_curve():
    # Capacities 1, 2, 4, 8 -> x = log2 c = 0, 1, 2, 3 (the log base cancels in the ratio).
    # Losses 0.8, 0.4, 0.6, 0.2 with baseline 0.8: running minimum 0.8, 0.4, 0.4, 0.2.
    # Trapezoids: (0.8+0.4)/2 + (0.4+0.4)/2 + (0.4+0.2)/2 = 0.6 + 0.4 + 0.3 = 1.3.
    # Rectangle: 3 * 0.8 = 2.4. E = 1 - 1.3/2.4 = 11/24.
    losses = [0.8, 0.4, 0.6, 0.2]
    assert explicitness_from_curve(losses, CAPS, 0.8) == pytest.approx(11 / 24)
    assert explicitness_from_curve(losses, CAPS, 0.8) == pytest.approx(
        _numpy_explicitness(losses, CAPS, 0.8)
    )


def test_rising_curve_takes_its_running_minimum():
    # A probe that overfits at higher capacity does not lower E: the smaller probe is still there.
    rising = [0.1, 0.3, 0.5, 0.7]
    assert explicitness_from_curve(rising, CAPS, 0.8) == pytest.approx(
        explicitness_from_curve([0.1] * 4, CAPS, 0.8)
    )
    assert explicitness_from_curve([0.1] * 4, CAPS, 0.8) == pytest.approx(1 - 0.1 / 0.8)


def test_matches_numpy_on_random_curves(rng):
    for _ in range(20):
        caps = np.cumsum(rng.integers(1, 5, 6))
        losses, baseline = rng.uniform(0, 1, 6), rng.uniform(0.2, 1)
        assert explicitness_from_curve(losses, caps, baseline) == pytest.approx(
            _numpy_explicitness(losses, caps, baseline)
        )


def test_flat_extension_to_a_larger_capacity():
    # x = 0, 1, 2 extended to log2 16 = 4 at the last value 0.2.
    # Area 0.6 + 0.3 + 2 * 0.2 = 1.3, rectangle 4 * 0.8 = 3.2: E = 1 - 1.3/3.2 = 0.59375.
    assert explicitness_from_curve(
        [0.8, 0.4, 0.2], (1, 2, 4), 0.8, max_capacity=16
    ) == pytest.approx(0.59375)
    assert explicitness_from_curve([0.8, 0.4, 0.2], (1, 2, 4), 0.8, max_capacity=4) == (
        explicitness_from_curve([0.8, 0.4, 0.2], (1, 2, 4), 0.8)
    )
    assert explicitness_from_curve([0.2], (4,), 0.8) == pytest.approx(0.75)  # width 0: 1 - l/l_b


def test_curve_input_checks():
    with pytest.raises(ValueError, match="increasing"):
        explicitness_from_curve([0.1, 0.2], (2, 1), 0.5)
    with pytest.raises(ValueError, match="baseline"):
        explicitness_from_curve([0.0, 0.0], (1, 2), 0.0)
    with pytest.raises(ValueError, match="do not match"):
        explicitness_from_curve([0.1], (1, 2), 0.5)


def test_size_formula():
    assert representation_size(10, 5) == 0.5
    assert representation_size(3, 3) == 1.0
    assert representation_size(2, 3) == 1.5
    with pytest.raises(ValueError):
        representation_size(0, 3)


def _data(rng, n=600):
    factors = np.column_stack([rng.integers(0, s, n) for s in SIZES])
    return factors[: n * 2 // 3], factors[n * 2 // 3 :]


def test_codes_equal_to_factors_are_explicit(rng):
    f_train, f_test = _data(rng)
    scores = dci_es(f_train, f_train, f_test, f_test, capacities=CAPS, rng=rng)
    assert scores.curves.shape == (3, len(CAPS))
    assert scores.explicitness > 0.95
    assert (scores.explicitness_per_factor > 0.95).all()
    assert scores.explicitness == pytest.approx(scores.explicitness_per_factor.mean())
    assert scores.size == 1.0
    # Baseline: test error of the train-majority class.
    for k, s in enumerate(SIZES):
        majority = np.argmax(np.bincount(f_train[:, k], minlength=s))
        assert scores.baseline_losses[k] == pytest.approx(np.mean(f_test[:, k] != majority))


def test_noise_codes_are_not_explicit(rng):
    f_train, f_test = _data(rng)
    codes = rng.normal(size=(len(f_train) + len(f_test), 6))
    scores = dci_es(codes[: len(f_train)], f_train, codes[len(f_train) :], f_test,
                    capacities=CAPS, rng=rng)  # fmt: skip
    assert 0.0 <= scores.explicitness < 0.1
    assert scores.size == 0.5


def test_size_follows_shapes_and_rng_reproduces(rng):
    f_train, f_test = _data(rng, n=300)
    codes = f_train[:, :2] + rng.normal(0, 0.1, (len(f_train), 2))
    codes_test = f_test[:, :2] + rng.normal(0, 0.1, (len(f_test), 2))
    a = dci_es(codes, f_train, codes_test, f_test, capacities=(1, 4),
               rng=np.random.default_rng(3))  # fmt: skip
    b = dci_es(codes, f_train, codes_test, f_test, capacities=(1, 4),
               rng=np.random.default_rng(3))  # fmt: skip
    assert a.size == 1.5  # 3 factors in 2 codes
    assert a.explicitness == b.explicitness
    np.testing.assert_array_equal(a.curves, b.curves)
    np.testing.assert_array_equal(a.explicitness_per_factor, b.explicitness_per_factor)
    assert a.explicitness_per_factor[2] < 0.2 < a.explicitness_per_factor[0]  # factor 3 not coded


def test_rejects_bad_input(rng):
    f_train, f_test = _data(rng, n=90)
    codes = f_train.astype(float)
    with pytest.raises(ValueError, match="NaN"):
        bad = codes.copy()
        bad[0, 0] = np.nan
        dci_es(bad, f_train, f_test.astype(float), f_test, capacities=CAPS, rng=rng)
    with pytest.raises(ValueError, match="NaN"):
        bad = f_test.astype(float)
        bad[0, 0] = np.inf
        dci_es(codes, f_train, bad, f_test, capacities=CAPS, rng=rng)
    with pytest.raises(ValueError, match="increasing"):
        dci_es(codes, f_train, f_test.astype(float), f_test, capacities=(4, 2), rng=rng)
