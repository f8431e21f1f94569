"""Hypothesis tests over seeds: every number checked against scipy or a hand computation."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.hypothesis import (
    Comparison,
    Ordering,
    compare,
    describe,
    holm,
    holm_table,
    ordering,
    paired,
    sign_test,
    to_frame,
    welch,
)

ALTERNATIVES = ["two-sided", "greater", "less"]

# Six seeds of two groups trained on the same splits: b is a plus noise, so the pairing matters.
A = [0.61, 0.58, 0.66, 0.70, 0.55, 0.63]
B = [0.57, 0.56, 0.60, 0.69, 0.50, 0.62]
SEEDS = [0, 1, 2, 3, 4, 5]


def seeded(values: list[float], seeds: list | None = None) -> pd.Series:
    """Values indexed by seed (0, 1, ... unless given)."""
    seeds = list(range(len(values))) if seeds is None else seeds
    return pd.Series(values, index=pd.Index(seeds, name="seed"), dtype=float)


def hedges_g(x: np.ndarray, y: np.ndarray) -> float:
    """Hedges' g written out: pooled sd, exact correction J(nu) = Γ(nu/2) / (√(nu/2) Γ((nu-1)/2))."""
    n1, n2 = len(x), len(y)
    nu = n1 + n2 - 2
    pooled = math.sqrt(((n1 - 1) * x.var(ddof=1) + (n2 - 1) * y.var(ddof=1)) / nu)
    j = math.gamma(nu / 2) / (math.sqrt(nu / 2) * math.gamma((nu - 1) / 2))
    return j * (x.mean() - y.mean()) / pooled


# -- paired ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_paired_matches_scipy_ttest_rel(alternative):
    c = paired(seeded(A), seeded(B), alternative=alternative, names=("mh", "st"))
    ref = stats.ttest_rel(A, B, alternative=alternative)
    assert (c.a, c.b, c.test, c.alternative) == ("mh", "st", "paired t", alternative)
    assert (c.n_a, c.n_b, c.df) == (6, 6, 5.0)
    assert c.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    assert ref.df == 5
    assert math.isnan(c.p_holm)


def test_paired_interval_and_dz_by_hand():
    c = paired(seeded(A), seeded(B), confidence=0.9)
    d = np.subtract(A, B)
    n, mean, sd = len(d), d.mean(), d.std(ddof=1)
    half = stats.t.ppf(0.95, n - 1) * sd / math.sqrt(n)
    assert c.diff == pytest.approx(mean) and c.diff == pytest.approx(np.mean(A) - np.mean(B))
    assert (c.mean_a, c.mean_b) == (pytest.approx(np.mean(A)), pytest.approx(np.mean(B)))
    assert (c.ci_low, c.ci_high) == (pytest.approx(mean - half), pytest.approx(mean + half))
    assert c.effect == pytest.approx(mean / sd)
    # the interval is two-sided even for a one-sided test, and agrees with scipy's own
    one_sided = paired(seeded(A), seeded(B), alternative="greater", confidence=0.9)
    assert (one_sided.ci_low, one_sided.ci_high) == (c.ci_low, c.ci_high)
    ref = stats.ttest_rel(A, B).confidence_interval(0.9)
    assert (c.ci_low, c.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))


def test_paired_pairs_by_seed_not_position():
    a = seeded(A)
    # b shuffled, with two seeds a lacks and one seed missing: only the 5 shared seeds count
    b = pd.concat([seeded(B), seeded([9.0, 9.0], [10, 11])]).drop(5).sample(frac=1, random_state=0)
    c = paired(a, b)
    ref = stats.ttest_rel(A[:5], B[:5])
    assert (c.n_a, c.n_b, c.df) == (5, 5, 4.0)
    assert c.statistic == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)
    assert c.mean_a == pytest.approx(np.mean(A[:5])) and c.mean_b == pytest.approx(np.mean(B[:5]))
    # positional pairing of the shuffled values would give another answer
    assert c.p != pytest.approx(stats.ttest_rel(A[:5], b.to_numpy()[:5]).pvalue)


