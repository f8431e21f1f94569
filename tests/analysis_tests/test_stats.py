"""Statistics over a runs frame: every number checked against scipy/numpy or a known value."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from analysis.stats import (
    best_marks,
    format_table,
    interval_table,
    metric_rank_correlation,
    selection_transfer,
    single_task_summary,
    variance_explained,
)
from trainables.core.outputs import Declared, Output

# rmse is a family's output: its direction comes from what the runs declare (``Trainer.outputs``).
RMSE = Declared((Output("rmse", False),))


def frame(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame(rows).assign(run_id=lambda f: [f"run-{i}" for i in range(len(f))])


@pytest.fixture
def groups() -> pd.DataFrame:
    """Groups whose intervals overlap or not by construction (t_{0.975,2} / sqrt(3) ≈ 2.48)."""
    values = {  # group: (mig values, rmse values)
        "a": ([1, 2, 3], [1, 2, 3]),
        "b_1": ([9, 10, 11], [5, 6, 7]),
        "c": ([11, 12, 13], [11, 12, 13]),
        "d": ([12], [2]),  # one run: no interval
        "e": ([11.5], [2.5]),
    }
    rows = []
    for name, (mig, rmse) in values.items():
        for seed, (m, r) in enumerate(zip(mig, rmse, strict=True)):
            rows.append({"params.loss_kind": name, "params.seed": str(seed),
                         "metrics.mig": float(m), "metrics.rmse": float(r),
                         "metrics.mig_active_dims": 3.0})  # fmt: skip
    return frame(rows)


def test_interval_table_matches_scipy_t_interval(groups):
    table = interval_table(groups, ["loss_kind"], ["mig", "rmse"])
    assert table.index.name == "loss_kind"
    assert list(table.columns.get_level_values(1)[:4]) == ["mean", "std", "n", "ci"]
    # analytically: {1,2,3} has mean 2, std 1 and half-width t_{0.975,2} / sqrt(3)
    a = table.loc["a", "mig"]
    assert (a["mean"], a["std"], a["n"]) == (2.0, 1.0, 3)
    assert a["ci"] == pytest.approx(stats.t.ppf(0.975, 2) / math.sqrt(3))
    for name, values in groups.groupby("params.loss_kind")["metrics.mig"]:
        if len(values) < 2:
            assert table.loc[name, ("mig", "n")] == 1 and math.isnan(table.loc[name, ("mig", "ci")])
            continue
        lo, hi = stats.t.interval(0.9, len(values) - 1, values.mean(), stats.sem(values))
        narrow = interval_table(groups, ["loss_kind"], ["mig"], confidence=0.9)
        assert narrow.loc[name, ("mig", "ci")] == pytest.approx((hi - lo) / 2)
        assert narrow.loc[name, ("mig", "std")] == pytest.approx(np.std(values, ddof=1))


def test_interval_table_keeps_missing_params_and_several_keys():
    runs = frame([
        {"params.family": "vae", "params.beta": "4", "metrics.mig": 0.2},
        {"params.family": "vae", "params.beta": "4", "metrics.mig": 0.4},
        {"params.family": "ae", "params.beta": None, "metrics.mig": 0.1},
    ])  # fmt: skip
    table = interval_table(runs, ["family", "params.beta"], ["mig"])
    assert list(table.index.names) == ["family", "beta"]
    assert len(table) == 2  # the ae group (no beta) is kept
    assert table.loc[("vae", "4"), ("mig", "mean")] == pytest.approx(0.3)
    with pytest.raises(KeyError, match="not in the runs frame"):
        interval_table(runs, ["family"], ["sap"])


def test_best_marks_overlap_direction_and_single_runs(groups):
    table = interval_table(groups, ["loss_kind"], ["mig", "rmse", "mig_active_dims"])
    marks = best_marks(table, direction=RMSE.direction)
    # mig: c is best (12 ± 2.48); b (10 ± 2.48) overlaps; a does not; d equals the best with one
    # run; e lies inside c's interval but has no interval of its own, so it is not marked
    assert marks["mig"].to_dict() == {"a": False, "b_1": True, "c": True, "d": True, "e": False}
    # rmse is lower-is-better: a (2) is best; b (6) overlaps (gap 4 < 2 * 2.48), c (12) does not
    assert marks["rmse"].to_dict() == {"a": True, "b_1": True, "c": False, "d": True, "e": False}
    assert not marks["mig_active_dims"].any()  # a count: no direction, nothing bold


def test_best_marks_best_group_without_interval():
    runs = frame([{"params.g": "x", "metrics.mig": 10.0}]
                 + [{"params.g": "y", "metrics.mig": v} for v in (8.0, 9.0, 10.0)]
                 + [{"params.g": "z", "metrics.mig": v} for v in (5.0, 6.0, 7.0)])  # fmt: skip
    marks = best_marks(interval_table(runs, ["g"], ["mig"]))
    # best x is the point 10: y's interval 9 ± 2.48 holds it, z's 6 ± 2.48 does not
    assert marks["mig"].to_dict() == {"x": True, "y": True, "z": False}


def test_format_table_markdown_and_latex(groups):
    table = interval_table(groups, ["loss_kind"], ["mig", "rmse"])
    marks = best_marks(table, direction=RMSE.direction)
    markdown = format_table(table, marks, digits=2)
    lines = markdown.splitlines()
    assert lines[0] == "| loss_kind | mig | rmse |"
    assert "| c | **12.00 ± 1.00** | 12.00 ± 1.00 |" in lines
    assert "| d | **12.00** | **2.00** |" in lines  # one run: the mean only
    assert "| e | 11.50 | 2.50 |" in lines
    assert len(lines) == 2 + 5

    latex = format_table(table, marks, fmt="latex", digits=1)
    assert r"b\_1 & \textbf{10.0 $\pm$ 1.0} & \textbf{6.0 $\pm$ 1.0} \\" in latex
    assert r"loss\_kind & mig & rmse \\" in latex
    assert re.search(r"(?<!\\)_", latex) is None  # every underscore escaped
    assert latex.startswith(r"\begin{tabular}{lrr}") and latex.rstrip().endswith(r"\end{tabular}")
    assert "**" not in format_table(table, fmt="markdown")  # no marks, no bold
    with pytest.raises(ValueError, match="markdown"):
        format_table(table, marks, fmt="html")


def test_single_task_summary_averages_seeds_before_tasks():
    per_task = {"0": [0.2, 0.4], "1": [0.8], "2": [0.5, 0.5, 0.5]}
    rows = [
        {"params.variant": "single_task", "params.task_index": task, "metrics.rmse": value}
        for task, values in per_task.items()
        for value in values
    ]
    rows += [{"params.variant": "multi_head", "params.task_index": "0", "metrics.rmse": v}
             for v in (0.6, 0.7)]  # fmt: skip
    rows.append({"params.variant": "multi_head", "params.task_index": "0", "metrics.rmse": None})
    summary = single_task_summary(frame(rows), "rmse")
    task_means = [np.mean(v) for v in per_task.values()]
    single = summary.loc["single_task"]
    assert summary.index.tolist() == ["single_task", "multi_head"]
    assert single["mean"] == pytest.approx(np.mean(task_means))  # 0.533, not the run mean 0.483
    assert single["mean"] != pytest.approx(np.mean(sum(per_task.values(), [])))
    assert (single["max"], single["min"], single["n"]) == pytest.approx((0.8, 0.3, 3))
    head = summary.loc["multi_head"]
    assert head["mean"] == pytest.approx(0.65) and head["n"] == 2 and math.isnan(head["max"])


def test_metric_rank_correlation_equals_scipy_per_dataset(rng):
    rows = []
    for dataset in ("dsprites", "shapes3d"):
        for i in range(12):
            mig = rng.random()
            rows.append({
                "params.dataset.name": dataset,
                "metrics.mig": mig,
                "metrics.dci_disentanglement": round(mig + 0.3 * rng.random(), 1),  # ties
                "metrics.sap": rng.random(),
                "metrics.beta_vae": 0.5 if dataset == "dsprites" else float(i),  # constant once
                "metrics.factor_vae": np.nan,
            })  # fmt: skip
    runs = frame(rows)
    runs.loc[3, "metrics.sap"] = np.nan
    metrics = ["mig", "dci_disentanglement", "sap", "beta_vae", "factor_vae"]
    matrices = metric_rank_correlation(runs, metrics)
    assert sorted(matrices) == ["dsprites", "shapes3d"]
    assert matrices["dsprites"].columns.tolist() == ["mig", "dci_disentanglement", "sap"]
    assert matrices["shapes3d"].columns.tolist() == metrics[:4]
    for dataset, matrix in matrices.items():
        part = runs[runs["params.dataset.name"] == dataset]
        full = part.dropna(subset=["metrics.sap"])  # pairs use the runs where both are present
        for x in matrix.columns:
            for y in matrix.columns:
                used = full if "sap" in (x, y) else part
                rho = stats.spearmanr(used[f"metrics.{x}"], used[f"metrics.{y}"]).statistic
                assert matrix.loc[x, y] == pytest.approx(rho)
    pooled = metric_rank_correlation(runs, metrics[:2], by=None)
    rho = stats.spearmanr(runs["metrics.mig"], runs["metrics.dci_disentanglement"]).statistic
    assert list(pooled) == ["all"] and pooled["all"].iloc[0, 1] == pytest.approx(rho)


def test_variance_explained_is_eta_squared(rng):
    rows = []
    for family, effect, noise in (("vae", 1.0, 0.5), ("seedless", 1.0, 0.0), ("flat", 0.0, 1.0)):
        for b, beta in enumerate(("1", "4", "16")):
            for seed in range(3):
                value = effect * b + noise * (seed if family == "flat" else rng.normal())
                rows.append({"tags.family": family, "params.beta": beta,
                             "params.seed": str(seed), "metrics.mig": value})  # fmt: skip
    runs = frame(rows)
    table = variance_explained(runs, "mig", "beta").set_index("method")
    assert table.columns.tolist() == [
        "hyperparameter", "eta_squared", "seed_share", "n_runs", "n_settings"
    ]  # fmt: skip
    vae = runs[runs["tags.family"] == "vae"]
    samples = [g.to_numpy() for _, g in vae.groupby("params.beta")["metrics.mig"]]
    grand = vae["metrics.mig"].mean()
    between = sum(len(s) * (s.mean() - grand) ** 2 for s in samples)
    total = ((vae["metrics.mig"] - grand) ** 2).sum()
    assert table.loc["vae", "eta_squared"] == pytest.approx(between / total)
    f = stats.f_oneway(*samples).statistic  # eta² = F(k-1) / (F(k-1) + N - k)
    assert table.loc["vae", "eta_squared"] == pytest.approx(2 * f / (2 * f + 9 - 3))
    assert table.loc["vae", "seed_share"] == pytest.approx(1 - between / total)
    assert table.loc["seedless", "eta_squared"] == pytest.approx(1.0)  # the seed has no effect
    assert table.loc["flat", "eta_squared"] == pytest.approx(0.0, abs=1e-12)  # beta has none
    assert table.loc["vae", "hyperparameter"] == "beta"
    assert (table.loc["vae", "n_runs"], table.loc["vae", "n_settings"]) == (9, 3)


@pytest.fixture
def transfer_runs() -> pd.DataFrame:
    """Three betas, two seeds; the chosen setting's target rank is known by hand."""
    mig = {"0": {"1": 0.9, "4": 0.5, "16": 0.1}, "1": {"1": 0.1, "4": 0.9, "16": 0.5}}
    dci = {"0": {"1": 0.2, "4": 0.8, "16": 0.5}, "1": {"1": 0.3, "4": 0.6, "16": 0.9}}
    return frame([
        {"params.beta": beta, "params.seed": seed, "metrics.mig": mig[seed][beta],
         "metrics.dci_disentanglement": dci[seed][beta], "metrics.rmse": -dci[seed][beta],
         "tags.outputs": RMSE.to_tag()}
        for seed in mig for beta in mig[seed]
    ])  # fmt: skip


