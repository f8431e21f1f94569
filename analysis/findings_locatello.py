"""Locatello et al. 2019's findings (seed 002; FINDINGS.md, L*) as checks with written verdict
rules, on the runs of the Locatello study (one frame: every method, setting, seed and dataset).

Each check takes that frame, optionally the one ``dataset`` to judge (default: every dataset in
the frame, named together), ``alpha`` and the metrics' ``direction`` (the runs' declared outputs by
default), and returns ``findings.Verdict``: *reproduced*, *not reproduced*, or *not comparable*
with what the runs lack. The first evidence line states the outcome; the numbers follow.
Sections are the ICML 2019 paper's (Sec. 5.1-5.5).
"""

from __future__ import annotations

import math
from statistics import median

import pandas as pd

from trainables.metrics.selection import Direction

from . import locatello as lo
from . import locatello_selection as sel
from .findings import NOT_REPRODUCED, REPRODUCED, Check, Verdict, _not_comparable
from .results import declared_outputs

TC_MEAN, TC_SAMPLED = "gaussian_total_correlation", "gaussian_total_correlation_sampled"
# Per method: the param that sets its regularisation strength, and +1 when larger is stronger.
REGULARISATION = {
    "vae": ("beta", 1), "beta_tc_vae": ("beta", 1), "factor_vae": ("gamma", 1),
    "dip_vae_i": ("lambda_od", 1), "dip_vae_ii": ("lambda_od", 1), "annealed_vae": ("c_max", -1),
}  # fmt: skip
# DIP-VAE-I penalises the covariance of the mean codes itself: the paper's exception for TC mean.
TC_MEAN_EXCEPTIONS = ("dip_vae_i",)
MODULARITY = "modularity"
# Unsupervised scores (trainables.metrics.unsupervised; no declared direction: lower = the code
# dimensions less dependent, the hoped-for direction) and reconstruction (lower is better).
SELECTORS = {
    "gaussian_total_correlation": False, "gaussian_wasserstein_correlation_norm": False,
    "mutual_info_score": False, "reconstruction_loss": False,
}  # fmt: skip
DOWNSTREAM_DATASETS = ("dsprites", "shapes3d")  # where the paper found the correlation


def _scope(runs, dataset):
    """The runs to judge and the verdict's dataset label."""
    if runs is None or runs.empty:
        return None, dataset or "-"
    if dataset is not None:
        runs = runs[lo.dataset_of(runs) == dataset]
    return runs, dataset or ", ".join(name for name, _ in lo.by_dataset(runs))


def _verdict(id_, dataset, claim, source, rule, ok, summary, lines) -> Verdict:
    evidence = "\n".join([summary, *lines])
    return Verdict(
        id_, dataset, claim, source, rule, REPRODUCED if ok else NOT_REPRODUCED, evidence
    )


def _seeded(runs: pd.DataFrame) -> bool:
    """Some setting of some method has two or more runs on one dataset."""
    keys = [lo.dataset_of(runs), lo.method_of(runs), lo.setting_of(runs)]
    return bool((runs.groupby(keys).size() >= 2).any())


def _scored(runs, metrics, direction) -> list[str]:
    return [m for m in lo.present(runs, metrics) if direction(m) is not None]


def l2_total_correlation(runs, dataset=None, alpha=0.05, direction=None) -> Verdict:
    claim = "the mean representation's total correlation grows with regularisation; the sampled one's does not"
    source = "Sec. 5.1"
    rule = (
        "per dataset and method with a swept regularisation strength: Spearman(strength, "
        f"{TC_MEAN}) > 0 at one-sided {alpha} (waived for {', '.join(TC_MEAN_EXCEPTIONS)}, the "
        f"paper's exception) and Spearman(strength, {TC_SAMPLED}) not > 0 at one-sided {alpha}; "
        "reproduced in most cells"
    )
    runs, label = _scope(runs, dataset)
    if runs is None or len(lo.present(runs, [TC_MEAN, TC_SAMPLED])) < 2:
        why = f"no {TC_MEAN} and {TC_SAMPLED} (metrics: unsupervised, a stochastic encoder)"
        return _not_comparable("L2", label, claim, source, rule, why)
    strength = {m: p for m, (p, _) in REGULARISATION.items()}
    mean = lo.hyperparameter_correlation(runs, TC_MEAN, strength).dropna(subset=["rho"])
    sampled = lo.hyperparameter_correlation(runs, TC_SAMPLED, strength).dropna(subset=["rho"])
    cells = mean.merge(sampled, on=["dataset", "method", "hyperparameter"], suffixes=("_m", "_s"))
    if cells.empty:
        why = f"no method swept its regularisation ({', '.join(sorted(set(strength.values())))})"
        return _not_comparable("L2", label, claim, source, rule, why)
    agree, lines = [], []
    for row in cells.itertuples():
        sign = REGULARISATION[row.method][1]
        p_mean = lo.one_sided(sign * row.rho_m, row.p_m)
        p_sampled = lo.one_sided(sign * row.rho_s, row.p_s)
        ok = (row.method in TC_MEAN_EXCEPTIONS or p_mean <= alpha) and not p_sampled <= alpha
        agree.append(ok)
        lines.append(
            f"{row.dataset} / {row.method} ({row.hyperparameter}, {'+' if sign > 0 else '-'}): "
            f"TC mean rho {sign * row.rho_m:+.2f} (p = {p_mean:.2g}), TC sampled rho "
            f"{sign * row.rho_s:+.2f} (p = {p_sampled:.2g}), n = {row.n_m}: "
            f"{'agrees' if ok else 'differs'}"
        )
    ok = sum(agree) > len(agree) / 2
    summary = f"{sum(agree)}/{len(agree)} dataset-method cells agree with the paper"
    return _verdict("L2", label, claim, source, rule, ok, summary, lines)


