"""Locatello et al. 2019's analyses, each checked against an independent computation (scipy's
spearmanr, sums of squares and selections enumerated by hand), and its verdicts on runs built to
give each answer."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis import findings_locatello as fl
from analysis.findings import NOT_COMPARABLE, NOT_REPRODUCED, REPRODUCED
from analysis.locatello import (
    annotate,
    downstream_correlation,
    downstream_table,
    hyperparameter_correlation,
    method_of,
    seed_vs_setting,
    setting_of,
    setting_params,
    variance_decomposition,
)
from analysis.locatello_selection import (
    model_selection,
    selection_across,
    transfer_cells,
    transfer_table,
)
from trainables.core.outputs import Declared, Output

# Families' own outputs declare their directions; registered metrics come from the registry.
DIRECTION = Declared((Output("reconstruction_loss", False),)).direction
PAPER = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "modularity", "sap")
# method -> (family, fixed params, the swept param, its values, in order of regularisation)
METHODS = {
    "vae": ("vae", {}, "beta", ("1", "4", "16")),
    "dip_vae_i": ("dip_vae", {"params.dip_type": "i"}, "lambda_od", ("1", "5", "20")),
    "dip_vae_ii": ("dip_vae", {"params.dip_type": "ii"}, "lambda_od", ("1", "5", "20")),
    "annealed_vae": ("annealed_vae", {"params.gamma": "1000"}, "c_max", ("100", "25", "5")),
    "factor_vae": ("factor_vae", {}, "gamma", ("10", "30", "100")),
}


class Run(NamedTuple):
    dataset: int
    method: str
    m: int  # the method's position
    setting: int  # 0, 1, 2: weakest to strongest regularisation (annealed: c_max falls)
    seed: int
    quality: float  # one draw per run, for metrics that should agree


def build(
    values: dict[str, Callable[[Run], float]],
    rng: np.random.Generator,
    datasets=("dsprites", "shapes3d"),
    seeds=(0, 1, 2),
    methods=tuple(METHODS),
) -> pd.DataFrame:
    rows = []
    for d, dataset in enumerate(datasets):
        for m, method in enumerate(methods):
            family, fixed, param, settings = METHODS[method]
            for s, setting in enumerate(settings):
                for seed in seeds:
                    run = Run(d, method, m, s, seed, float(rng.normal()))
                    rows.append({
                        "tags.family": family, "params.dataset.name": dataset,
                        "params.seed": str(seed), f"params.{param}": setting, **fixed,
                        **{f"metrics.{k}": float(f(run)) for k, f in values.items()},
                    })  # fmt: skip
    return pd.DataFrame(rows).assign(run_id=lambda f: [f"run-{i}" for i in range(len(f))])


def paper_metrics(rng, noise=0.1, modularity=None):
    """The paper's six metrics: the run's quality plus noise; modularity independent unless given."""
    out = {m: (lambda r: r.quality + noise * rng.normal()) for m in PAPER if m != "modularity"}
    out["modularity"] = modularity or (lambda r: rng.normal())
    return out


# -- methods and settings --------------------------------------------------------------------


def test_method_of_keeps_dip_vae_types_apart():
    runs = pd.DataFrame({
        "tags.family": ["vae", "dip_vae", "dip_vae", "dip_vae", "factor_vae"],
        "params.dip_type": [None, "i", "ii", None, None],
    })  # fmt: skip
    # a DIP-VAE run that logged no type ran the family's default, type i
    assert method_of(runs).tolist() == ["vae", "dip_vae_i", "dip_vae_ii", "dip_vae_i", "factor_vae"]
    no_column = pd.DataFrame({"tags.family": ["dip_vae", "vae"]})
    assert method_of(no_column).tolist() == ["dip_vae_i", "vae"]


def test_settings_are_what_varies_within_a_method_on_a_dataset(rng):
    runs = build({"mig": lambda r: 0.0}, rng)
    runs["params.steps"] = np.where(runs["params.dataset.name"] == "dsprites", "100", "200")
    runs["params.dataset.n_train"] = runs["params.seed"]  # a dataset param: never a setting
    params = setting_params(runs)
    assert params == {
        "annealed_vae": ["params.c_max"], "dip_vae_i": ["params.lambda_od"],
        "dip_vae_ii": ["params.lambda_od"], "factor_vae": ["params.gamma"], "vae": ["params.beta"],
    }  # fmt: skip
    labels = setting_of(runs)
    assert labels[runs["params.beta"] == "4"].unique().tolist() == ["beta=4"]
    assert labels[runs["tags.family"] == "annealed_vae"].nunique() == 3  # gamma is fixed
    # a second varying param joins the label
    runs.loc[runs["tags.family"] == "vae", "params.lr"] = ["0.1", "0.2"] * 9
    assert setting_of(runs).iloc[0] == "beta=1, lr=0.1"


# -- downstream accuracy, efficiency, correlations ---------------------------------------------


def downstream_runs(rng):
    values = paper_metrics(rng)
    for size in (10, 100, 1000, 10000):
        values[f"downstream_lr_{size}"] = lambda r, size=size: 0.5 + 0.1 * r.quality + rng.random()
    return build(values, rng)


def test_downstream_table_reads_or_computes_the_efficiency(rng):
    runs = downstream_runs(rng)
    runs.loc[0, "metrics.downstream_lr_10000"] = np.nan
    runs["metrics.downstream_lr_efficiency"] = np.nan
    runs.loc[1, "metrics.downstream_lr_efficiency"] = 0.25  # logged: kept
    runs.loc[2:3, "metrics.downstream_gbt_100"] = [0.4, 0.6]
    runs.loc[2:3, "metrics.downstream_gbt_10000"] = [0.8, 0.0]
    table = downstream_table(runs)
    lr = table[table["predictor"] == "lr"].set_index("run_id")
    assert len(lr) == len(runs)
    expected = runs["metrics.downstream_lr_100"] / runs["metrics.downstream_lr_10000"]
    for i in range(2, len(runs)):
        assert lr.loc[f"run-{i}", "efficiency"] == pytest.approx(expected[i])
        assert lr.loc[f"run-{i}", "accuracy_1000"] == runs.loc[i, "metrics.downstream_lr_1000"]
    assert math.isnan(lr.loc["run-0", "efficiency"]) and lr.loc["run-1", "efficiency"] == 0.25
    gbt = table[table["predictor"] == "gbt"].set_index("run_id")
    assert gbt.index.tolist() == ["run-2", "run-3"]  # only runs that logged it
    assert gbt.loc["run-2", "efficiency"] == pytest.approx(0.5)
    assert math.isnan(gbt.loc["run-3", "efficiency"])  # no ratio over a zero accuracy
    assert (
        lr.loc["run-14", "method"] == "dip_vae_i" and lr.loc["run-14", "setting"] == "lambda_od=5"
    )
    assert set(table.columns) >= {"dataset", "method", "setting", "seed", "accuracy_10"}


def test_downstream_correlation_equals_scipy(rng):
    runs = downstream_runs(rng)
    runs.loc[5, "metrics.mig"] = np.nan
    table = downstream_correlation(runs, ["mig", "modularity"], predictors=("lr",))
    assert set(table["target"]) == {f"accuracy_{n}" for n in (10, 100, 1000, 10000)} | {
        "efficiency"
    }
    for row in table.itertuples():
        part = runs[runs["params.dataset.name"] == row.dataset]
        if row.target == "efficiency":
            y = part["metrics.downstream_lr_100"] / part["metrics.downstream_lr_10000"]
        else:
            y = part[f"metrics.downstream_lr_{row.target.removeprefix('accuracy_')}"]
        x = part[f"metrics.{row.metric}"]
        keep = x.notna() & y.notna()
        expected = stats.spearmanr(x[keep], y[keep])
        assert row.rho == pytest.approx(expected.statistic)
        assert row.p == pytest.approx(expected.pvalue)
        assert row.n == keep.sum()


def test_hyperparameter_correlation_equals_scipy(rng):
    runs = build({"gaussian_total_correlation": lambda r: r.setting + rng.random()}, rng)
    table = hyperparameter_correlation(runs, "gaussian_total_correlation")
    assert len(table) == 2 * 5 and set(table["hyperparameter"]) == {
        "beta",
        "lambda_od",
        "c_max",
        "gamma",
    }
    for row in table.itertuples():
        part = runs[(runs["params.dataset.name"] == row.dataset)]
        part = part[method_of(part) == row.method]
        x = part[f"params.{row.hyperparameter}"].astype(float)
        expected = stats.spearmanr(x, part["metrics.gaussian_total_correlation"])
        assert (row.rho, row.p) == pytest.approx((expected.statistic, expected.pvalue))
    # annealed_vae's c_max falls as the regularisation grows: the sign flips
    annealed = table[table["method"] == "annealed_vae"]
    assert (annealed["rho"] < 0).all() and (table[table["method"] == "vae"]["rho"] > 0).all()
    only_beta = hyperparameter_correlation(runs, "gaussian_total_correlation", "beta")
    assert set(only_beta["method"]) == {"vae"}
    mapped = hyperparameter_correlation(runs, "gaussian_total_correlation", {"factor_vae": "gamma"})
    assert set(mapped["method"]) == {"factor_vae"}


# -- variance shares and seeds ------------------------------------------------------------------


def hand_sums_of_squares(values, methods, settings):
    """Nested sums of squares, written out."""
    by_method, by_setting = defaultdict(list), defaultdict(list)
    for v, m, s in zip(values, methods, settings, strict=True):
        by_method[m].append(v)
        by_setting[(m, s)].append(v)
    grand = sum(values) / len(values)
    total = sum((v - grand) ** 2 for v in values)
    method = sum(len(g) * (sum(g) / len(g) - grand) ** 2 for g in by_method.values())
    setting = sum(
        len(g) * (sum(g) / len(g) - sum(by_method[m]) / len(by_method[m])) ** 2
        for (m, _), g in by_setting.items()
    )
    seed = sum(sum((v - sum(g) / len(g)) ** 2 for v in g) for g in by_setting.values())
    return total, method, setting, seed


def test_variance_decomposition_equals_hand_sums_of_squares(rng):
    values = {
        "mig": lambda r: r.m + 0.5 * r.setting + 0.3 * rng.normal(),
        "sap": lambda r: 2.0 * r.m,  # the method alone
        "dci_disentanglement": lambda r: float(r.seed),  # the seed alone
    }
    runs = build(values, rng).drop(index=[0, 7, 30])  # unequal groups
    table = variance_decomposition(runs, ["mig", "sap", "dci_disentanglement"])
    marked = annotate(runs)
    for row in table.itertuples():
        part = marked[marked["params.dataset.name"] == row.dataset]
        total, method, setting, seed = hand_sums_of_squares(
            part[f"metrics.{row.metric}"].tolist(), part["tags._method"].tolist(),
            part["tags._setting"].tolist(),
        )  # fmt: skip
        assert (row.ss_total, row.ss_method, row.ss_setting, row.ss_seed) == pytest.approx(
            (total, method, setting, seed)
        )
        assert row.method_share + row.setting_share + row.seed_share == pytest.approx(1.0)
        assert (row.n_methods, row.n_settings, row.n_runs) == (5, 15, len(part))
    sap = table[table["metric"] == "sap"].iloc[0]
    assert sap["method_share"] == pytest.approx(1.0)
    dci = table[table["metric"] == "dci_disentanglement"].iloc[0]
    assert dci["method_share"] + dci["setting_share"] < 0.05  # unequal groups: not exactly 0
    assert dci["seed_share"] > 0.95


def test_seed_vs_setting_equals_brute_force(rng):
    values = {
        "mig": lambda r: r.setting + rng.normal(),
        "reconstruction_loss": lambda r: rng.random(),
    }
    runs = build(values, rng)
    table = seed_vs_setting(runs, ["mig", "reconstruction_loss"], DIRECTION)
    assert len(table) == 2 * 5 * 2
    marked = annotate(runs)
    for row in table.itertuples():
        part = marked[(marked["params.dataset.name"] == row.dataset)]
        part = part[part["tags._method"] == row.method]
        groups = defaultdict(list)
        for setting, v in zip(part["tags._setting"], part[f"metrics.{row.metric}"], strict=True):
            groups[setting].append(v)
        means = {s: sum(v) / len(v) for s, v in groups.items()}
        lower = row.metric == "reconstruction_loss"
        best = (min if lower else max)(means, key=means.get)
        worst = (max if lower else min)(means, key=means.get)
        worst_at_best = (max if lower else min)(groups[best])
        best_at_worst = (min if lower else max)(groups[worst])
        assert (row.best_setting, row.worst_setting) == (best, worst)
        assert (row.worst_seed_at_best, row.best_seed_at_worst) == (worst_at_best, best_at_worst)
        loses = worst_at_best > best_at_worst if lower else worst_at_best < best_at_worst
        assert row.loses == loses
    with pytest.raises(ValueError, match="direction"):
        seed_vs_setting(
            runs.assign(**{"metrics.mutual_info_score": 1.0}), ["mutual_info_score"], DIRECTION
        )


# -- model selection and transfer ----------------------------------------------------------------


def test_model_selection_equals_enumeration(rng):
    values = {
        "gaussian_total_correlation": lambda r: float(rng.integers(0, 4)),  # ties in the choice
        "mig": lambda r: float(rng.integers(0, 5)),  # ties in the judgement
    }
    runs = build(values, rng)
    for within in (True, False):
        table = model_selection(
            runs, "gaussian_total_correlation", "mig", select_higher=False,
            direction=DIRECTION, within_method=within,
        )  # fmt: skip
        assert len(table) == (10 if within else 2)
        for row in table.itertuples():
            pool = runs[runs["params.dataset.name"] == row.dataset]
            if within:
                pool = pool[method_of(pool) == row.method]
            select = pool["metrics.gaussian_total_correlation"].tolist()
            target = pool["metrics.mig"].tolist()
            chosen = [i for i, v in enumerate(select) if v == min(select)]
            n = len(target)
            wins = [sum(target[c] >= target[r] for r in range(n)) / n for c in chosen]
            chance = sum(target[a] >= target[b] for a in range(n) for b in range(n)) / n**2
            assert row.probability == pytest.approx(sum(wins) / len(wins))
            assert row.chance == pytest.approx(chance)
            assert row.n_runs == n
    # reconstruction's direction is declared: lower loss chooses
    recon = runs.assign(
        **{"metrics.reconstruction_loss": runs["metrics.gaussian_total_correlation"]}
    )
    by_loss = model_selection(recon, "reconstruction_loss", "mig", direction=DIRECTION)
    by_tc = model_selection(
        runs, "gaussian_total_correlation", "mig", select_higher=False, direction=DIRECTION
    )
    assert by_loss["probability"].tolist() == by_tc["probability"].tolist()
    with pytest.raises(ValueError, match="direction"):
        model_selection(runs, "gaussian_total_correlation", "mig", direction=DIRECTION)


def brute_force_across(source, destination, select, target):
    """Per source seed: the best setting by ``select``; its share of destination settings it is no
    worse than by mean ``target``; averaged over seeds (higher is better for both)."""
    a, b = annotate(source), annotate(destination)
    sums = defaultdict(list)
    for key, v in zip(
        zip(b["tags._method"], b["tags._setting"], strict=True), b[f"metrics.{target}"], strict=True
    ):
        sums[key].append(v)
    scores = {k: sum(v) / len(v) for k, v in sums.items()}
    per_seed = []
    for seed in sorted(set(a["params.seed"])):
        on = a[a["params.seed"] == seed]
        values = dict(
            zip(
                zip(on["tags._method"], on["tags._setting"], strict=True),
                on[f"metrics.{select}"],
                strict=True,
            )
        )
        best = max(values.values())
        chosen = [k for k, v in values.items() if v == best and k in scores]
        wins = [sum(scores[c] >= s for s in scores.values()) / len(scores) for c in chosen]
        per_seed.append(sum(wins) / len(wins))
    return sum(per_seed) / len(per_seed)


def brute_force_within(runs, select, target):
    """Per seed: the best setting by ``select``; judged by the other seeds' mean ``target``."""
    marked = annotate(runs)
    keys = list(zip(marked["tags._method"], marked["tags._setting"], strict=True))
    per_seed = []
    for seed in sorted(set(marked["params.seed"])):
        mine = (marked["params.seed"] == seed).tolist()
        values = {
            k: v for k, v, m in zip(keys, marked[f"metrics.{select}"], mine, strict=True) if m
        }
        others = defaultdict(list)
        for k, v, m in zip(keys, marked[f"metrics.{target}"], mine, strict=True):
            if not m:
                others[k].append(v)
        scores = {k: sum(v) / len(v) for k, v in others.items()}
        best = max(values.values())
        chosen = [k for k, v in values.items() if v == best]
        per_seed.append(
            sum(sum(scores[c] >= s for s in scores.values()) / len(scores) for c in chosen)
            / len(chosen)
        )
    return sum(per_seed) / len(per_seed)