def test_paired_accepts_mappings_and_drops_nan_pairwise():
    a = dict(zip(SEEDS, A, strict=True))
    b = dict(zip(SEEDS, B, strict=True))
    a[2] = math.nan  # seed 2 leaves both groups
    b[4] = math.nan  # seed 4 too
    c = paired(a, b)
    keep = [0, 1, 3, 5]
    ref = stats.ttest_rel([A[i] for i in keep], [B[i] for i in keep])
    assert (c.n_a, c.n_b) == (4, 4)
    assert c.statistic == pytest.approx(ref.statistic) and c.p == pytest.approx(ref.pvalue)


def test_paired_too_few_pairs_runs_no_test():
    c = paired(seeded(A[:2], [0, 1]), seeded(B[:2], [1, 2]))  # one shared seed
    assert (c.test, c.n_a, c.n_b) == ("none", 1, 1)
    assert c.diff == pytest.approx(A[1] - B[0])
    assert all(math.isnan(v) for v in (c.p, c.statistic, c.df, c.ci_low, c.effect))
    empty = paired({}, {})
    assert (empty.test, empty.n_a) == ("none", 0) and math.isnan(empty.mean_a)


def test_paired_rejects_repeated_seeds_and_bad_arguments():
    with pytest.raises(ValueError, match="more than once"):
        paired(seeded(A[:3], [0, 0, 1]), seeded(B[:3], [0, 1, 2]))
    with pytest.raises(ValueError, match="alternative"):
        paired(seeded(A), seeded(B), alternative="bigger")
    with pytest.raises(ValueError, match="confidence"):
        welch(A, B, confidence=95)


# -- Welch ----------------------------------------------------------------------------------------


X = np.array([0.42, 0.47, 0.39, 0.51, 0.45])
Y = np.array([0.30, 0.41, 0.22, 0.35, 0.48, 0.26, 0.33])  # more seeds and a wider spread


@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_welch_matches_scipy_ttest_ind(alternative):
    c = welch(X, Y, alternative=alternative)
    ref = stats.ttest_ind(X, Y, equal_var=False, alternative=alternative)
    assert (c.test, c.n_a, c.n_b) == ("Welch t", 5, 7)
    assert c.statistic == pytest.approx(ref.statistic, rel=1e-12)
    assert c.p == pytest.approx(ref.pvalue, rel=1e-10)
    s1, s2 = X.var(ddof=1) / len(X), Y.var(ddof=1) / len(Y)
    satterthwaite = (s1 + s2) ** 2 / (s1**2 / (len(X) - 1) + s2**2 / (len(Y) - 1))
    assert c.df == pytest.approx(satterthwaite)
    assert c.df == pytest.approx(ref.df)
    assert not c.df.is_integer()  # not the pooled n_a + n_b - 2 = 10


def test_welch_interval_and_hedges_g_by_hand():
    c = welch(pd.Series(X), list(Y), confidence=0.99)
    s1, s2 = X.var(ddof=1) / len(X), Y.var(ddof=1) / len(Y)
    df = (s1 + s2) ** 2 / (s1**2 / (len(X) - 1) + s2**2 / (len(Y) - 1))
    diff = X.mean() - Y.mean()
    half = stats.t.ppf(0.995, df) * math.sqrt(s1 + s2)
    assert c.diff == pytest.approx(diff)
    assert (c.ci_low, c.ci_high) == (pytest.approx(diff - half), pytest.approx(diff + half))
    ref = stats.ttest_ind(X, Y, equal_var=False).confidence_interval(0.99)
    assert (c.ci_low, c.ci_high) == (pytest.approx(ref.low), pytest.approx(ref.high))
    assert c.effect == pytest.approx(hedges_g(X, Y))
    # nu = 10: J = Γ(5) / (√5 Γ(4.5)) ≈ 0.9228, close to the approximation 1 - 3 / 39
    uncorrected = diff / math.sqrt((4 * X.var(ddof=1) + 6 * Y.var(ddof=1)) / 10)
    assert c.effect / uncorrected == pytest.approx(0.92274, abs=1e-5)
    assert c.effect == pytest.approx(-welch(Y, X).effect)