def test_selection_transfer_known_fractions(transfer_runs):
    # other seeds: seed 0 picks beta 1, last of three on seed 1's dci (1/3);
    # seed 1 picks beta 4, first on seed 0's dci (3/3): mean 2/3
    args = (transfer_runs, "mig", "dci_disentanglement", ["beta"])
    assert selection_transfer(*args) == pytest.approx(2 / 3)
    # same runs: beta 1 is last on seed 0 (1/3), beta 4 beats one of two others on seed 1 (2/3)
    assert selection_transfer(*args, other_seeds=False) == pytest.approx(1 / 2)
    # a lower-is-better target ranked the same way gives the same answers
    assert selection_transfer(transfer_runs, "mig", "rmse", ["beta"]) == pytest.approx(2 / 3)
    # a tie in the selection averages the tied settings: seed 0 -> (1/3 + 3/3) / 2
    tied = transfer_runs.copy()
    tied.loc[(tied["params.seed"] == "0") & (tied["params.beta"] == "4"), "metrics.mig"] = 0.9
    same = selection_transfer(tied, "mig", "dci_disentanglement", ["beta"], other_seeds=False)
    assert same == pytest.approx(((1 / 3 + 1) / 2 + 2 / 3) / 2)
    with pytest.raises(ValueError, match="direction"):
        counted = transfer_runs.assign(**{"metrics.mig_active_dims": 3.0})
        selection_transfer(counted, "mig_active_dims", "mig", ["beta"])