def test_transfer_equals_enumeration(rng):
    values = {"mig": lambda r: rng.normal(), "sap": lambda r: rng.normal()}
    runs = build(values, rng)
    dsprites = runs[runs["params.dataset.name"] == "dsprites"]
    shapes = runs[runs["params.dataset.name"] == "shapes3d"]
    probability, chance = selection_across(
        annotate(dsprites), annotate(shapes), "mig", "sap", direction=DIRECTION
    )
    assert probability == pytest.approx(brute_force_across(dsprites, shapes, "mig", "sap"))
    assert 0.5 < chance < 0.6  # 1/2 + 1/30 for 15 distinct settings
    cells = transfer_cells(runs, ["mig", "sap"], DIRECTION)
    assert len(cells) == 4 * 2 * 2  # (2 same-dataset + 2 ordered pairs) x 2 x 2 metric pairs
    frames = {"dsprites": dsprites, "shapes3d": shapes}
    for row in cells.itertuples():
        if row.source == row.destination:
            expected = brute_force_within(frames[row.source], row.select, row.target)
        else:
            expected = brute_force_across(
                frames[row.source], frames[row.destination], row.select, row.target
            )
        assert row.probability == pytest.approx(expected)
        kind = ("same metric" if row.select == row.target else "metrics") + (
            " dataset" if row.source == row.destination else " datasets"
        )
        assert {"same metric dataset": "same metric and dataset",
                "metrics dataset": "across metrics, same dataset",
                "same metric datasets": "across datasets, same metric",
                "metrics datasets": "across metrics and datasets"}[kind] == row.kind  # fmt: skip
    table = transfer_table(runs, ["mig", "sap"], DIRECTION)
    assert table.index.tolist() == [
        "same metric and dataset", "across metrics, same dataset",
        "across datasets, same metric", "across metrics and datasets",
    ]  # fmt: skip
    for kind, row in table.iterrows():
        assert row["probability"] == pytest.approx(
            cells[cells["kind"] == kind]["probability"].mean()
        )
        assert row["n_cells"] == 4
    assert table.loc["same metric and dataset", "paper"] == 0.81
    one = transfer_table(dsprites, ["mig", "sap"], DIRECTION)
    assert one.loc["across datasets, same metric", "n_cells"] == 0
    assert math.isnan(one.loc["across datasets, same metric", "probability"])


