"""Our vectorised discretisation and MI against the primitives disentanglement_lib uses."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import mutual_info_score

from trainables.metrics._information import discretise, entropy, mutual_information


def test_discretise_matches_reference_histogram_rule(rng):
    codes = rng.normal(size=(500, 4)) * [1, 10, 0.1, 3]
    ours = discretise(codes, 20)
    for j in range(4):
        # disentanglement_lib: np.digitize(x, np.histogram(x, num_bins)[1][:-1]) (1-based bins)
        reference = np.digitize(codes[:, j], np.histogram(codes[:, j], 20)[1][:-1])
        assert np.array_equal(ours[:, j] + 1, reference)
    assert ours.min() == 0 and ours.max() == 19


def test_mutual_information_equals_sklearn(rng):
    a = rng.integers(0, 7, (400, 3))
    b = np.column_stack([a[:, 0], rng.integers(0, 4, 400), (a[:, 1] + a[:, 2]) % 5])
    ours = mutual_information(a, b)
    for i in range(3):
        for k in range(3):
            assert ours[i, k] == pytest.approx(mutual_info_score(a[:, i], b[:, k]), abs=1e-12)


def test_entropy_equals_self_information(rng):
    a = rng.integers(0, 9, (300, 2))
    assert entropy(a) == pytest.approx([mutual_info_score(a[:, k], a[:, k]) for k in range(2)])
    assert entropy(np.zeros((10, 1), int))[0] == 0.0


@pytest.mark.parametrize("offset", [0, 10**7, -5])  # used as bin ids as they are, or relabelled
def test_mutual_information_does_not_depend_on_label_values(rng, offset):
    a = rng.integers(0, 4, (500, 2))
    b = rng.integers(0, 3, (500, 3)) * 7  # sparse label values: empty bins in between
    expected = np.array([[mutual_info_score(a[:, i], b[:, k]) for k in range(3)] for i in range(2)])
    np.testing.assert_allclose(mutual_information(a + offset, b + offset), expected, atol=1e-12)
    np.testing.assert_allclose(entropy(b + offset), entropy(b // 7), atol=1e-12)
