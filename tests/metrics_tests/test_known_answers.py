"""Metrics on representations whose scores are known analytically."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from trainables.metrics import GridCodes
from trainables.metrics.beta_vae import beta_vae
from trainables.metrics.dci import completeness, dci, disentanglement
from trainables.metrics.downstream import downstream
from trainables.metrics.factor_vae import factor_vae
from trainables.metrics.mig import mig
from trainables.metrics.modularity import explicitness, modularity, modularity_from_mi
from trainables.metrics.sap import sap, score_matrix_continuous
from trainables.metrics.unsupervised import (
    gaussian_total_correlation,
    gaussian_wasserstein_correlation,
    unsupervised,
)

SIZES = (3, 6, 10, 8)


@pytest.fixture
def factors(rng):
    return np.column_stack([rng.integers(0, n, 3000) for n in SIZES])


@pytest.fixture
def grid():
    return np.stack(np.unravel_index(np.arange(np.prod(SIZES)), SIZES), axis=1)


def test_mig_identity_permuted_duplicated_rotated(factors, rng):
    codes = factors + rng.uniform(0, 0.01, factors.shape)
    assert mig(codes, factors) > 0.95
    assert mig(codes[:, [2, 0, 3, 1]], factors) == pytest.approx(mig(codes, factors))
    assert mig(np.hstack([codes, codes]), factors) < 0.05  # each factor has two equal codes
    assert mig(codes * 7.0 + 3.0, factors) == pytest.approx(mig(codes, factors))
    q, _ = np.linalg.qr(rng.normal(size=(4, 4)))
    assert mig(codes @ q, factors) < mig(codes, factors) - 0.3
    assert mig(rng.normal(size=(3000, 4)), factors) < 0.05


def test_dci_closed_forms():
    two_factors_per_code = np.hstack([np.eye(5), np.eye(5)])  # (5 codes, 10 factors)
    assert disentanglement(two_factors_per_code) == pytest.approx(1 - np.log(2) / np.log(10))
    assert completeness(two_factors_per_code) == pytest.approx(1.0)
    two_codes_per_factor = np.vstack([np.eye(4), np.eye(4)])  # (8 codes, 4 factors)
    assert completeness(two_codes_per_factor) == pytest.approx(1 - np.log(2) / np.log(8))
    assert disentanglement(two_codes_per_factor) == pytest.approx(1.0)
    assert disentanglement(np.ones((4, 4))) == pytest.approx(0.0, abs=1e-9)
    assert disentanglement(np.zeros((3, 3))) == pytest.approx(0.0, abs=1e-9)


def test_dci_identity_noise_and_parallel(rng):
    f = np.column_stack([rng.integers(0, n, 900) for n in (3, 5, 4)])
    codes = f + rng.normal(0, 0.05, f.shape)
    split = (codes[:600], f[:600], codes[600:], f[600:])
    scores = dci(*split, rng=np.random.default_rng(1), n_jobs=1)
    assert scores.disentanglement > 0.9 and scores.completeness > 0.9
    assert scores.informativeness_test > 0.95
    assert dci(*split, rng=np.random.default_rng(1), n_jobs=2) == scores
    fast = dci(*split, rng=np.random.default_rng(1), mode="fast")
    assert fast.disentanglement > 0.85 and fast.informativeness_test > 0.95
    noise = rng.normal(size=f.shape)
    low = dci(noise[:600], f[:600], noise[600:], f[600:], rng=rng, n_jobs=1)
    assert low.informativeness_test < 0.6 and low.disentanglement < scores.disentanglement
    with pytest.raises(ValueError, match="mode"):
        dci(*split, rng=rng, mode="quick")


def test_sap_continuous_closed_form(rng):
    z = rng.normal(size=(500, 3))
    factors = np.column_stack([z[:, 0] * 2 + 1, -z[:, 1]])
    matrix = score_matrix_continuous(z, factors)
    assert matrix[0, 0] == pytest.approx(1.0) and matrix[1, 1] == pytest.approx(1.0)
    assert sap(z, np.rint(factors * 10).astype(int), continuous=True) > 0.95
    constant_code = np.hstack([z, np.ones((500, 1))])
    assert score_matrix_continuous(constant_code, factors)[3].tolist() == [0.0, 0.0]


def test_sap_discrete_identity_beats_rotation(rng):
    f = np.column_stack([rng.integers(0, 2, 900), rng.integers(0, 2, 900)])
    codes = f + rng.normal(0, 0.1, f.shape)
    good = sap(codes[:600], f[:600], codes[600:], f[600:])
    assert good > 0.4  # binary factors: one code predicts perfectly, the other at ~chance
    rotated = codes @ np.array([[1, 1], [1, -1]]) / np.sqrt(2)
    assert sap(rotated[:600], f[:600], rotated[600:], f[600:]) < good - 0.3


def test_modularity_closed_forms(factors, rng):
    assert modularity_from_mi(np.eye(3)) == 1.0
    # One code with equal MI on all 4 factors: 1 - 3 m^2 / (m^2 * 3) = 0.
    assert modularity_from_mi(np.ones((1, 4))) == pytest.approx(0.0)
    assert modularity_from_mi(np.zeros((2, 2))) == 0.0  # no information: reference gives 0
    assert modularity(factors + rng.uniform(0, 0.01, factors.shape), factors) > 0.99


def test_explicitness_identity_high_noise_half(factors, rng):
    codes = factors + rng.normal(0, 0.05, factors.shape)
    assert explicitness(codes[:2000], factors[:2000], codes[2000:], factors[2000:]).test > 0.9
    noise = rng.normal(size=(3000, 4))
    assert explicitness(noise[:2000], factors[:2000], noise[2000:], factors[2000:]).test < 0.6


def test_unsupervised_closed_forms(rng):
    cov = np.array([[1.0, 0.5], [0.5, 1.0]])
    assert gaussian_total_correlation(cov) == pytest.approx(-0.5 * np.log(1 - 0.25))
    assert gaussian_total_correlation(np.diag([2.0, 3.0])) == pytest.approx(0.0)
    assert gaussian_wasserstein_correlation(np.diag([2.0, 3.0])) == pytest.approx(0.0, abs=1e-9)
    independent = unsupervised(rng.normal(size=(5000, 3)) * [1, 2, 3])
    assert independent.gaussian_total_correlation < 0.01
    x = rng.normal(size=5000)
    dependent = unsupervised(np.column_stack([x, x + 0.1 * rng.normal(size=5000)]))
    assert dependent.gaussian_total_correlation > 1.0
    assert dependent.mutual_info_score > independent.mutual_info_score + 0.5


def test_factor_vae_identity_is_one_and_shared_code_drops(grid, rng):
    table = grid / np.array(SIZES)
    kwargs = dict(num_train=500, num_eval=300, num_variance_estimate=2000)
    perfect = factor_vae(GridCodes(table, SIZES), rng=rng, **kwargs)
    assert perfect.train_accuracy == perfect.eval_accuracy == 1.0 and perfect.num_active_dims == 4
    # Factors 0 and 1 share code 0: their votes land on one code, so at most 3 of 4 factors win.
    shared = np.column_stack(
        [table[:, 0] + table[:, 1], table[:, 2], table[:, 3], rng.random(len(table))]
    )
    merged = factor_vae(GridCodes(shared, SIZES), rng=rng, **kwargs)
    assert merged.eval_accuracy <= 0.8


def test_factor_vae_quirk_is_a_relabelling(grid):
    # A collapsed first dim shifts reference votes by one column; majority vote is invariant to
    # that relabelling, so reference and corrected accuracies agree.
    table = np.hstack([np.zeros((len(grid), 1)), grid / np.array(SIZES)])
    kwargs = dict(num_train=300, num_eval=200, num_variance_estimate=1000)
    ref = factor_vae(GridCodes(table, SIZES), rng=np.random.default_rng(0), **kwargs)
    fixed = factor_vae(
        GridCodes(table, SIZES), rng=np.random.default_rng(0), corrected=True, **kwargs
    )
    assert ref == fixed and ref.num_active_dims == 4
    collapsed = factor_vae(GridCodes(np.zeros((len(grid), 3)), SIZES), rng=np.random.default_rng(0))
    assert collapsed == (0.0, 0.0, 0)


def test_beta_vae_identity_is_one_and_noise_low(grid, rng):
    table = grid / np.array(SIZES)
    perfect = beta_vae(GridCodes(table, SIZES), rng=rng, num_train=400, num_eval=200)
    assert perfect.eval_accuracy == 1.0
    noise = beta_vae(
        GridCodes(rng.normal(size=table.shape), SIZES), rng=rng, num_train=400, num_eval=200
    )
    assert noise.eval_accuracy < 0.45  # 4 factors: chance is 0.25


def test_downstream_sizes_and_learning_curve(factors, rng):
    codes = factors + rng.normal(0, 0.3, factors.shape)
    curve = downstream(
        codes[:2000],
        factors[:2000],
        codes[2000:],
        factors[2000:],
        predictor="logistic_regression",
        rng=rng,
        train_sizes=(10, 100, 1000),
    )
    assert list(curve) == [10, 100, 1000] and curve[1000] > curve[10]
    trees = downstream(
        codes[:200], factors[:200], codes[2000:], factors[2000:], predictor="boosted_trees", rng=rng
    )
    assert list(trees) == [10, 100]  # sizes above the available train points are left out


def test_study_score_cli_on_grid_file(tmp_path, grid, rng):
    path = tmp_path / "codes.npz"
    np.savez(path, codes=grid / np.array(SIZES) + rng.normal(0, 0.01, grid.shape), factors=grid)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "study.cli",
            "score",
            str(path),
            "--metrics",
            "mig,dci,factor_vae,beta_vae",
            "--mode",
            "fast",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    scores = json.loads(result.stdout)
    assert scores["mig"] > 0.9 and scores["factor_vae_eval"] == 1.0
    assert scores["beta_vae_eval"] == 1.0 and scores["dci_disentanglement"] > 0.9
    assert set(scores["seconds"]) == {"mig", "dci", "factor_vae", "beta_vae"}
    assert scores["num_train"] == 10_000 and scores["num_test"] == 5_000


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ({"codes": np.zeros((5, 2))}, "missing key"),
        (None, "file not found"),
        ({"codes": np.eye(6), "factors": np.linspace(0, 1, 6)[:, None]}, "--bin-factors N"),
    ],
)
def test_study_score_cli_bad_files(tmp_path, content, message):
    path = tmp_path / "bad.npz"
    if content is not None:
        np.savez(path, **content)
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "score", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2 and message in result.stderr


def test_grid_fast_paths_fix_and_pair_factors_like_the_class_space_ones(grid, rng):
    # The table's codes are the classes themselves, so returned codes reveal the sampled classes.
    source = GridCodes(grid.astype(float), SIZES)
    fixed = rng.integers(0, 4, 300)
    batches = source.fixed_batches(fixed, 64, rng)  # (300, 64, 4)
    for i, k in enumerate(fixed):
        assert (batches[i, :, k] == batches[i, 0, k]).all()
    free = np.concatenate([batches[i, :, (fixed[i] + 1) % 4] for i in range(300)])
    assert free.min() == 0 and len(np.unique(free)) > 2  # other factors still vary
    first, second = source.paired_batches(fixed, 64, rng)
    for i, k in enumerate(fixed):
        assert np.array_equal(first[i, :, k], second[i, :, k])
    # Uniform marginals: each class of the largest factor appears at its expected rate.
    counts = np.bincount(first[:, :, 2].astype(int).ravel(), minlength=10) / first[:, :, 2].size
    assert np.allclose(counts, 0.1, atol=0.02)


def test_sampling_metrics_on_a_dataset_and_encoder():
    # An "encoder" reading the sprite's centroid: it captures posX and posY exactly and nothing
    # else, so FactorVAE's majority vote gets those two factors right and the others not.
    from trainables.data import load, subset
    from trainables.metrics import EncodedDataset

    view = subset(
        load("dsprites"), {"orientation": 0, "scale": [5], "posX": "0:32:4", "posY": "0:32:4"}
    )

    def centroid(images):  # (N, 1, 64, 64) float -> (N, 2)
        ys, xs = np.mgrid[0:64, 0:64]
        mass = images[:, 0].sum(axis=(1, 2))
        return np.stack([(images[:, 0] * xs).sum((1, 2)) / mass,
                         (images[:, 0] * ys).sum((1, 2)) / mass], axis=1)  # fmt: skip

    source = EncodedDataset(view, centroid, batch_size=256)
    scores = factor_vae(source, rng=np.random.default_rng(0), batch_size=16, num_train=150,
                        num_eval=100, num_variance_estimate=300)  # fmt: skip
    assert view.factor_names == ("shape", "posX", "posY")
    assert scores.num_active_dims == 2
    assert 0.5 < scores.eval_accuracy < 0.9  # posX and posY votes right, shape votes wrong


def test_score_arrays_reports_each_metric_as_it_starts(rng):
    from trainables.metrics.scoring import score_arrays

    factors = rng.integers(0, 3, (300, 2))
    codes = factors + rng.normal(0, 0.1, factors.shape)
    started = []
    result = score_arrays(
        {"codes": codes, "factors": factors}, ["mig", "sap"],
        on_metric=lambda *progress: started.append(progress),
    )  # fmt: skip
    assert started == [("mig", 0, 2), ("sap", 1, 2)]
    assert result["mig"] > 0.9 and set(result["seconds"]) == {"mig", "sap"}
    # with two jobs, metrics run two at once: each event names what is still running
    shown = []
    score_arrays(
        {"codes": codes, "factors": factors}, ["dci", "mig", "sap"], n_jobs=2,
        on_metric=lambda *progress: shown.append(progress),
    )  # fmt: skip
    named = [set(running.split(", ")) for running, _, _ in shown]
    assert set().union(*named) == {"dci", "mig", "sap"} and all(n <= {"dci", "mig", "sap"} for n in named)
    done = [d for _, d, _ in shown]
    assert done == sorted(done) and done[0] == 0 and max(done) == 2  # the last end shows nothing
    assert all(total == 3 for _, _, total in shown)
    # a metric named by the user that cannot run on these rows is an error with the reason
    with pytest.raises(ValueError, match="cover the whole factor grid"):
        score_arrays({"codes": codes, "factors": factors}, ["mig", "factor_vae"])

def test_float_factors_are_classes_when_whole_and_binned_only_when_asked(rng):
    """Whole-number floats are their classes; other floats are refused with the fix, or cut into
    equal-width bins when asked (then MIG of a code that is the factor itself is still 1)."""
    from trainables.errors import InputError
    from trainables.metrics.scoring import factor_classes, score_arrays

    assert factor_classes(np.array([[0.0, 2.0], [1.0, 0.0]])).tolist() == [[0, 2], [1, 0]]
    continuous = np.column_stack([rng.uniform(0, 1, 600), rng.integers(0, 3, 600)])
    with pytest.raises(InputError, match="column 0 holds values that are not classes.*--bin-fac"):
        factor_classes(continuous)
    binned = factor_classes(continuous, bins=4)
    # Equal-width bins over [min, max]: the quarter each value falls in; the class column as is.
    edges = np.linspace(continuous[:, 0].min(), continuous[:, 0].max(), 5)
    expected = np.clip(np.searchsorted(edges, continuous[:, 0], side="right") - 1, 0, 3)
    assert binned[:, 0].tolist() == expected.tolist()
    assert binned[:, 1].tolist() == continuous[:, 1].astype(int).tolist()
    codes = continuous + rng.normal(0, 1e-3, continuous.shape)  # one code per factor
    result = score_arrays(
        {"codes": codes, "factors": continuous}, ["mig"], bin_factors=4, n_jobs=1
    )
    assert result["mig"] > 0.9


def test_the_score_your_own_model_example_runs_as_the_readme_says(tmp_path):
    from pathlib import Path

    root = Path(__file__).parents[2]
    out = tmp_path / "codes.npz"
    made = subprocess.run(
        [sys.executable, str(root / "examples" / "score_my_model.py"), str(out)],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert made.returncode == 0, made.stderr[-2000:]
    scored = subprocess.run(
        [sys.executable, "-m", "study.cli", "score", str(out), "--metrics", "mig,sap", "--json"],
        capture_output=True, text=True, timeout=300, cwd=root,
    )  # fmt: skip
    assert scored.returncode == 0, scored.stderr[-2000:]
    scores = json.loads(scored.stdout)
    assert 0.0 <= scores["mig"] <= 1.0 and 0.0 <= scores["sap"] <= 1.0
    assert scores["num_train"] == 2000 and scores["num_test"] == 1000  # 3000 rows: 2/3, 1/3
