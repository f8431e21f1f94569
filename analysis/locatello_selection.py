"""Locatello et al. 2019, Sec. 5.4 ("Are there reliable recipes for model selection?"): choosing
a model by an unsupervised score or by reconstruction, and choosing a setting by one metric on
one dataset and judging it by another metric or on another dataset.

Every probability here is exact, as ``stats.selection_transfer``'s: the share of the candidates
that are no better than the chosen one on the judging metric (ties count as a win), i.e. the
probability that the choice is at least as good as a candidate drawn uniformly at random. Ties
in the choice are averaged over the tied candidates. ``chance`` is the same probability for a
candidate drawn at random instead of chosen: 1/2 + 1/(2n) for n distinct values, so a selection
that carries no information scores ``chance``, not 1/2.
"""

from __future__ import annotations

import math
from itertools import permutations

import numpy as np
import pandas as pd

from trainables.metrics.selection import Direction

from .locatello import METHOD, SEED, SETTING, annotate, by_dataset, method_of
from .results import declared_outputs
from .stats import ALL, _column, _direction, _require, selection_transfer

# The paper's three probabilities of beating random selection (Sec. 5.4; FINDINGS.md L9).
PAPER_TRANSFER = {
    "same metric and dataset": 0.81,
    "across metrics, same dataset": math.nan,  # not in the paper: shown for completeness
    "across datasets, same metric": 0.59,
    "across metrics and datasets": 0.55,
}


def _no_better(scores: pd.Series, value: float, higher: bool) -> float:
    """The share of ``scores`` no better than ``value``."""
    return float((scores <= value).mean() if higher else (scores >= value).mean())


def _chance(scores: pd.Series, higher: bool) -> float:
    """The probability that one uniformly drawn candidate is no worse than another."""
    return float(np.mean([_no_better(scores, v, higher) for v in scores]))


def _choose(candidates: pd.Series, higher: bool) -> pd.Index:
    """The labels of the best candidates (all of them when tied)."""
    best = candidates.max() if higher else candidates.min()
    return candidates.index[candidates == best]


def model_selection(
    runs: pd.DataFrame,
    select: str,
    target: str,
    *,
    select_higher: bool | None = None,
    direction: Direction | None = None,
    within_method: bool = True,
) -> pd.DataFrame:
    """Choose the run (model) with the best ``select`` score among a pool, judged by ``target``
    against a run drawn at random from the same pool (paper Sec. 5.4, unsupervised selection).

    A pool is a dataset's runs of one method (``within_method``; a practitioner tuning one
    method) or of all methods, restricted to the runs that have both values. ``select_higher``
    says which way ``select`` is better; unsupervised scores declare no direction and need it,
    others (reconstruction: lower) default to ``direction`` (the runs' declared outputs by
    default), which also gives the target's. Rows: ``dataset``, ``method`` ("all" when pooled),
    ``select``, ``target``, ``probability``, ``chance``, ``n_runs``.
    """
    select_column, target_column = _column(select, "metrics"), _column(target, "metrics")
    _require(runs, [select_column, target_column])
    direction = direction or declared_outputs(runs).direction
    if select_higher is None:
        select_higher = _direction(select_column.removeprefix("metrics."), direction)
    higher = _direction(target_column.removeprefix("metrics."), direction)
    methods = method_of(runs) if within_method else pd.Series(ALL, index=runs.index)
    rows = []
    for dataset, frame in by_dataset(runs.dropna(subset=[select_column, target_column])):
        for method, pool in frame.groupby(methods.loc[frame.index], sort=True):
            scores = pool[target_column].astype(float).reset_index(drop=True)
            chosen = _choose(
                pool[select_column].astype(float).reset_index(drop=True), select_higher
            )
            probability = np.mean([_no_better(scores, scores[i], higher) for i in chosen])
            rows.append({
                "dataset": dataset, "method": method, "select": select, "target": target,
                "probability": float(probability), "chance": _chance(scores, higher),
                "n_runs": len(pool),
            })  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "dataset", "method", "select", "target", "probability", "chance", "n_runs"
    ])  # fmt: skip