def l3_metric_agreement(runs, dataset=None, alpha=0.05, direction=None) -> Verdict:
    claim = "disentanglement metrics mostly agree, except modularity; agreement varies by dataset"
    source = "Sec. 5.2"
    rule = (
        "per dataset, Spearman over runs between the paper's metrics: most pairs without "
        f"modularity positive at one-sided {alpha}, and modularity's median rho with the others "
        "below that of the other pairs; reproduced when every dataset passes (the spread across "
        "datasets is reported, not judged)"
    )
    runs, label = _scope(runs, dataset)
    metrics = lo.present(runs, lo.PAPER_METRICS) if runs is not None else []
    others = [m for m in metrics if m != MODULARITY]
    if MODULARITY not in metrics or len(others) < 2:
        why = f"needs {MODULARITY} and two more of {', '.join(lo.PAPER_METRICS)} (has {metrics})"
        return _not_comparable("L3", label, claim, source, rule, why)
    passed, lines, medians = [], [], []
    for name, frame in lo.by_dataset(runs):
        pairs = {}
        for i, a in enumerate(metrics):
            for b in metrics[i + 1 :]:
                pairs[(a, b)] = lo.spearman(frame[f"metrics.{a}"], frame[f"metrics.{b}"])
        plain = [v for k, v in pairs.items() if MODULARITY not in k and not math.isnan(v[0])]
        modular = [v[0] for k, v in pairs.items() if MODULARITY in k and not math.isnan(v[0])]
        if not plain or not modular:
            lines.append(f"{name}: too few runs or constant metrics")
            continue
        agreeing = sum(lo.one_sided(rho, p) <= alpha for rho, p, _ in plain)
        typical, modular_typical = median(v[0] for v in plain), median(modular)
        ok = agreeing > len(plain) / 2 and modular_typical < typical
        passed.append(ok)
        medians.append(typical)
        lines.append(
            f"{name}: {agreeing}/{len(plain)} pairs without modularity significantly positive, "
            f"median rho {typical:.2f}; modularity's median rho {modular_typical:.2f}"
        )
    if not passed:
        return _not_comparable("L3", label, claim, source, rule, "too few runs per dataset")
    spread = f"; median rho across datasets {min(medians):.2f}-{max(medians):.2f}"
    summary = f"{sum(passed)}/{len(passed)} datasets pass" + (spread if len(medians) > 1 else "")
    return _verdict("L3", label, claim, source, rule, all(passed), summary, lines)


def l4_variance_shares(runs, dataset=None, alpha=0.05, direction=None) -> Verdict:
    claim = "hyperparameters and random seeds matter more than the choice of objective (method)"
    source = "Sec. 5.3"
    rule = (
        "per dataset and metric, nested sums of squares (method, setting within method, seed "
        "within setting): method share < setting share + seed share in most cells"
    )
    runs, label = _scope(runs, dataset)
    metrics = lo.present(runs, lo.PAPER_METRICS) if runs is not None else []
    if not metrics:
        return _not_comparable("L4", label, claim, source, rule, "none of the paper's metrics")
    if lo.method_of(runs).nunique() < 2:
        return _not_comparable("L4", label, claim, source, rule, "one method: no objective share")
    if not _seeded(runs):
        return _not_comparable("L4", label, claim, source, rule, "one seed per setting")
    table = lo.variance_decomposition(runs, metrics)
    table = table[(table["n_methods"] >= 2) & table["method_share"].notna()]
    if table.empty:
        return _not_comparable("L4", label, claim, source, rule, "no metric varies over 2 methods")
    smaller = table["method_share"] < table["setting_share"] + table["seed_share"]
    lines = [
        f"{r.dataset} / {r.metric}: method {r.method_share:.2f}, setting {r.setting_share:.2f}, "
        f"seed {r.seed_share:.2f}"
        for r in table.itertuples()
    ]
    summary = f"method share below setting + seed in {int(smaller.sum())}/{len(table)} cells"
    return _verdict(
        "L4", label, claim, source, rule, smaller.sum() > len(table) / 2, summary, lines
    )