# -- verdicts -----------------------------------------------------------------------------------


def verdict(check, runs, **kwargs):
    return check(runs, None, 0.05, DIRECTION, **kwargs)


def strength(r: Run) -> float:
    return float(r.setting)  # the builder orders every method's settings by regularisation


def test_l2_verdicts(rng):
    grows = {
        "gaussian_total_correlation": lambda r: strength(r) + 0.2 * rng.random(),
        "gaussian_total_correlation_sampled": lambda r: -strength(r) + 0.2 * rng.random(),
    }
    result = verdict(fl.l2_total_correlation, build(grows, rng))
    assert result.verdict == REPRODUCED and result.dataset == "dsprites, shapes3d"
    assert result.evidence.startswith("10/10 dataset-method cells agree")
    falls = {**grows, "gaussian_total_correlation": lambda r: -strength(r) + 0.2 * rng.random()}
    result = verdict(fl.l2_total_correlation, build(falls, rng))
    # only DIP-VAE-I (the paper's exception) still agrees
    assert result.verdict == NOT_REPRODUCED and result.evidence.startswith("2/10")
    missing = build({"gaussian_total_correlation": strength}, rng)
    assert verdict(fl.l2_total_correlation, missing).verdict == NOT_COMPARABLE
    one = fl.l2_total_correlation(build(grows, rng), "shapes3d", 0.05, DIRECTION)
    assert one.verdict == REPRODUCED and one.dataset == "shapes3d"


