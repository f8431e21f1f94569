"""The report's analyses beyond the tables: the single-task baseline as the multi-task paper
summarises it, agreement between metrics, the hyperparameter's share of variance against the
seed's, and whether choosing a setting by one metric transfers to another. Each adds its section
to the document, or says in ``skipped`` why the data cannot support it."""

from __future__ import annotations

import re

import pandas as pd

from trainables.metrics.selection import Direction

from . import plots, stats
from .results import declared_outputs


def _scored(runs, metrics, direction: Direction | None) -> list[str]:
    """The metrics with a direction (the runs' declared outputs' by default)."""
    direction = direction or declared_outputs(runs).direction
    return [m for m in metrics if direction(m) is not None]


def single_task(doc, runs, metrics, skipped, direction: Direction | None = None) -> None:
    if "params.variant" not in runs or not (runs["params.variant"] == "single_task").any():
        return
    if "params.task_index" not in runs:
        skipped.append("single-task table: runs log no task_index")
        return
    doc.heading("Single-task models (mean, max and min over the task-specific models)")
    multitask = runs[runs["params.variant"].notna()]
    for metric in _scored(runs, metrics, direction)[:4]:
        if f"metrics.{metric}" not in multitask or multitask[f"metrics.{metric}"].isna().all():
            continue
        table = stats.single_task_summary(multitask, metric).round(3)
        doc.table(table.astype(str), f"{metric}")


def agreement(doc, runs, metrics, skipped, direction: Direction | None = None) -> None:
    # a rank correlation over fewer than three runs is +-1 by construction
    scored = _scored(runs, metrics, direction)
    scored = [m for m in scored if runs[f"metrics.{m}"].notna().sum() >= 3]
    if len(scored) < 2 or len(runs) < 3:
        skipped.append("metric agreement: needs two metrics and three runs")
        return
    matrices = stats.metric_rank_correlation(runs, scored)
    doc.heading("Do the metrics agree? (Spearman rank correlation over runs)")
    for name, matrix in matrices.items():
        if matrix.shape[0] < 2:
            skipped.append(f"metric agreement ({name}): fewer than two metrics vary")
            continue
        doc.table(matrix.round(2).astype(str).rename_axis("metric"), f"dataset {name}")
        doc.figure(
            plots.png_bytes(plots.plot_correlation_heatmap(matrix, f"Spearman, {name}")),
            f"correlation_{re.sub(r'[^A-Za-z0-9_-]+', '_', str(name))}.png",  # a dotted path
            f"Rank correlation between metrics ({name})",
        )


def _hyperparameters(runs, designs) -> list[str]:
    names = []
    for design in designs.values():
        for factor in design.factors:
            if factor != "upstream" and f"params.{factor}" in runs:
                if runs[f"params.{factor}"].nunique() > 1 and factor not in names:
                    names.append(factor)
    return names


def _upstream_swept(runs) -> bool:
    column = "params.upstream"
    return column in runs and runs[column].nunique() > 1


def _seeds(runs, designs) -> int:
    seed = next(iter(designs.values())).seed
    return runs[f"params.{seed}"].nunique() if f"params.{seed}" in runs else 1


def variance(doc, runs, designs, metrics, skipped, direction: Direction | None = None) -> None:
    hyper = _hyperparameters(runs, designs)
    seeds = _seeds(runs, designs)
    if not hyper:  # the reason as it is: a probe's upstream is not a hyperparameter of its own
        swept = "only the upstream is swept" if _upstream_swept(runs) else "none is swept"
        skipped.append(f"hyperparameter vs seed: needs a swept hyperparameter ({swept})")
        return
    if seeds < 2:
        skipped.append(f"hyperparameter vs seed: needs two seeds ({seeds} in these runs)")
        return
    rows = []
    method = "tags.family"
    for parameter in hyper:
        for metric in _scored(runs, metrics, direction):
            table = stats.variance_explained(runs, metric, parameter, method_column=method)
            table = table[table["n_settings"] >= 2]  # methods that did not sweep it say nothing
            table.insert(0, "metric", metric)
            rows.append(table)
    frame = pd.concat(rows, ignore_index=True).set_index(["metric", "method"])
    if frame.empty:
        skipped.append("hyperparameter vs seed: no method ran two settings of a hyperparameter")
        return
    doc.heading("How much does the hyperparameter explain, and how much the seed?")
    doc.table(
        frame.round(3).astype(str),
        "eta squared: the share of a metric's variance between "
        "settings of the hyperparameter; seed_share: the rest (within settings)",
    )


def transfer(doc, runs, designs, metrics, skipped, direction: Direction | None = None) -> None:
    """Per study: settings are only comparable within the study that swept them."""
    direction = direction or declared_outputs(runs).direction
    shown = False
    for design in designs.values():
        own = runs[runs["tags.study"] == design.study] if "tags.study" in runs else runs
        hyper = _hyperparameters(own, {design.study: design})
        scored = [m for m in _scored(own, metrics, direction) if own[f"metrics.{m}"].notna().any()]
        if not hyper or len(scored) < 2 or _seeds(own, {design.study: design}) < 2:
            skipped.append(
                f"selection transfer ({design.study}): needs a swept hyperparameter, two metrics "
                "and two seeds"
            )
            continue
        if not shown:
            doc.heading("Does choosing a setting by one metric transfer to another?")
            shown = True
        settings = [f"params.{h}" for h in hyper]
        frame = pd.DataFrame(index=scored, columns=scored, dtype=float)
        for select in scored:
            for target in scored:
                frame.loc[select, target] = stats.selection_transfer(
                    own, select, target, settings, f"params.{design.seed}", direction=direction
                )
        doc.table(
            frame.round(2).astype(str).rename_axis("chosen by"),
            f"{design.study}: rows, the metric a setting ({', '.join(hyper)}) is chosen by on one "
            "seed; columns, the probability it does at least as well as a random setting on that "
            "metric, averaged over the other seeds",
        )
