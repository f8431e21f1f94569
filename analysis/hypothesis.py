"""Hypothesis tests over seeds: does one group of models beat another?

Pure functions on numbers (numpy, scipy, pandas; no MLflow), like ``stats``. Seeds are the unit of
replication: each value is one run's metric, and a test asks whether a difference between two
groups is larger than what another draw of seeds would give.

Two designs:

* **Paired.** When both groups were trained with the same seeds (e.g. a multi-head and a
  single-task model trained with seed ``s`` on the same data split), run ``s`` of one group and run
  ``s`` of the other share the data order, the initialisation draw and the split, so the per-seed
  difference cancels that shared luck. ``paired`` tests the per-seed differences with a one-sample
  t-test (as scipy's ``ttest_rel``), with n - 1 degrees of freedom for n shared seeds. Effect size:
  Cohen's d_z, the mean difference over the standard deviation of the differences.
* **Unpaired.** Otherwise the groups are independent samples that need not have the same spread
  (a regularised model varies less over seeds), so ``welch`` uses Welch's t-test (as scipy's
  ``ttest_ind(equal_var=False)``) with Welch-Satterthwaite degrees of freedom. Effect size:
  Hedges' g, the difference over the pooled standard deviation times the exact small-sample
  correction J = Γ(ν/2) / (√(ν/2) Γ((ν-1)/2)), ν = n_a + n_b - 2 (the familiar 1 - 3/(4ν - 1) is
  its approximation, 1.3% off at ν = 2).

``compare`` picks between them: paired only when every value of both groups has a partner.

Each comparison also carries the difference of the means and its two-sided Student-t confidence
interval (on the differences for paired, Welch's standard error and df for unpaired), because a p
value says whether a difference is there, not how large it is. The interval stays two-sided when
the test is one-sided.

A table asks many questions at once (one per cell), so its p values are corrected together with
Holm's step-down procedure (``holm``, ``holm_table``): it controls the family-wise error rate like
Bonferroni, without assuming the tests independent, and rejects at least as much.

Degenerate cases are answered rather than left to a division by zero: with fewer than two values
(pairs) no test is run (``test = "none"``, NaN statistic and p); when the spread is exactly zero
(every per-seed difference equal, or both unpaired groups constant) the mean difference is known
exactly, so the p value is 0 when it lies in the alternative's direction (t = ±inf), 1 when it lies
against it, and 1 for any alternative when it is zero (t NaN: there is no evidence either way).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from itertools import pairwise
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import special, stats

ALTERNATIVES = ("two-sided", "greater", "less")
PAIRED = "paired t"
WELCH = "Welch t"
NONE = "none"


class Comparison(NamedTuple):
    """One two-group test; ``a`` is the group the alternative speaks of ("greater": a > b)."""

    a: str
    b: str
    test: str  # PAIRED, WELCH or NONE (too few values)
    n_a: int  # values used; paired: the number of shared seeds, in both
    n_b: int
    mean_a: float
    mean_b: float
    diff: float  # mean_a - mean_b (paired: the mean of per-seed differences, the same number)
    ci_low: float  # two-sided interval of diff at the comparison's confidence
    ci_high: float
    statistic: float  # t
    df: float  # n - 1 (paired) or Welch-Satterthwaite
    p: float  # for ``alternative``
    effect: float  # paired: Cohen's d_z; Welch: Hedges' g
    alternative: str  # "two-sided" | "greater" (a > b) | "less" (a < b)
    p_holm: float = math.nan  # filled by holm_table


class Ordering(NamedTuple):
    """Groups ranked best first, and whether each step down the ranking is shown by the seeds."""

    groups: list[str]
    steps: list[Comparison]  # groups[i] vs groups[i + 1], one-sided, Holm over the steps
    text: str


# -- helpers --------------------------------------------------------------------------------------


def _check(alternative: str, confidence: float) -> None:
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    if not 0 < confidence < 1:
        raise ValueError(f"confidence must lie strictly between 0 and 1, not {confidence}")


def _variance(values: np.ndarray) -> float:
    """Sample variance (ddof=1), exactly 0.0 for constant values.

    ``np.var`` of e.g. ``[0.1, 0.1, 0.1]`` is ~1e-34 by rounding in the mean, which would turn a
    constant difference into a t of ~1e16 instead of the documented zero-spread answer.
    """
    return 0.0 if np.ptp(values) == 0 else float(np.var(values, ddof=1))


def _t_result(
    diff: float, se: float, df: float, alternative: str, confidence: float
) -> tuple[float, float, float, float]:
    """(statistic, p, ci_low, ci_high) for a t statistic ``diff / se`` with ``df`` degrees."""
    if se == 0:
        # The difference is known exactly: the interval is a point and t is infinite (or 0 / 0).
        if diff == 0:
            return math.nan, 1.0, diff, diff
        statistic = math.copysign(math.inf, diff)
        if alternative == "two-sided":
            p = 0.0
        else:
            p = 0.0 if (diff > 0) == (alternative == "greater") else 1.0
        return statistic, p, diff, diff
    statistic = diff / se
    # scipy.stats.t's sf, cdf and ppf, without their argument checks (a tenth of the time)
    if alternative == "two-sided":
        p = 2 * special.stdtr(df, -abs(statistic))  # t.sf(|t|, df)
    elif alternative == "greater":
        p = special.stdtr(df, -statistic)  # t.sf(t, df)
    else:
        p = special.stdtr(df, statistic)  # t.cdf(t, df)
    half = special.stdtrit(df, 0.5 + confidence / 2) * se  # t.ppf
    return float(statistic), float(min(p, 1.0)), diff - half, diff + half


def _none(
    names: tuple[str, str], n_a: int, n_b: int, mean_a: float, mean_b: float, alternative: str
) -> Comparison:
    nan = math.nan
    diff = mean_a - mean_b
    return Comparison(names[0], names[1], NONE, n_a, n_b, mean_a, mean_b, diff,
                      nan, nan, nan, nan, nan, nan, alternative)  # fmt: skip


def _mean(values: np.ndarray) -> float:
    """The mean, exact for constant values.

    ``np.mean([0.1] * 3)`` is 0.1 + 2e-17: harmless against a spread, but with zero spread it would
    make two identical constant groups "differ" with p = 0.
    """
    if not len(values):
        return math.nan
    return float(values[0]) if np.ptp(values) == 0 else float(np.mean(values))


def _series(values: Mapping[Hashable, float] | pd.Series) -> pd.Series:
    series = values if isinstance(values, pd.Series) else pd.Series(dict(values), dtype=float)
    if not series.index.is_unique:
        duplicated = list(series.index[series.index.duplicated()].unique())
        raise ValueError(f"seeds {duplicated} appear more than once: pairing is ambiguous")
    return series if series.dtype == np.float64 else series.astype(float)


def _array(values: Sequence[float] | pd.Series | Mapping[Hashable, float]) -> np.ndarray:
    if isinstance(values, Mapping):
        values = list(values.values())
    array = np.asarray(values, dtype=float).ravel()
    return array[~np.isnan(array)]


# -- the tests ------------------------------------------------------------------------------------


def paired(
    a: Mapping[Hashable, float] | pd.Series,
    b: Mapping[Hashable, float] | pd.Series,
    *,
    alternative: str = "two-sided",
    confidence: float = 0.95,
    names: tuple[str, str] = ("a", "b"),
) -> Comparison:
    """Paired t-test of two groups' values keyed by seed.

    Only seeds present in both are used, whatever the order of the keys; a seed where either value
    is NaN is dropped from both (pairwise). Keys are matched exactly: a seed logged as the MLflow
    param ``"0"`` does not pair with the integer ``0``.

    Args:
        a: Values of group ``a`` by seed (a Series indexed by seed, or a mapping).
        b: Values of group ``b`` by seed.
        alternative: "two-sided", "greater" (a > b) or "less" (a < b).
        confidence: Level of the two-sided interval of the mean difference.
        names: The groups' names, as they appear in the result.

    Returns:
        The comparison; ``test`` is "none" (NaN statistic and p) with fewer than two pairs. With
        all differences equal see the module docstring (p 0 or 1, t ±inf or NaN, d_z likewise).

    Raises:
        ValueError: On an unknown alternative, a confidence outside (0, 1) or a repeated seed.
    """
    _check(alternative, confidence)
    left, right = _series(a), _series(b)
    keys, seeds = left.index.tolist(), right.index.tolist()
    if all(type(k) is str for k in keys + seeds) or all(type(k) is int for k in keys + seeds):
        # seeds all text or all integers: a dict matches them as the index does, much faster
        position = {seed: i for i, seed in enumerate(seeds)}
        mine = [i for i, key in enumerate(keys) if key in position]  # in a's order, as the index
        x, y = left.to_numpy()[mine], right.to_numpy()[[position[keys[i]] for i in mine]]
    else:  # mixed keys (1 and 1.0, NaN): the index's own matching
        shared = left.index.intersection(right.index, sort=False)
        x, y = left.loc[shared].to_numpy(), right.loc[shared].to_numpy()
    x, y = x[(both := ~np.isnan(x) & ~np.isnan(y))], y[both]
    n = len(x)
    if n < 2:
        return _none(names, n, n, _mean(x), _mean(y), alternative)
    differences = x - y
    diff = _mean(differences)
    sd = math.sqrt(_variance(differences))
    df = float(n - 1)
    statistic, p, low, high = _t_result(diff, sd / math.sqrt(n), df, alternative, confidence)
    # d_z: 0 / 0 is NaN and x / 0 is ±inf, matching the statistic in the zero-spread case.
    effect = diff / sd if sd > 0 else (math.nan if diff == 0 else math.copysign(math.inf, diff))
    return Comparison(names[0], names[1], PAIRED, n, n, _mean(x), _mean(y), diff,
                      low, high, statistic, df, p, effect, alternative)  # fmt: skip


def welch(
    a: Sequence[float] | pd.Series,
    b: Sequence[float] | pd.Series,
    *,
    alternative: str = "two-sided",
    confidence: float = 0.95,
    names: tuple[str, str] = ("a", "b"),
) -> Comparison:
    """Welch's unequal-variance t-test of two independent groups of values.

    NaNs are dropped; an index (seeds) is ignored.

    Args:
        a: Values of group ``a``.
        b: Values of group ``b``.
        alternative: "two-sided", "greater" (a > b) or "less" (a < b).
        confidence: Level of the two-sided interval of the difference of the means.
        names: The groups' names, as they appear in the result.

    Returns:
        The comparison, with Welch-Satterthwaite degrees of freedom and Hedges' g (pooled standard
        deviation, exact small-sample correction). ``test`` is "none" when either group has fewer
        than two values. When both groups are constant, df is NaN (0 / 0) and p follows the
        zero-spread rule of the module docstring; one constant group is fine.

    Raises:
        ValueError: On an unknown alternative or a confidence outside (0, 1).
    """
    _check(alternative, confidence)
    x, y = _array(a), _array(b)
    n_a, n_b = len(x), len(y)
    mean_a, mean_b = _mean(x), _mean(y)
    if n_a < 2 or n_b < 2:
        return _none(names, n_a, n_b, mean_a, mean_b, alternative)
    diff = mean_a - mean_b
    var_a, var_b = _variance(x), _variance(y)
    share_a, share_b = var_a / n_a, var_b / n_b
    se = math.sqrt(share_a + share_b)
    spread = share_a**2 / (n_a - 1) + share_b**2 / (n_b - 1)
    df = (share_a + share_b) ** 2 / spread if spread > 0 else math.nan
    statistic, p, low, high = _t_result(diff, se, df, alternative, confidence)
    # Hedges' g uses the pooled sd (the usual standardiser even when the test does not pool):
    # it estimates one population's spread, which the unpooled Welch se does not.
    nu = n_a + n_b - 2
    pooled = math.sqrt(((n_a - 1) * var_a + (n_b - 1) * var_b) / nu)
    log_correction = special.gammaln(nu / 2) - special.gammaln((nu - 1) / 2)
    correction = math.exp(log_correction) / math.sqrt(nu / 2)
    if pooled > 0:
        effect = correction * diff / pooled
    else:
        effect = math.nan if diff == 0 else math.copysign(math.inf, diff)
    return Comparison(names[0], names[1], WELCH, n_a, n_b, mean_a, mean_b, diff,
                      low, high, statistic, df, p, effect, alternative)  # fmt: skip


def compare(
    a: pd.Series,
    b: pd.Series,
    *,
    alternative: str = "two-sided",
    confidence: float = 0.95,
    names: tuple[str, str] = ("a", "b"),
    min_pairs: int = 2,
) -> Comparison:
    """The paired test when the groups share their seeds, Welch's otherwise.

    Paired needs the non-NaN values of both groups indexed by the same set of seeds, each seed
    once, and at least ``min_pairs`` of them: pairing only the shared part of two groups would
    silently drop runs, so a partial overlap is tested unpaired on all values instead.

    Args:
        a: Values of group ``a``, indexed by seed.
        b: Values of group ``b``, indexed by seed.
        alternative: "two-sided", "greater" (a > b) or "less" (a < b).
        confidence: Level of the two-sided interval of the difference.
        names: The groups' names, as they appear in the result.
        min_pairs: Fewest shared seeds for the paired test.

    Returns:
        The result of ``paired`` or ``welch``.
    """
    left, right = a.dropna() if a.hasnans else a, b.dropna() if b.hasnans else b
    pairable = (
        left.index.is_unique
        and right.index.is_unique
        and len(left) >= min_pairs
        and set(left.index) == set(right.index)
    )
    test = paired if pairable else welch
    return test(left, right, alternative=alternative, confidence=confidence, names=names)


# -- many comparisons -----------------------------------------------------------------------------


def holm(pvalues: Sequence[float]) -> np.ndarray:
    """Holm-Bonferroni step-down adjusted p values.

    Sorted ascending, the i-th smallest of m p values (i from 0) becomes (m - i) p, then the running
    maximum is taken so that adjusted values keep the order of the raw ones, and values are capped
    at 1. Rejecting where the adjusted value is at most alpha is Holm's procedure at level alpha.

    Args:
        pvalues: Raw p values; NaN (a comparison with no test) is kept as NaN and not counted in m.

    Returns:
        Adjusted p values in the input's order.

    Raises:
        ValueError: When a p value lies outside [0, 1].
    """
    p = np.asarray(pvalues, dtype=float).ravel()
    present = ~np.isnan(p)
    if np.any((p[present] < 0) | (p[present] > 1)):
        raise ValueError(f"p values must lie in [0, 1]: {p[present].tolist()}")
    out = np.full(p.shape, np.nan)
    values = p[present]
    m = len(values)
    order = np.argsort(values, kind="stable")
    scaled = (m - np.arange(m)) * values[order]
    adjusted = np.empty(m)
    adjusted[order] = np.minimum(np.maximum.accumulate(scaled), 1.0)
    out[present] = adjusted
    return out


def holm_table(comparisons: Sequence[Comparison]) -> list[Comparison]:
    """The comparisons, in the same order, with ``p_holm`` corrected over all of them."""
    adjusted = holm([c.p for c in comparisons])
    return [c._replace(p_holm=float(p)) for c, p in zip(comparisons, adjusted, strict=True)]


def to_frame(comparisons: Sequence[Comparison]) -> pd.DataFrame:
    """One row per comparison, one column per field of ``Comparison``."""
    return pd.DataFrame([c._asdict() for c in comparisons], columns=list(Comparison._fields))


def sign_test(wins: int, n: int, *, alternative: str = "greater") -> float:
    """Exact binomial p value of ``wins`` wins in ``n`` tries against a fair coin.

    For counts such as "multi-head beat single-task on 9 of 10 tasks", where only the direction of
    each difference is trusted, not its size. Ties should be left out of both counts.

    Args:
        wins: Number of wins.
        n: Number of tries (wins plus losses).
        alternative: "greater" (more wins than chance), "less" or "two-sided".

    Returns:
        ``scipy.stats.binomtest(wins, n, 0.5, alternative).pvalue``; NaN when ``n`` is 0.
    """
    if alternative not in ALTERNATIVES:
        raise ValueError(f"alternative must be one of {ALTERNATIVES}, not {alternative!r}")
    if n == 0:
        return math.nan
    return float(stats.binomtest(wins, n, 0.5, alternative=alternative).pvalue)


# -- reading the results --------------------------------------------------------------------------


def _p_text(p: float) -> str:
    return "n/a" if math.isnan(p) else f"{p:.2g}"


def _significant(p: float, alpha: float) -> bool:
    # "at most alpha", as Holm's procedure rejects; NaN (no test) is never significant.
    return not math.isnan(p) and p <= alpha


def ordering(
    values: Mapping[str, pd.Series],
    *,
    higher_is_better: bool,
    alpha: float = 0.05,
    confidence: float = 0.95,
) -> Ordering:
    """Groups ranked by mean, best first, each step tested against the next one down.

    Only adjacent groups are compared (m - 1 tests for m groups): the ranking is shown when each
    group beats the next one, which is what a reader of "a > b > c" takes from it. Each step is
    ``compare`` (paired when the two share their seeds) with the one-sided alternative that the
    better group is better, and the steps are Holm-corrected together.

    Args:
        values: Per group, its values indexed by seed.
        higher_is_better: The metric's direction.
        alpha: Level at which a step (its Holm-adjusted p) is called significant.
        confidence: Level of each step's interval.

    Returns:
        The ordering. Its text writes ``>`` (``<`` when lower is better) for a significant step and
        ``≥`` (``≤``) with "n.s." otherwise, each followed by the step's Holm-adjusted p, e.g.
        ``"multi_head > one_head (p=0.003) ≥ random (p=0.2, n.s.) > single_task (p=0.01)"``.
        Groups without any value rank last.
    """
    values = {name: v if isinstance(v, pd.Series) and v.dtype == np.float64  # a float Series
              else pd.Series(v, dtype=float) for name, v in values.items()}  # fmt: skip
    means = {name: float(v.mean()) for name, v in values.items()}
    sign = -1.0 if higher_is_better else 1.0
    # sorted() is stable: groups with equal means keep the mapping's order.
    groups = sorted(means, key=lambda g: (math.isnan(means[g]), sign * means[g]))
    alternative = "greater" if higher_is_better else "less"
    steps = holm_table([
        compare(values[better], values[worse], alternative=alternative, confidence=confidence,
                names=(better, worse))
        for better, worse in pairwise(groups)
    ])  # fmt: skip
    strict, weak = (">", "≥") if higher_is_better else ("<", "≤")
    parts = groups[:1]
    for step in steps:
        p = _p_text(step.p_holm)
        if _significant(step.p_holm, alpha):
            parts.append(f"{strict} {step.b} (p={p})")
        else:
            parts.append(f"{weak} {step.b} (p={p}, n.s.)")
    return Ordering(groups, steps, " ".join(parts))


def describe(c: Comparison, alpha: float = 0.05) -> str:
    """One line for a report, e.g.

    ``multi_head > single_task: +0.12 [0.05, 0.19], paired t(2) = 5.1, p_holm = 0.01, d_z = 2.9:
    significant at 0.05``.

    The relation is the alternative's (``>``, ``<``) for a one-sided test and the sign of the
    difference for a two-sided one. The Holm-adjusted p is shown and judged when ``holm_table``
    filled it, the raw p otherwise. Numbers have three significant digits, p values two.
    """
    if c.alternative == "greater":
        relation = ">"
    elif c.alternative == "less":
        relation = "<"
    else:
        relation = ">" if c.diff > 0 else "<" if c.diff < 0 else "vs"
    head = f"{c.a} {relation} {c.b}: {c.diff:+.3g}"
    if c.test == NONE:
        return f"{head}, no test (too few values: n = {c.n_a}, {c.n_b})"
    adjusted = not math.isnan(c.p_holm)
    p = c.p_holm if adjusted else c.p
    effect_name = "d_z" if c.test == PAIRED else "g"
    verdict = "significant" if _significant(p, alpha) else "not significant"
    return (
        f"{head} [{c.ci_low:.3g}, {c.ci_high:.3g}], {c.test}({c.df:.3g}) = {c.statistic:.3g}, "
        f"{'p_holm' if adjusted else 'p'} = {_p_text(p)}, {effect_name} = {c.effect:.3g}: "
        f"{verdict} at {alpha:g}"
    )