def test_l3_verdicts(rng):
    result = verdict(fl.l3_metric_agreement, build(paper_metrics(rng), rng))
    assert result.verdict == REPRODUCED, result.evidence
    agreeing = paper_metrics(rng, modularity=lambda r: r.quality)
    assert verdict(fl.l3_metric_agreement, build(agreeing, rng)).verdict == NOT_REPRODUCED
    without = {k: v for k, v in paper_metrics(rng).items() if k != "modularity"}
    result = verdict(fl.l3_metric_agreement, build(without, rng))
    assert result.verdict == NOT_COMPARABLE and "modularity" in result.evidence


def test_l4_verdicts(rng):
    within = {m: (lambda r: r.setting + rng.normal()) for m in ("mig", "sap")}
    assert verdict(fl.l4_variance_shares, build(within, rng)).verdict == REPRODUCED
    between = {m: (lambda r: 10.0 * r.m + 0.1 * rng.normal()) for m in ("mig", "sap")}
    assert verdict(fl.l4_variance_shares, build(between, rng)).verdict == NOT_REPRODUCED
    one_method = verdict(fl.l4_variance_shares, build(within, rng, methods=("vae",)))
    assert one_method.verdict == NOT_COMPARABLE and "one method" in one_method.evidence
    one_seed = verdict(fl.l4_variance_shares, build(within, rng, seeds=(0,)))
    assert one_seed.verdict == NOT_COMPARABLE and "seed" in one_seed.evidence