def l5_seed_vs_setting(runs, dataset=None, alpha=0.05, direction=None, share=0.5) -> Verdict:
    claim = "a bad seed at a good setting can lose to a good seed at a bad one"
    source = "Sec. 5.3"
    rule = (
        "per dataset, method and metric (settings ranked by their mean over seeds): the worst "
        "seed of the best setting scores below the best seed of the worst setting in at least "
        f"{share:.0%} of the cells"
    )
    runs, label = _scope(runs, dataset)
    if runs is None or not _seeded(runs):
        return _not_comparable("L5", label, claim, source, rule, "one seed per setting")
    direction = direction or declared_outputs(runs).direction
    metrics = _scored(runs, lo.PAPER_METRICS, direction)
    table = lo.seed_vs_setting(runs, metrics, direction) if metrics else pd.DataFrame()
    if table.empty:
        return _not_comparable("L5", label, claim, source, rule, "no method with two settings")
    lines = [
        f"{r.dataset} / {r.method} / {r.metric}: worst seed at best ({r.best_setting}) "
        f"{r.worst_seed_at_best:.3f} vs best seed at worst ({r.worst_setting}) "
        f"{r.best_seed_at_worst:.3f}{': loses' if r.loses else ''}"
        for r in table.itertuples()
    ]
    lost = table["loses"].mean()
    summary = f"loses in {int(table['loses'].sum())}/{len(table)} cells ({lost:.0%})"
    return _verdict("L5", label, claim, source, rule, lost >= share, summary, lines)


def l7_unsupervised_selection(
    runs, dataset=None, alpha=0.05, direction=None, reliable=0.75
) -> Verdict:
    claim = "unsupervised scores and reconstruction do not reliably select good models"
    source = "Sec. 5.4"
    rule = (
        "per selector (unsupervised scores and reconstruction, lower is better), per dataset, "
        "method and disentanglement metric: the exact probability that the run chosen by the "
        "selector is at least as good as a random run of the method; a selector is reliable "
        f"when its mean probability is >= {reliable}; reproduced when none is"
    )
    runs, label = _scope(runs, dataset)
    direction = direction or (declared_outputs(runs).direction if runs is not None else None)
    targets = _scored(runs, lo.PAPER_METRICS, direction) if runs is not None else []
    selectors = [s for s in SELECTORS if runs is not None and lo.present(runs, [s])]
    if runs is not None and not lo.present(runs, ["reconstruction_loss"]):
        selectors += lo.present(runs, ["reconstruction_mse"])
    if not targets or not selectors:
        why = f"needs a selector ({', '.join(SELECTORS)}) and a supervised metric"
        return _not_comparable("L7", label, claim, source, rule, why)
    lines, best = [], 0.0
    for selector in selectors:
        parts = [
            sel.model_selection(runs, selector, t, select_higher=False, direction=direction)
            for t in targets
        ]
        table = pd.concat(parts, ignore_index=True).dropna(subset=["probability"])
        mean, chance = table["probability"].mean(), table["chance"].mean()
        best = max(best, mean)
        above = int((table["probability"] > table["chance"]).sum())
        lines.append(
            f"{selector}: mean probability {mean:.2f} (chance {chance:.2f}); above chance in "
            f"{above}/{len(table)} cells"
        )
    summary = f"best selector's mean probability {best:.2f} (reliable: >= {reliable})"
    return _verdict("L7", label, claim, source, rule, best < reliable, summary, lines)


