"""Registry-wide properties: every metric in METRICS gets these for free."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from trainables.metrics import METRICS, GridCodes, MetricInput, get_metric, run_metrics

SIZES = (3, 4, 5)
USES_FACTORS = set(METRICS) - {"unsupervised"}
PERMUTATION_INVARIANT = {
    "mig", "sap", "sap_continuous", "modularity", "unsupervised", "irs", "infomec",
    "spearman_match",
}
assert PERMUTATION_INVARIANT <= set(METRICS)


def _grid_codes(rng, noise=0.3):
    grid = np.stack(np.unravel_index(np.arange(np.prod(SIZES)), SIZES), axis=1)
    table = grid / np.array(SIZES) + rng.normal(0, noise, grid.shape)
    return GridCodes(np.hstack([table, rng.normal(size=(len(grid), 1))]), SIZES)


def _input(rng, n=240, noise=0.3, codes=None, factors=None):
    if factors is None:
        factors = np.column_stack([rng.integers(0, s, n) for s in SIZES])
    if codes is None:
        codes = np.hstack([factors + rng.normal(0, noise, factors.shape), rng.normal(size=(n, 1))])
    half = len(codes) * 2 // 3
    return MetricInput(
        codes[:half], factors[:half], codes[half:], factors[half:],
        rng=rng, source=_grid_codes(rng),
    )  # fmt: skip


def _small(name):
    # Sampling metrics at study defaults take seconds; shrink them for the common properties.
    spec = get_metric(name)
    if not spec.needs_source:
        return spec.evaluate
    from trainables.metrics import beta_vae, factor_vae

    def evaluate(x):
        if name == "beta_vae":
            s = beta_vae.beta_vae(x.source, rng=x.rng, num_train=300, num_eval=200)
            return {
                "beta_vae_train": s.train_accuracy,
                "beta_vae_eval": s.eval_accuracy,
                "beta_vae": s.eval_accuracy,
            }
        corrected = name.endswith("corrected")
        s = factor_vae.factor_vae(
            x.source,
            rng=x.rng,
            num_train=300,
            num_eval=200,
            num_variance_estimate=500,
            corrected=corrected,
        )
        return {
            f"{name}_train": s.train_accuracy,
            f"{name}_eval": s.eval_accuracy,
            name: s.eval_accuracy,
            f"{name}_active_dims": float(s.num_active_dims),
        }

    return evaluate


@pytest.mark.parametrize("name", sorted(METRICS))
def test_outputs_are_floats_within_bounds(name):
    spec = get_metric(name)
    out = _small(name)(_input(np.random.default_rng(0)))
    assert set(out) <= set(spec.outputs) and out
    for key, value in out.items():
        assert type(value) is float and spec.bounds[0] <= value <= spec.bounds[1], key
    if not name.startswith("downstream"):
        assert set(out) == set(spec.outputs)


@pytest.mark.parametrize("name", sorted(METRICS))
def test_deterministic_for_fixed_rng(name):
    a = _small(name)(_input(np.random.default_rng(5)))
    b = _small(name)(_input(np.random.default_rng(5)))
    assert a == b


@pytest.mark.parametrize("name", sorted(PERMUTATION_INVARIANT))
def test_invariant_to_permuting_code_dims(name):
    x = _input(np.random.default_rng(1))
    permuted = MetricInput(
        x.codes_train[:, ::-1], x.factors_train, x.codes_test[:, ::-1], x.factors_test,
        rng=np.random.default_rng(0),
    )  # fmt: skip
    x.rng = np.random.default_rng(0)
    a, b = get_metric(name).evaluate(x), get_metric(name).evaluate(permuted)
    assert a == pytest.approx(b)


@pytest.mark.parametrize("name", sorted(n for n in METRICS if not METRICS[n].needs_source))
def test_rejects_nan_codes(name):
    x = _input(np.random.default_rng(0))
    x.codes_train[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        get_metric(name).evaluate(x)


@pytest.mark.parametrize("name", sorted(n for n in USES_FACTORS if not METRICS[n].needs_source))
def test_rejects_mismatched_rows_and_constant_factors(name):
    x = _input(np.random.default_rng(0))
    x.factors_train = x.factors_train[:-5]
    with pytest.raises(ValueError, match="rows"):
        get_metric(name).evaluate(x)
    x = _input(np.random.default_rng(0))
    x.factors_train[:, 1] = 0
    with pytest.raises(ValueError, match="constant"):
        get_metric(name).evaluate(x)


@pytest.mark.parametrize("name", sorted(n for n in METRICS if METRICS[n].needs_source))
def test_sampling_metrics_need_a_source(name):
    x = _input(np.random.default_rng(0))
    x.source = None
    with pytest.raises(ValueError, match="whole factor grid"):
        get_metric(name).evaluate(x)


@pytest.mark.parametrize("name", sorted(n for n in METRICS if not METRICS[n].draws))
def test_metrics_marked_draw_free_leave_the_rng_alone(name):
    # run_metrics runs these beside the others: a draw here would change their numbers.
    x = _input(np.random.default_rng(3))
    before, global_before = x.rng.bit_generator.state, np.random.get_state()
    _small(name)(x)
    assert x.rng.bit_generator.state == before
    global_after = np.random.get_state()  # nor numpy's global one (sklearn's random_state=None)
    assert global_after[0] == global_before[0] and global_after[2:] == global_before[2:]
    assert np.array_equal(global_after[1], global_before[1])


def test_run_metrics_beside_equals_one_after_another():
    names = ["sap", "dci", "mig", "infomec", "modularity", "irs", "unsupervised"]
    scores, matrices, threads = {}, {}, {}
    for n_jobs in (1, 2):
        x = _input(np.random.default_rng(7), n=600)
        x.n_jobs = n_jobs
        started = []
        scores[n_jobs], seconds = run_metrics(
            names, x, lambda name, log=started: log.append((name, threading.current_thread().name))
        )
        assert sorted(n for n, _ in started) == sorted(names) and list(seconds) == names
        assert all(s >= 0 for s in seconds.values())
        matrices[n_jobs] = dict(x.matrices)
        threads[n_jobs] = {n: t.startswith("metrics-beside") for n, t in started}
    assert scores[1] == scores[2]
    assert list(scores[1]) == list(scores[2])  # keys in the order asked
    assert set(matrices[1]) == set(matrices[2]) >= {"dci_importance", "mig_mutual_information"}
    for key in matrices[1]:
        assert np.array_equal(matrices[1][key], matrices[2][key]), key
    # sequential with one job; with two, exactly the draw-free metrics ran beside
    assert not any(threads[1].values())
    assert threads[2] == {n: not METRICS[n].draws for n in names}


def test_run_metrics_passes_on_a_failure_beside():
    x = _input(np.random.default_rng(0))
    x.n_jobs = 2
    x.options = {"mig": {"no_such_option": 1}}  # only mig, on the side thread, fails
    with pytest.raises(TypeError, match="no_such_option"):
        run_metrics(["dci", "mig"], x)


def test_grid_codes_checks_rows():
    with pytest.raises(ValueError, match="needs 60 rows"):
        GridCodes(np.zeros((59, 2)), SIZES)


def test_unknown_metric():
    with pytest.raises(ValueError, match="unknown metric 'foo'"):
        get_metric("foo")


def test_metrics_import_without_torch():
    # Scoring arrays must not pay for torch (2 s here); families load it on first use.
    import subprocess
    import sys

    code = "import sys, trainables.metrics; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