def test_l5_verdicts(rng):
    lucky = {"mig": lambda r: 0.1 * r.setting + rng.normal()}
    assert verdict(fl.l5_seed_vs_setting, build(lucky, rng)).verdict == REPRODUCED
    steady = {"mig": lambda r: r.setting + 0.01 * rng.normal()}
    result = verdict(fl.l5_seed_vs_setting, build(steady, rng))
    assert result.verdict == NOT_REPRODUCED and result.evidence.startswith("loses in 0/10")
    assert verdict(fl.l5_seed_vs_setting, build(lucky, rng, seeds=(0,))).verdict == NOT_COMPARABLE


def test_l7_verdicts(rng):
    blind = {
        **paper_metrics(rng), "gaussian_total_correlation": lambda r: rng.normal(),
        "reconstruction_loss": lambda r: rng.normal(),
    }  # fmt: skip
    result = verdict(fl.l7_unsupervised_selection, build(blind, rng))
    assert result.verdict == REPRODUCED, result.evidence
    assert "reconstruction_loss" in result.evidence
    seeing = {**blind, "gaussian_total_correlation": lambda r: -r.quality}  # lower TC, better
    result = verdict(fl.l7_unsupervised_selection, build(seeing, rng))
    assert result.verdict == NOT_REPRODUCED, result.evidence
    no_selector = verdict(fl.l7_unsupervised_selection, build(paper_metrics(rng), rng))
    assert no_selector.verdict == NOT_COMPARABLE