def test_selection_transfer_judges_settings_with_another_familys_params_missing(transfer_runs):
    """Two families in one frame: a vae setting has no gamma and a factor_vae one no beta (NaN).
    Each setting is still found and judged (a lookup by value would miss it: NaN != NaN)."""
    other = transfer_runs.assign(**{"params.beta": math.nan, "params.gamma": transfer_runs["params.beta"]})
    other["metrics.mig"] -= 0.05  # each factor_vae setting just below its vae twin: never chosen
    both = pd.concat([transfer_runs.assign(**{"params.gamma": math.nan}), other], ignore_index=True)
    # seed 0 picks vae beta 1: on seed 1's dci it beats its factor_vae twin (tie, counts) and
    # none of the other four: 2/6; seed 1 picks vae beta 4: first with its twin: 6/6
    got = selection_transfer(both, "mig", "dci_disentanglement", ["beta", "gamma"])
    assert got == pytest.approx((2 / 6 + 6 / 6) / 2)


def test_selection_transfer_is_one_when_metrics_agree(rng):
    rows = [
        {"params.beta": str(b), "params.lr": lr, "params.seed": str(s),
         "metrics.mig": 2 * b + i + 0.1 * rng.random()}
        for b in range(4) for i, lr in enumerate(("0.001", "0.01")) for s in range(3)
    ]  # fmt: skip
    runs = frame(rows)
    # seeds only add noise smaller than the gaps between settings: the ranking transfers
    assert selection_transfer(runs, "mig", "mig", ["beta", "lr"]) == 1.0
    noisy = runs.assign(**{"metrics.mig": rng.random(len(runs))})
    assert selection_transfer(noisy, "mig", "mig", ["beta", "lr"], other_seeds=False) == 1.0
    one_seed = noisy[noisy["params.seed"] == "0"]  # one seed: judged on the same runs
    assert selection_transfer(one_seed, "mig", "mig", ["beta", "lr"]) == 1.0
    assert selection_transfer(noisy, "mig", "mig", ["beta", "lr"]) < 1.0


def test_drawn_floats_are_shown_short_in_group_keys():
    from analysis.stats import short_key

    assert short_key(0.0022373901095679746) == "0.002237"
    assert short_key("0.0022373901095679746") == "0.002237"  # as MLflow logged it
    assert short_key("1e-05") == "1e-05" and short_key("multi_head") == "multi_head"
    assert short_key("0:32:4") == "0:32:4" and short_key(8) == "8"
