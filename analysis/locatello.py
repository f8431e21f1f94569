"""Locatello et al. 2019 ("Challenging common assumptions in the unsupervised learning of
disentangled representations"): the study's analyses on a runs frame (``locatello_selection``
holds model selection and transfer; ``findings_locatello`` the verdicts).

Pure functions, DataFrame in, DataFrame out, like ``stats``. A run is one model: a method, a
setting of its hyperparameters, a seed and a dataset.

* **Method**: the family and, where a family has types, its type (``method_of``): DIP-VAE-I and
  DIP-VAE-II are two methods, as in the paper.
* **Setting**: the values of the params that vary between a method's runs on some dataset
  (``setting_params``), the seed and the dataset's own params (``dataset.*``) excluded. A param
  that is constant within each dataset but differs between datasets (a longer schedule on one) is
  not part of the setting, so the same setting can be found on two datasets.
* **Dataset**: ``params.dataset.name``; a frame without it is one dataset, "all".
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

import numpy as np
import pandas as pd
from scipy import stats as scipy_stats

from trainables.metrics.selection import Direction

from .results import declared_outputs
from .stats import ALL, _column, _direction, _require

DATASET = "params.dataset.name"
SEED = "params.seed"
FAMILY = "tags.family"
METHOD = "tags._method"  # the columns ``annotate`` adds (underscored: no MLflow tag has them)
SETTING = "tags._setting"
# The paper's six disentanglement metrics, as this project names their outputs.
PAPER_METRICS = ("beta_vae", "factor_vae", "mig", "dci_disentanglement", "modularity", "sap")
# family -> (the param naming its type, the family's default type: trainables/families/dip_vae.py)
TYPE_PARAMS = {"dip_vae": ("dip_type", "i")}
PREDICTORS = ("lr", "gbt")  # trainables.metrics.catalog: downstream_<predictor>_<train size>
SAMPLE_SIZES = (10, 100, 1_000, 10_000)  # trainables.metrics.downstream.TRAIN_SIZES
EFFICIENCY = (100, 10_000)  # sample efficiency: accuracy with 100 samples / with 10,000
_NOT_SETTINGS = ("params.dataset.", "params.upstream")


def method_of(runs: pd.DataFrame) -> pd.Series:
    """Each run's method: ``tags.family``, with its type where the family has one
    (``dip_vae`` -> ``dip_vae_i`` / ``dip_vae_ii`` from ``params.dip_type``; a run that did not
    log the type ran the family's default)."""
    _require(runs, [FAMILY])
    family = runs[FAMILY].astype(object)
    method = family.copy()
    for name, (param, default) in TYPE_PARAMS.items():
        mine = family == name
        column = f"params.{param}"
        kind = runs[column] if column in runs else pd.Series(default, index=runs.index)
        method[mine] = name + "_" + kind[mine].fillna(default).astype(str)
    return method.rename("method")


def dataset_of(runs: pd.DataFrame) -> pd.Series:
    """Each run's dataset name (``ALL`` when the frame does not say)."""
    if DATASET not in runs:
        return pd.Series(ALL, index=runs.index, name="dataset", dtype=object)
    return runs[DATASET].astype(object).fillna("-").rename("dataset")


def setting_params(runs: pd.DataFrame) -> dict[str, list[str]]:
    """Per method, the param columns that make its settings: those that vary between its runs on
    at least one dataset (``params.seed``, ``params.dataset.*`` and ``params.upstream*`` never)."""
    methods, datasets = method_of(runs), dataset_of(runs)
    params = [
        c for c in runs.columns
        if c.startswith("params.") and c != SEED and not c.startswith(_NOT_SETTINGS)
    ]  # fmt: skip
    out = {}
    for method, frame in runs.groupby(methods, sort=True):
        varying: set[str] = set()
        for _, part in frame.groupby(datasets.loc[frame.index], sort=False):
            varying |= {c for c in params if part[c].nunique(dropna=False) > 1}
        out[str(method)] = [c for c in params if c in varying]
    return out


def setting_of(runs: pd.DataFrame, params: Mapping[str, list[str]] | None = None) -> pd.Series:
    """Each run's setting within its method, as text (``beta=4``; "-" for a method that sweeps
    nothing). ``params``: per method the setting's param columns (``setting_params`` by default)."""
    params = setting_params(runs) if params is None else params
    methods = method_of(runs)
    labels = pd.Series("-", index=runs.index, dtype=object, name="setting")
    for method, columns in params.items():
        mine = methods == method
        if columns and mine.any():
            labels[mine] = [
                ", ".join(
                    f"{c.removeprefix('params.')}={v}" for c, v in zip(columns, row, strict=True)
                )
                for row in runs.loc[mine, columns].itertuples(index=False)
            ]
    return labels


def annotate(runs: pd.DataFrame) -> pd.DataFrame:
    """A copy of the runs with their method (``METHOD``) and setting (``SETTING``) as columns."""
    return runs.assign(**{METHOD: method_of(runs), SETTING: setting_of(runs)})


def by_dataset(runs: pd.DataFrame) -> Iterator[tuple[str, pd.DataFrame]]:
    """(dataset name, its runs) in name order."""
    datasets = dataset_of(runs)
    for name, frame in runs.groupby(datasets, sort=True):
        yield str(name), frame


def present(runs: pd.DataFrame, metrics: tuple[str, ...] | list[str]) -> list[str]:
    """The metrics with at least one value (``beta_vae`` also as its split name ``beta_vae_eval``)."""
    out = []
    for metric in metrics:
        for name in (metric, f"{metric}_eval"):
            column = _column(name, "metrics")
            if column in runs and runs[column].notna().any():
                out.append(name)
                break
    return out


def spearman(x: pd.Series, y: pd.Series) -> tuple[float, float, int]:
    """Spearman's rho, its two-sided p value and n over the rows where both are present; NaN rho
    and p when fewer than three rows remain or either side is constant."""
    both = pd.concat([x.astype(float), y.astype(float)], axis=1).dropna()
    n = len(both)
    if n < 3 or both.iloc[:, 0].nunique() < 2 or both.iloc[:, 1].nunique() < 2:
        return math.nan, math.nan, n
    result = scipy_stats.spearmanr(both.iloc[:, 0], both.iloc[:, 1])
    return float(result.statistic), float(result.pvalue), n


def one_sided(rho: float, p: float, positive: bool = True) -> float:
    """The one-sided p value for rho > 0 (``positive``) or rho < 0, from the two-sided one."""
    if math.isnan(p):
        return math.nan
    return p / 2 if (rho > 0) == positive and rho != 0 else 1 - p / 2


# -- downstream accuracy and sample efficiency (paper Sec. 5.5) --------------------------------


def downstream_values(runs: pd.DataFrame, predictor: str) -> pd.DataFrame:
    """One predictor's downstream accuracy at each train size (``accuracy_<size>``) and the sample
    efficiency (``efficiency``: accuracy with 100 samples / with 10,000), indexed like ``runs``.

    A run that logged its own ratio (``downstream_<predictor>_efficiency``) keeps it; otherwise
    it is computed (NaN where either accuracy is missing or the 10,000-sample one is 0).
    """
    out = pd.DataFrame(index=runs.index)
    for size in SAMPLE_SIZES:
        column = f"metrics.downstream_{predictor}_{size}"
        out[f"accuracy_{size}"] = runs[column].astype(float) if column in runs else np.nan
    low, high = (out[f"accuracy_{n}"] for n in EFFICIENCY)
    ratio = (low / high.where(high != 0)).astype(float)
    logged = f"metrics.downstream_{predictor}_efficiency"
    out["efficiency"] = runs[logged].astype(float).fillna(ratio) if logged in runs else ratio
    return out


def downstream_table(runs: pd.DataFrame, predictors: tuple[str, ...] = PREDICTORS) -> pd.DataFrame:
    """Downstream accuracy and sample efficiency per run and predictor (paper Sec. 5.5), tidy.

    One row per (run, predictor) that logged any accuracy (``downstream_<predictor>_<size>``):
    ``run_id``, ``dataset``, ``method``, ``setting``, ``seed``, ``predictor``, then
    ``downstream_values``' columns: ``accuracy_<size>`` for ``SAMPLE_SIZES`` and ``efficiency``.
    """
    ids = runs["run_id"] if "run_id" in runs else pd.Series(runs.index, index=runs.index)
    base = pd.DataFrame({
        "run_id": ids, "dataset": dataset_of(runs), "method": method_of(runs),
        "setting": setting_of(runs), "seed": runs[SEED] if SEED in runs else None,
    })  # fmt: skip
    parts = []
    for predictor in predictors:
        values = downstream_values(runs, predictor)
        logged = values.drop(columns="efficiency").notna().any(axis=1)
        parts.append(base.assign(predictor=predictor).join(values)[logged])
    return pd.concat(parts, ignore_index=True)


def downstream_correlation(
    runs: pd.DataFrame, metrics: list[str], predictors: tuple[str, ...] = PREDICTORS
) -> pd.DataFrame:
    """Spearman of each disentanglement metric with downstream accuracy (each train size) and
    with sample efficiency, over a dataset's runs (paper Sec. 5.5), with two-sided p values.

    Rows: ``dataset``, ``predictor``, ``metric``, ``target`` (``accuracy_<size>`` or
    ``efficiency``), ``rho``, ``p``, ``n``. Targets no run of the dataset logged are left out.
    """
    columns = [_column(m, "metrics") for m in metrics]
    _require(runs, columns)
    rows = []
    for dataset, frame in by_dataset(runs):
        for predictor in predictors:
            values = downstream_values(frame, predictor)
            for metric, column in zip(metrics, columns, strict=True):
                for target in values.columns[values.notna().any()]:
                    rho, p, n = spearman(frame[column], values[target])
                    rows.append({"dataset": dataset, "predictor": predictor, "metric": metric,
                                 "target": target, "rho": rho, "p": p, "n": n})  # fmt: skip
    return pd.DataFrame(rows, columns=["dataset", "predictor", "metric", "target", "rho", "p", "n"])


# -- hyperparameters, methods and seeds (paper Sec. 5.1, 5.3) -------------------------------------


def hyperparameter_correlation(
    runs: pd.DataFrame, metric: str, hyperparameter: str | Mapping[str, str] | None = None
) -> pd.DataFrame:
    """Spearman of a hyperparameter's value with a metric, per dataset and method (e.g. beta vs
    the total correlation of the mean and of the sampled representation, paper Sec. 5.1).

    ``hyperparameter``: a param name (methods without it are left out), per method a param name,
    or None: each of the method's setting params (``setting_params``). Values are read as
    numbers. Rows: ``dataset``, ``method``, ``hyperparameter``, ``metric``, ``rho``, ``p``
    (two-sided), ``n``.
    """
    column = _column(metric, "metrics")
    _require(runs, [column])
    methods = method_of(runs)
    auto = setting_params(runs) if hyperparameter is None else {}
    rows = []
    for dataset, frame in by_dataset(runs):
        for method, part in frame.groupby(methods.loc[frame.index], sort=True):
            if hyperparameter is None:
                names = auto.get(str(method), [])
            elif isinstance(hyperparameter, str):
                names = [hyperparameter]
            else:
                names = [hyperparameter[method]] if method in hyperparameter else []
            for name in names:
                param = _column(name, "params")
                if param not in part or part[param].isna().all():
                    continue
                values = pd.to_numeric(part[param], errors="coerce")
                rho, p, n = spearman(values, part[column])
                rows.append({"dataset": dataset, "method": method,
                             "hyperparameter": param.removeprefix("params."), "metric": metric,
                             "rho": rho, "p": p, "n": n})  # fmt: skip
    return pd.DataFrame(
        rows, columns=["dataset", "method", "hyperparameter", "metric", "rho", "p", "n"]
    )


def variance_decomposition(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """How a metric's spread splits into method, hyperparameter within method and seed (paper
    Sec. 5.3), per dataset: a nested decomposition of the sums of squares over the runs,

        total = method + setting within method + within setting (the seeds),
        SS_method  = sum over runs of (method mean - grand mean)^2,
        SS_setting = sum over runs of (setting mean - method mean)^2,
        SS_seed    = sum over runs of (run - setting mean)^2,

    exact for unequal group sizes (the three parts are orthogonal). Shares are the parts over
    the total (NaN when the metric does not vary). The seed share also holds anything else that
    differs between runs of a setting. Rows: ``dataset``, ``metric``, ``ss_total``,
    ``ss_method``, ``ss_setting``, ``ss_seed``, ``method_share``, ``setting_share``,
    ``seed_share``, ``n_methods``, ``n_settings`` (over methods), ``n_runs``.
    """
    columns = [_column(m, "metrics") for m in metrics]
    _require(runs, columns)
    marked = annotate(runs)
    rows = []
    for dataset, frame in by_dataset(marked):
        for metric, column in zip(metrics, columns, strict=True):
            scored = frame.dropna(subset=[column])
            if scored.empty:
                continue
            values = scored[column].astype(float)
            method_mean = values.groupby(scored[METHOD]).transform("mean")
            setting_mean = values.groupby([scored[METHOD], scored[SETTING]]).transform("mean")
            parts = {
                "ss_total": float(((values - values.mean()) ** 2).sum()),
                "ss_method": float(((method_mean - values.mean()) ** 2).sum()),
                "ss_setting": float(((setting_mean - method_mean) ** 2).sum()),
                "ss_seed": float(((values - setting_mean) ** 2).sum()),
            }
            total = parts["ss_total"]
            shares = {
                f"{name}_share": parts[f"ss_{name}"] / total if total > 0 else math.nan
                for name in ("method", "setting", "seed")
            }
            rows.append({
                "dataset": dataset, "metric": metric, **parts, **shares,
                "n_methods": scored[METHOD].nunique(),
                "n_settings": len(scored.groupby([METHOD, SETTING])), "n_runs": len(scored),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "dataset", "metric", "ss_total", "ss_method", "ss_setting", "ss_seed", "method_share",
        "setting_share", "seed_share", "n_methods", "n_settings", "n_runs",
    ])  # fmt: skip


def seed_vs_setting(
    runs: pd.DataFrame, metrics: list[str], direction: Direction | None = None
) -> pd.DataFrame:
    """Per dataset, method and metric: does the worst seed at the best setting lose to the best
    seed at the worst setting? (paper Sec. 5.3: a bad run of a good hyperparameter can be beaten
    by a good run of a bad one.)

    A setting's quality is its mean over its runs (seeds); best and worst by the metric's
    direction (``direction``; the runs' declared outputs by default; a metric without one raises).
    ``loses``: the worst run of the best setting is strictly worse than the best run of the worst
    setting. Methods with fewer than two settings are left out. The share of cells where it
    happens is ``table["loses"].mean()``. Rows: ``dataset``, ``method``, ``metric``,
    ``best_setting``, ``worst_setting``, ``worst_seed_at_best``, ``best_seed_at_worst``,
    ``loses``, ``n_settings``.
    """
    columns = [_column(m, "metrics") for m in metrics]
    _require(runs, columns)
    direction = direction or declared_outputs(runs).direction
    marked = annotate(runs)
    rows = []
    for dataset, frame in by_dataset(marked):
        for metric, column in zip(metrics, columns, strict=True):
            higher = _direction(column.removeprefix("metrics."), direction)
            sign = 1.0 if higher else -1.0  # compare sign * value: larger is better
            for method, part in frame.dropna(subset=[column]).groupby(METHOD, sort=True):
                values = sign * part[column].astype(float)
                means = values.groupby(part[SETTING]).mean()
                if len(means) < 2:
                    continue
                best, worst = means.idxmax(), means.idxmin()
                low_at_best = values[part[SETTING] == best].min()
                high_at_worst = values[part[SETTING] == worst].max()
                rows.append({
                    "dataset": dataset, "method": method, "metric": metric,
                    "best_setting": best, "worst_setting": worst,
                    "worst_seed_at_best": sign * low_at_best,
                    "best_seed_at_worst": sign * high_at_worst,
                    "loses": bool(low_at_best < high_at_worst), "n_settings": len(means),
                })  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "dataset", "method", "metric", "best_setting", "worst_setting", "worst_seed_at_best",
        "best_seed_at_worst", "loses", "n_settings",
    ])  # fmt: skip