def test_l9_verdicts(rng):
    # per metric and setting a value; the second dataset keeps half of it; metrics independent
    settings = {(m, s): None for m in METHODS for s in range(3)}
    base = {
        k: {key: rng.normal() for key in settings} for k in ("mig", "sap", "dci_disentanglement")
    }
    other = {k: {key: v + rng.normal() for key, v in b.items()} for k, b in base.items()}

    def value(metric):
        table = (base[metric], other[metric])
        return lambda r: table[r.dataset][(r.method, r.setting)] + 0.05 * rng.normal()

    runs = build({k: value(k) for k in base}, rng)
    result = verdict(fl.l9_transfer, runs)
    assert result.verdict == REPRODUCED, result.evidence
    same = {k: (lambda r: float(r.m * 3 + r.setting)) for k in base}  # everything agrees: all 1.0
    result = verdict(fl.l9_transfer, build(same, rng))
    assert result.verdict == NOT_REPRODUCED and result.evidence.startswith("1.00 > 1.00 > 1.00")
    one = verdict(fl.l9_transfer, runs[runs["params.dataset.name"] == "dsprites"])
    assert one.verdict == NOT_COMPARABLE and "two datasets" in one.evidence


def test_l10_verdicts(rng):
    def downstream(modularity=None):
        values = paper_metrics(rng, noise=0.3, modularity=modularity)
        values["downstream_lr_10000"] = lambda r: 0.6 + 0.1 * r.quality
        values["downstream_lr_100"] = lambda r: 0.3 * rng.random()
        return values

    result = verdict(fl.l10_downstream, build(downstream(), rng))
    assert result.verdict == REPRODUCED, result.evidence
    result = verdict(fl.l10_downstream, build(downstream(lambda r: r.quality), rng))
    assert result.verdict == NOT_REPRODUCED
    assert verdict(fl.l10_downstream, build(paper_metrics(rng), rng)).verdict == NOT_COMPARABLE
    mpi = verdict(fl.l10_downstream, build(downstream(), rng, datasets=("mpi3d",)))
    assert mpi.verdict == NOT_COMPARABLE and "dsprites" in mpi.evidence


def test_locatello_verdicts_cover_every_rule(rng):
    verdicts = fl.locatello_verdicts(build(paper_metrics(rng), rng), direction=DIRECTION)
    assert [v.id for v in verdicts] == ["L2", "L3", "L4", "L5", "L7", "L9", "L10"]
    assert {v.verdict for v in verdicts} <= {REPRODUCED, NOT_REPRODUCED, NOT_COMPARABLE}
    assert fl.l2_total_correlation(None, None).verdict == NOT_COMPARABLE