def test_welch_ignores_index_drops_nan_and_needs_two_values():
    with_nan = pd.Series([*X, math.nan], index=[10, 11, 12, 13, 14, 15])
    assert welch(with_nan, Y).p == pytest.approx(stats.ttest_ind(X, Y, equal_var=False).pvalue)
    c = welch([0.5], Y)
    assert (c.test, c.n_a, c.n_b) == ("none", 1, 7) and math.isnan(c.p)
    assert c.diff == pytest.approx(0.5 - Y.mean())
    assert welch(X, [math.nan, 0.3]).test == "none"


# -- compare --------------------------------------------------------------------------------------


def test_compare_pairs_only_when_the_seed_sets_match():
    a, b = seeded(A), seeded(B)
    shuffled = b.sample(frac=1, random_state=1)
    assert compare(a, shuffled).test == "paired t"
    assert compare(a, shuffled).p == pytest.approx(stats.ttest_rel(A, B).pvalue)
    # b has one seed more: paired would drop a run, so Welch on all values
    extra = pd.concat([b, seeded([0.9], [6])])
    c = compare(a, extra)
    assert (c.test, c.n_a, c.n_b) == ("Welch t", 6, 7)
    assert c.p == pytest.approx(stats.ttest_ind(A, [*B, 0.9], equal_var=False).pvalue)
    # a NaN is not a value: a's seed 0 missing leaves seed 0 of b without a partner
    a_nan = a.copy()
    a_nan[0] = math.nan
    assert compare(a_nan, b).test == "Welch t"
    assert compare(a_nan, b.drop(0)).test == "paired t"
    # a seed repeated in a group cannot be paired
    repeated = seeded(A, [0, 0, 1, 2, 3, 4])
    assert compare(repeated, seeded(B[:5], [0, 1, 2, 3, 4])).test == "Welch t"


def test_compare_min_pairs_and_too_few_values():
    a, b = seeded(A[:3], [0, 1, 2]), seeded(B[:3], [0, 1, 2])
    assert compare(a, b).test == "paired t"
    assert compare(a, b, min_pairs=4).test == "Welch t"
    one = compare(seeded([0.5], [0]), seeded([0.4], [0]))
    assert one.test == "none" and math.isnan(one.p)
    assert compare(a, seeded([0.4], [7])).test == "none"


# -- zero spread ----------------------------------------------------------------------------------


def test_paired_constant_difference():
    # binary fractions, so every per-seed difference is exactly 0.25
    a = seeded([1.5, 2.5, 3.25, 4.0])
    b = a - 0.25
    assert np.ptp((a - b).to_numpy()) == 0, "the case must really have zero spread"
    two = paired(a, b)
    assert (two.test, two.statistic, two.p, two.effect) == ("paired t", math.inf, 0.0, math.inf)
    assert two.ci_low == two.ci_high == two.diff == 0.25
    assert paired(a, b, alternative="greater").p == 0.0
    assert paired(a, b, alternative="less").p == 1.0
    reverse = paired(b, a, alternative="less")
    assert (reverse.statistic, reverse.p, reverse.effect) == (-math.inf, 0.0, -math.inf)


def test_paired_all_differences_zero_and_float_noise():
    a = seeded([0.1, 0.1, 0.1])
    for alternative in ALTERNATIVES:
        c = paired(a, a.copy(), alternative=alternative)
        assert c.p == 1.0 and math.isnan(c.statistic) and math.isnan(c.effect)
        assert c.ci_low == c.ci_high == 0.0
    # the differences are all 0.1, but a variance computed through their mean can come out
    # ~1e-34 rather than 0: the zero-spread rule must still apply, not a t of 1e16
    for alternative, p in [("two-sided", 0.0), ("greater", 0.0), ("less", 1.0)]:
        c = paired(seeded([0.1] * 3), seeded([0.0] * 3), alternative=alternative)
        assert (c.statistic, c.p, c.effect) == (math.inf, p, math.inf)
    c = welch([0.1] * 3, [0.1] * 5)
    assert (c.p, c.ci_low, c.ci_high) == (1.0, 0.0, 0.0) and math.isnan(c.statistic)


