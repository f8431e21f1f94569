"""IRS: parity with disentanglement_lib 1.5, answers worked by hand, and invariances.

The reference's ``scalable_disentanglement_score(gen_factors, latents, diff_quantile)`` takes
(num_points, num_factors) and (num_points, num_codes), our orientation; ``compute_irs`` and
``_drop_constant_dims`` work on its usual transposed (num_codes, num_points) arrays.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from trainables.metrics.irs import irs
from trainables.metrics.reference import GridGroundTruth, load_reference

sys.modules.setdefault("gin.tf", types.ModuleType("gin.tf"))
REF = load_reference()  # binds the study's discretiser (20 histogram bins) used by compute_irs
if REF is None:  # `make setup` installs it; a bare `pip install -e .[dev]` does not
    raise ImportError("IRS parity tests need disentanglement-lib 1.5: run `make setup`")
from disentanglement_lib.evaluation.metrics import irs as ref_irs  # noqa: E402

SIZES = (3, 4, 6)


def _case(seed, n=600, mixing=0.3):
    rng = np.random.default_rng(seed)
    factors = np.column_stack([rng.integers(0, s, n) for s in SIZES])
    base = factors / np.array(SIZES)
    mix = np.eye(3) + mixing * rng.normal(size=(3, 3))
    codes = np.hstack([base @ mix, rng.normal(size=(n, 2))]) + rng.normal(0, 0.05, (n, 5))
    return codes, factors


def _assert_matches(ours, expected, active=slice(None)):
    assert ours.avg_score == pytest.approx(expected["avg_score"], abs=1e-12)
    np.testing.assert_allclose(
        ours.disentanglement_scores[active], expected["disentanglement_scores"], rtol=0, atol=1e-12
    )
    np.testing.assert_array_equal(ours.parents[active], expected["parents"])
    np.testing.assert_allclose(ours.irs_matrix[active], expected["IRS_matrix"], rtol=0, atol=1e-12)


@pytest.mark.parametrize("diff_quantile", [0.99, 1.0, 0.5])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_reference(seed, diff_quantile):
    codes, factors = _case(seed, mixing=0.3 + 0.3 * seed)
    expected = ref_irs.scalable_disentanglement_score(factors, codes, diff_quantile)
    ours = irs(codes, factors, diff_quantile=diff_quantile, factor_bins=None)
    _assert_matches(ours, expected)
    assert ours.num_active_dims == 5
    # Factors with at most 20 classes keep them all under the study's 20 bins: same answer.
    assert irs(codes, factors, diff_quantile=diff_quantile).avg_score == ours.avg_score


def test_constant_code_is_dropped_as_the_reference_does():
    codes, factors = _case(3)
    codes[:, 1] = 0.25
    active = np.array([True, False, True, True, True])
    expected = ref_irs.scalable_disentanglement_score(
        factors, ref_irs._drop_constant_dims(codes.T).T, 0.99
    )
    ours = irs(codes, factors)
    _assert_matches(ours, expected, active)
    assert ours.num_active_dims == 4
    assert np.isnan(ours.disentanglement_scores[1]) and ours.parents[1] == -1
    assert np.isnan(ours.irs_matrix[1]).all()


class _Grid(GridGroundTruth):
    """GridGroundTruth plus the ``sample`` that ``generate_batch_factor_code`` calls."""

    def sample(self, n, random_state):
        factors = self.sample_factors(n, random_state)
        return factors, self.sample_observations_from_factors(factors, random_state)


def _compute_irs(table, sizes, seed=0, n=500):
    """The reference's whole pipeline, and the (codes, factors) it sampled, in our orientation."""
    grid, represent = _Grid(sizes), lambda rows: table[rows]
    codes, factors = REF.utils.generate_batch_factor_code(
        grid, represent, n, np.random.RandomState(seed), 64
    )
    expected = ref_irs.compute_irs(
        grid, represent, np.random.RandomState(seed), num_train=n, batch_size=64
    )
    return expected, codes.T, factors.T


def test_compute_irs_pipeline_bins_factors_with_many_classes():
    # 40 orientation-like classes: the study's 20-bin discretiser merges them in pairs.
    sizes = (3, 40)
    rng = np.random.default_rng(0)
    grid = np.stack(np.unravel_index(np.arange(np.prod(sizes)), sizes), axis=1)
    table = np.hstack([grid / np.array(sizes), np.zeros((len(grid), 1))])
    table += np.hstack([rng.normal(0, 0.05, (len(grid), 2)), np.zeros((len(grid), 1))])
    expected, codes, factors = _compute_irs(table, sizes)
    ours = irs(codes, factors)
    assert ours.avg_score == pytest.approx(expected["IRS"], abs=1e-12)
    assert ours.num_active_dims == 2
    # Without the binning the 40-class code is scored against finer classes: a different number.
    assert abs(irs(codes, factors, factor_bins=None).avg_score - expected["IRS"]) > 1e-3
    # Reference quirk we do not copy: its "num_active_dims" is the sum of the active codes' values.
    assert expected["num_active_dims"] == pytest.approx(codes[:, :2].sum())