def selection_across(
    source: pd.DataFrame,
    destination: pd.DataFrame,
    select: str,
    target: str,
    *,
    direction: Direction,
) -> tuple[float, float]:
    """Choose a setting on one dataset, judge it on another: (probability, chance).

    ``source`` and ``destination`` are ``annotate``d runs of two datasets. For every seed of the
    source: the setting (method and hyperparameter values) whose run with that seed has the best
    ``select``; on the destination every setting is scored by its mean ``target`` over all the
    destination's seeds (different models: no seed is shared), and the seed's value is the share
    of the destination's settings no better than the chosen one. Settings the destination lacks
    are not drawn; a chosen setting it lacks is skipped. Averaged over seeds; NaN when no seed is
    left. ``chance``: the same for a destination setting drawn at random.
    """
    select_column, target_column = _column(select, "metrics"), _column(target, "metrics")
    higher_select = _direction(select_column.removeprefix("metrics."), direction)
    higher = _direction(target_column.removeprefix("metrics."), direction)
    keys = [METHOD, SETTING]
    scores = destination.groupby(keys)[target_column].mean().dropna()
    if scores.empty:
        return math.nan, math.nan
    wins = []
    for _, runs in source.groupby(SEED, sort=True):
        candidates = runs.groupby(keys)[select_column].mean().dropna()
        if candidates.empty:
            continue
        chances = [
            _no_better(scores, scores[setting], higher)
            for setting in _choose(candidates, higher_select)
            if setting in scores.index
        ]
        if chances:
            wins.append(float(np.mean(chances)))
    return (float(np.mean(wins)) if wins else math.nan), _chance(scores, higher)


def _within_chance(runs: pd.DataFrame, target: str, direction: Direction) -> float:
    """``selection_transfer``'s chance level: per seed, a setting drawn at random and judged by
    its mean over the other seeds (the same seed's runs with one seed), averaged over seeds."""
    column = _column(target, "metrics")
    higher = _direction(column.removeprefix("metrics."), direction)
    seeds = runs[SEED]
    values = []
    for seed in seeds.dropna().unique():
        judged = runs[seeds != seed] if seeds.nunique() > 1 else runs
        scores = judged.groupby([METHOD, SETTING])[column].mean().dropna()
        if not scores.empty:
            values.append(_chance(scores, higher))
    return float(np.mean(values)) if values else math.nan


def transfer_cells(
    runs: pd.DataFrame, metrics: list[str], direction: Direction | None = None
) -> pd.DataFrame:
    """Every (select metric, target metric, source dataset, target dataset) cell of the transfer
    comparison (paper Sec. 5.4), with its probability of beating random selection.

    A setting is a method and its hyperparameter values. Within a dataset: choose the setting on
    one seed, judge it by the mean over the other seeds (``stats.selection_transfer``; seeds are
    the replicates). Across datasets: ``selection_across``. ``kind`` names the comparison:

    * *same metric and dataset*: select = target, source = destination;
    * *across metrics, same dataset*: select != target, source = destination;
    * *across datasets, same metric*: select = target, source != destination (ordered pairs);
    * *across metrics and datasets*: select != target, source != destination.

    Rows: ``kind``, ``select``, ``target``, ``source``, ``destination``, ``probability``,
    ``chance`` (the probability of a setting drawn at random instead of chosen).
    """
    columns = [_column(m, "metrics") for m in metrics]
    _require(runs, [*columns, SEED])
    direction = direction or declared_outputs(runs).direction
    datasets = dict(by_dataset(annotate(runs)))
    rows = []
    for select in metrics:
        for target in metrics:
            same_metric = select == target
            for name, frame in datasets.items():
                probability = selection_transfer(
                    frame, select, target, [METHOD, SETTING], SEED, direction=direction
                )
                kind = "same metric and dataset" if same_metric else "across metrics, same dataset"
                chance = _within_chance(frame, target, direction)
                rows.append((kind, select, target, name, name, probability, chance))
            for a, b in permutations(datasets, 2):
                probability, chance = selection_across(
                    datasets[a], datasets[b], select, target, direction=direction
                )
                kind = (
                    "across datasets, same metric" if same_metric else "across metrics and datasets"
                )
                rows.append((kind, select, target, a, b, probability, chance))
    return pd.DataFrame(rows, columns=[
        "kind", "select", "target", "source", "destination", "probability", "chance"
    ])  # fmt: skip


def transfer_table(
    runs: pd.DataFrame, metrics: list[str], direction: Direction | None = None
) -> pd.DataFrame:
    """The paper's comparison (81% / 59% / 55%): per kind of ``transfer_cells``, the mean
    probability over its cells (each cell weighs the same), next to the paper's number.

    Index: the four kinds, in ``PAPER_TRANSFER``'s order; columns ``probability``, ``chance``
    (its mean over the same cells), ``paper``, ``n_cells`` (cells with a value; 0 and NaN
    probability for a kind the runs cannot give, e.g. across datasets with one dataset).
    """
    cells = transfer_cells(runs, metrics, direction).dropna(subset=["probability"])
    grouped = cells.groupby("kind")
    table = pd.DataFrame(
        {
            "probability": grouped["probability"].mean(),
            "chance": grouped["chance"].mean(),
            "n_cells": grouped.size(),
        }
    ).reindex(list(PAPER_TRANSFER))
    table["paper"] = pd.Series(PAPER_TRANSFER)
    table["n_cells"] = table["n_cells"].fillna(0).astype(int)
    return table.rename_axis("kind")[["probability", "chance", "paper", "n_cells"]]