def test_welch_zero_spread():
    c = welch([0.5, 0.5, 0.5], [0.25, 0.25], alternative="greater")
    assert (c.statistic, c.p, c.effect) == (math.inf, 0.0, math.inf)
    assert math.isnan(c.df) and c.ci_low == c.ci_high == 0.25
    assert welch([0.5, 0.5, 0.5], [0.25, 0.25], alternative="less").p == 1.0
    same = welch([0.5, 0.5], [0.5, 0.5, 0.5])
    assert same.p == 1.0 and math.isnan(same.statistic) and math.isnan(same.effect)
    # one constant group is an ordinary Welch test: the other's one-sample t against the constant
    one = welch([0.5, 0.5, 0.5], Y)
    ref = stats.ttest_1samp(Y, 0.5)
    assert one.statistic == pytest.approx(-ref.statistic) and one.p == pytest.approx(ref.pvalue)
    assert one.df == pytest.approx(len(Y) - 1)


# -- Holm -----------------------------------------------------------------------------------------


def test_holm_worked_example():
    # sorted: 0.005 * 4 = 0.02, 0.01 * 3 = 0.03, 0.03 * 2 = 0.06, 0.04 * 1 = 0.04 -> max 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1: 0.4 * 3 = 1.2
    assert holm([0.4, 0.5, 0.01]) == pytest.approx([0.8, 0.8, 0.03])
    assert holm([0.4, 0.6, 0.5]) == pytest.approx([1.0, 1.0, 1.0])
    assert holm([0.2]) == pytest.approx([0.2]) and len(holm([])) == 0


def test_holm_is_monotone_and_no_smaller_than_raw():
    p = np.random.default_rng(3).uniform(0, 0.2, size=40)
    adjusted = holm(p)
    order = np.argsort(p)
    assert np.all(np.diff(adjusted[order]) >= 0)
    assert np.all(adjusted >= p) and np.all(adjusted <= 1)
    assert adjusted.min() == pytest.approx(40 * p.min())  # the smallest gets the full Bonferroni


def test_holm_keeps_nan_out_of_the_count():
    adjusted = holm([0.01, math.nan, 0.04, 0.03, math.nan, 0.005])
    assert np.isnan(adjusted[[1, 4]]).all()
    assert adjusted[[0, 2, 3, 5]] == pytest.approx([0.03, 0.06, 0.06, 0.02])  # m = 4, not 6
    assert np.isnan(holm([math.nan])).all()
    with pytest.raises(ValueError):
        holm([0.5, 1.5])


def test_holm_table_and_to_frame():
    comparisons = [
        paired(seeded(A), seeded(B), names=("mh", "st")),
        welch(X, Y, names=("x", "y")),
        welch([1.0], Y, names=("one", "y")),  # no test: NaN p, not counted
    ]
    table = holm_table(comparisons)
    assert [c.a for c in table] == ["mh", "x", "one"]
    assert [c.p_holm for c in table[:2]] == pytest.approx(holm([c.p for c in comparisons[:2]]))
    assert math.isnan(table[2].p_holm)
    assert table[0]._replace(p_holm=math.nan) == comparisons[0]  # nothing else changed
    frame = to_frame(table)
    assert list(frame.columns) == list(Comparison._fields)
    assert list(frame["test"]) == ["paired t", "Welch t", "none"]
    assert frame["p_holm"].iloc[:2].tolist() == [c.p_holm for c in table[:2]]
    assert list(to_frame([]).columns) == list(Comparison._fields)


# -- sign test ------------------------------------------------------------------------------------


@pytest.mark.parametrize(("wins", "n"), [(9, 10), (5, 10), (0, 7), (12, 12)])
@pytest.mark.parametrize("alternative", ALTERNATIVES)
def test_sign_test_matches_binomtest(wins, n, alternative):
    expected = stats.binomtest(wins, n, 0.5, alternative=alternative).pvalue
    assert sign_test(wins, n, alternative=alternative) == pytest.approx(expected)


def test_sign_test_by_hand():
    assert sign_test(9, 10) == pytest.approx(11 / 1024)  # C(10,9) + C(10,10) over 2^10
    assert sign_test(9, 10, alternative="two-sided") == pytest.approx(22 / 1024)
    assert math.isnan(sign_test(0, 0))