def test_all_codes_constant_scores_zero_like_compute_irs():
    sizes = (3, 4)
    table = np.full((12, 3), 0.5)
    expected, codes, factors = _compute_irs(table, sizes, n=100)
    ours = irs(codes, factors)
    assert expected["IRS"] == ours.avg_score == 0.0
    assert ours.num_active_dims == 0
    assert np.isnan(ours.disentanglement_scores).all() and (ours.parents == -1).all()


def test_codes_that_are_the_factors_score_one():
    codes, factors = _case(0)
    ours = irs(factors.astype(float), factors)
    assert ours.avg_score == 1.0
    np.testing.assert_array_equal(ours.disentanglement_scores, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(ours.parents, [0, 1, 2])


def test_code_ignoring_the_factors_scores_near_zero():
    # Uniform noise: the 0.99-quantile of |z - class mean| is ~0.99 of the largest |z - mean|, so
    # IRS ~0.01. (Gaussian noise would score ~0.3: IRS is relative to the extreme deviation.)
    rng = np.random.default_rng(0)
    factors = np.column_stack([rng.integers(0, s, 4000) for s in SIZES])
    codes = np.column_stack([factors[:, 0].astype(float), rng.uniform(-1, 1, 4000)])
    ours = irs(codes, factors)
    assert ours.disentanglement_scores[0] == 1.0
    assert 0.0 <= ours.disentanglement_scores[1] < 0.05


def test_hand_computed_case():
    # f = class of each row, g = its parity; z1 = 4f + g, z2 = 2g.
    f = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    g = np.array([0, 1, 0, 1, 0, 1, 0, 1])
    codes = np.column_stack([4.0 * f + g, 2.0 * g])  # z1 = 0,1,0,1,4,5,4,5; z2 = 0,2,0,2,...
    # z1: mean 20/8 = 2.5, largest deviation 2.5.
    #   given f=0: z1 = 0,1,0,1, mean 0.5, every |z1 - 0.5| = 0.5; f=1 likewise (mean 4.5) -> 0.5.
    #     IRS[z1, f] = 1 - 0.5 / 2.5 = 0.8.
    #   given g=0: z1 = 0,0,4,4, mean 2, deviations 2; g=1: 1,1,5,5 likewise -> 2.
    #     IRS[z1, g] = 1 - 2 / 2.5 = 0.2.
    # z2: mean 1, largest deviation 1.
    #   given f: z2 = 0,2,0,2, mean 1, deviations 1 -> IRS[z2, f] = 1 - 1/1 = 0.
    #   given g: z2 constant -> IRS[z2, g] = 1.
    # Every deviation within a class is equal, so any diff_quantile gives the same numbers.
    # avg = (0.8 * 2.5 + 1.0 * 1) / (2.5 + 1) = 3 / 3.5 = 6/7.
    for diff_quantile in (0.99, 0.5, 1.0):
        ours = irs(codes, np.column_stack([f, g]), diff_quantile=diff_quantile)
        np.testing.assert_allclose(ours.irs_matrix, [[0.8, 0.2], [0.0, 1.0]], atol=1e-15)
        np.testing.assert_allclose(ours.disentanglement_scores, [0.8, 1.0], atol=1e-15)
        np.testing.assert_array_equal(ours.parents, [0, 1])
        assert ours.avg_score == pytest.approx(6 / 7, abs=1e-15)


def test_quantile_interpolates_linearly_as_numpy():
    # One class of 5 rows per factor value: z = 0,1,2,3,10 -> mean 3.2, deviations 3.2,2.2,1.2,0.2,6.8.
    # Sorted: 0.2,1.2,2.2,3.2,6.8; the 0.9-quantile sits at position 0.9 * 4 = 3.6:
    # 3.2 + 0.6 * (6.8 - 3.2) = 5.36. Other class: z + 20 -> the same 5.36.
    # Overall mean (16 + 116) / 10 = 13.2, largest deviation |30 - 13.2| = 16.8: IRS = 1 - 5.36 / 16.8.
    z = np.array([0.0, 1, 2, 3, 10])
    codes = np.concatenate([z, z + 20])[:, None]
    factors = np.repeat([0, 1], 5)[:, None]
    ours = irs(codes, factors, diff_quantile=0.9)
    assert ours.avg_score == pytest.approx(1 - 5.36 / 16.8, abs=1e-12)


def test_permuting_codes_permutes_scores():
    codes, factors = _case(4)
    codes[:, 3] = 1.0
    permutation = np.array([4, 2, 0, 3, 1])
    base, permuted = irs(codes, factors), irs(codes[:, permutation], factors)
    assert permuted.avg_score == pytest.approx(base.avg_score, abs=1e-12)
    np.testing.assert_array_equal(
        permuted.disentanglement_scores, base.disentanglement_scores[permutation]
    )
    np.testing.assert_array_equal(permuted.parents, base.parents[permutation])


def test_rejects_bad_options():
    codes, factors = _case(0, n=50)
    with pytest.raises(ValueError, match="diff_quantile"):
        irs(codes, factors, diff_quantile=99)
    with pytest.raises(ValueError, match="factor_bins"):
        irs(codes, factors, factor_bins=0)