def l9_transfer(runs, dataset=None, alpha=0.05, direction=None) -> Verdict:
    claim = "selection beats random 81% (same metric and dataset), 59% (across datasets), 55% (across both)"
    source = "Sec. 5.4"
    rule = (
        "exact probabilities that a setting (method and hyperparameters) chosen by a metric on "
        "one seed / dataset is at least as good as a random one on other seeds / another dataset "
        "(locatello_selection.transfer_table): same > across datasets > across both"
    )
    runs, label = _scope(runs, dataset)
    datasets = [name for name, _ in lo.by_dataset(runs)] if runs is not None else []
    if runs is None or len(datasets) < 2:
        return _not_comparable(
            "L9", label, claim, source, rule, f"needs two datasets (has {datasets})"
        )
    direction = direction or declared_outputs(runs).direction
    metrics = _scored(runs, lo.PAPER_METRICS, direction)
    if len(metrics) < 2 or not _seeded(runs):
        why = f"needs two of the paper's metrics (has {metrics}) and two seeds per setting"
        return _not_comparable("L9", label, claim, source, rule, why)
    table = sel.transfer_table(runs, metrics, direction)
    p = table["probability"]
    kinds = (
        "same metric and dataset",
        "across datasets, same metric",
        "across metrics and datasets",
    )
    if p[list(kinds)].isna().any():
        return _not_comparable("L9", label, claim, source, rule, "no setting on two datasets")
    ok = p[kinds[0]] > p[kinds[1]] > p[kinds[2]]
    lines = [
        f"{row.Index}: {row.probability:.2f} (chance {row.chance:.2f}; paper {row.paper:.2f}; "
        f"{row.n_cells} cells)"
        for row in table.itertuples()
    ]
    summary = " > ".join(f"{p[k]:.2f}" for k in kinds) + (" holds" if ok else " does not hold")
    return _verdict("L9", label, claim, source, rule, ok, summary, lines)


def l10_downstream(runs, dataset=None, alpha=0.05, direction=None) -> Verdict:
    claim = "downstream accuracy correlates with the metrics except modularity on dSprites and Shapes3D; no sample-efficiency gain"
    source = "Sec. 5.5"
    rule = (
        f"on {' and '.join(DOWNSTREAM_DATASETS)}, per predictor, Spearman over runs: most "
        "metrics other than modularity correlate positively with the accuracy at the largest "
        f"train size (one-sided {alpha}), modularity does not, and most metrics do not "
        "correlate positively with the efficiency (accuracy at 100 / at 10,000)"
    )
    runs, label = _scope(runs, dataset)
    judged = runs[lo.dataset_of(runs).isin(DOWNSTREAM_DATASETS)] if runs is not None else None
    metrics = lo.present(judged, lo.PAPER_METRICS) if judged is not None else []
    if judged is None or judged.empty:
        why = f"no runs on {' or '.join(DOWNSTREAM_DATASETS)}"
        return _not_comparable("L10", label, claim, source, rule, why)
    table = lo.downstream_correlation(judged, metrics).dropna(subset=["rho"])
    sizes = [t for t in table["target"].unique() if t.startswith("accuracy_")]
    if (
        MODULARITY not in metrics
        or len(metrics) < 2
        or not sizes
        or "efficiency" not in set(table["target"])
    ):
        why = f"needs downstream accuracies at 100 and 10,000 samples, {MODULARITY} and another metric"
        return _not_comparable("L10", label, claim, source, rule, why)
    largest = max(sizes, key=lambda t: int(t.removeprefix("accuracy_")))
    passed, lines = [], []
    for (name, predictor), part in table.groupby(["dataset", "predictor"]):
        positive = {
            (r.metric, r.target): lo.one_sided(r.rho, r.p) <= alpha for r in part.itertuples()
        }
        plain = [m for m in metrics if m != MODULARITY and (m, largest) in positive]
        correlated = sum(positive[(m, largest)] for m in plain)
        modular = positive.get((MODULARITY, largest), False)
        efficient = sum(positive.get((m, "efficiency"), False) for m in metrics)
        ok = correlated > len(plain) / 2 and not modular and efficient <= len(metrics) / 2
        passed.append(ok)
        lines.append(
            f"{name} / {predictor}: {correlated}/{len(plain)} metrics correlate with "
            f"{largest}; modularity {'does' if modular else 'does not'}; {efficient}/"
            f"{len(metrics)} correlate with efficiency"
        )
    summary = f"{sum(passed)}/{len(passed)} dataset-predictor cells agree"
    return _verdict("L10", label, claim, source, rule, all(passed), summary, lines)


LOCATELLO_CHECKS: tuple[Check, ...] = (
    l2_total_correlation, l3_metric_agreement, l4_variance_shares, l5_seed_vs_setting,
    l7_unsupervised_selection, l9_transfer, l10_downstream,
)  # fmt: skip


def locatello_verdicts(
    runs: pd.DataFrame, alpha: float = 0.05, direction: Direction | None = None
) -> list[Verdict]:
    """Every Locatello finding with a rule, over all the datasets in ``runs``."""
    if direction is None and runs is not None and not runs.empty:
        direction = declared_outputs(runs).direction  # once: it may import the families
    return [check(runs, None, alpha, direction) for check in LOCATELLO_CHECKS]