# -- ordering and describe ------------------------------------------------------------------------


def draws(mean: float, seed: int, n: int = 8, sd: float = 0.01) -> pd.Series:
    return seeded(list(np.random.default_rng(seed).normal(mean, sd, n)), list(range(n)))


def test_ordering_of_separated_groups():
    values = {"random": draws(0.3, 1), "multi_head": draws(0.9, 2), "single_task": draws(0.6, 3)}
    result = ordering(values, higher_is_better=True)
    assert isinstance(result, Ordering)
    assert result.groups == ["multi_head", "single_task", "random"]
    assert [(s.a, s.b, s.alternative) for s in result.steps] == [
        ("multi_head", "single_task", "greater"),
        ("single_task", "random", "greater"),
    ]
    assert all(s.test == "paired t" and s.p_holm < 1e-6 for s in result.steps)
    assert [s.p_holm for s in result.steps] == pytest.approx(holm([s.p for s in result.steps]))
    assert result.text.startswith("multi_head > single_task (p=")
    assert result.text.count(" > ") == 2 and "n.s." not in result.text and "≥" not in result.text


def test_ordering_marks_indistinguishable_groups():
    # the same distribution, different draws: the top step is not shown
    values = {"a": draws(0.5, 11, sd=0.05), "b": draws(0.5, 12, sd=0.05), "c": draws(0.1, 13)}
    result = ordering(values, higher_is_better=True)
    assert set(result.groups[:2]) == {"a", "b"} and result.groups[2] == "c"
    first, second = result.steps
    assert first.p_holm > 0.05 and second.p_holm < 0.05
    top, runner_up = result.groups[:2]
    assert result.text == (
        f"{top} ≥ {runner_up} (p={first.p_holm:.2g}, n.s.) > c (p={second.p_holm:.2g})"
    )


def test_ordering_lower_is_better():
    values = {"vae": draws(0.3, 21), "ae": draws(0.1, 22), "pca": draws(0.2, 23, n=5)}
    values["pca"].index = [100, 101, 102, 103, 104]  # other seeds: the step to pca is Welch
    result = ordering(values, higher_is_better=False)
    assert result.groups == ["ae", "pca", "vae"]
    assert [s.alternative for s in result.steps] == ["less", "less"]
    assert [s.test for s in result.steps] == ["Welch t", "Welch t"]
    assert all(s.diff < 0 for s in result.steps)
    assert result.text.startswith("ae < pca (p=") and result.text.count(" < ") == 2
    # the same groups, higher is better: reversed order and ">"
    assert ordering(values, higher_is_better=True).groups == ["vae", "pca", "ae"]


def test_ordering_edge_cases():
    assert ordering({}, higher_is_better=True) == Ordering([], [], "")
    assert ordering({"only": draws(0.5, 1)}, higher_is_better=True).text == "only"
    few = ordering({"a": seeded([0.9], [0]), "b": draws(0.1, 2)}, higher_is_better=True)
    assert few.steps[0].test == "none" and few.text == "a ≥ b (p=n/a, n.s.)"


def test_describe():
    table = holm_table([paired(seeded(A), seeded(B), alternative="greater", names=("mh", "st"))])
    c = table[0]
    line = describe(c)
    assert line.startswith(f"mh > st: +{c.diff:.3g} [{c.ci_low:.3g}, {c.ci_high:.3g}], ")
    assert f"paired t(5) = {c.statistic:.3g}, p_holm = {c.p_holm:.2g}, d_z = " in line
    assert c.p_holm < 0.05 and line.endswith(": significant at 0.05")
    assert describe(c, alpha=c.p_holm / 2).endswith(": not significant at " + f"{c.p_holm / 2:g}")
    raw = describe(welch(Y, X, names=("y", "x")))  # two-sided, negative difference, no Holm
    assert raw.startswith("y < x: -") and "Welch t(" in raw and ", p = " in raw and ", g = -" in raw
    assert describe(welch([1.0], X)).endswith("no test (too few values: n = 1, 5)")
