"""Pure tables: DataFrame in, DataFrame out."""

from __future__ import annotations

import pandas as pd

from trainables.metrics import selection
from trainables.metrics.selection import Direction

from .results import ResultsError, declared_outputs, final_metric_columns, varying_params


def summary(runs: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Mean, std and count of every final metric, grouped by the swept params (over seeds).

    Returns a frame indexed by the group with a column MultiIndex (metric, stat).
    """
    by = varying_params(runs) if by is None else by
    metrics = final_metric_columns(runs)
    columns = {f"metrics.{m}": m for m in metrics}
    frame = runs[[f"params.{b}" for b in by] + list(columns)].rename(
        columns={**columns, **{f"params.{b}": b for b in by}}
    )
    if not by:
        frame = frame.assign(study="all")
        by = ["study"]
    # dropna=False: a param only some upstream families have (e.g. beta) is NaN for the others
    table = frame.groupby(by, sort=True, dropna=False)[metrics].agg(["mean", "std", "count"])
    return table


def mean_pm_std(table: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """``mean ± std`` strings per metric (std over seeds; '-' when a group has one run)."""
    out = pd.DataFrame(index=table.index)
    for metric in table.columns.get_level_values(0).unique():
        mean, std = table[(metric, "mean")], table[(metric, "std")]
        out[metric] = [
            "-"
            if pd.isna(m)
            else f"{m:.{digits}f} ± {s:.{digits}f}"
            if pd.notna(s)
            else f"{m:.{digits}f}"
            for m, s in zip(mean, std, strict=True)
        ]
    return out


def best_runs(
    runs: pd.DataFrame,
    metric: str,
    mode: str | None = None,
    top: int = 5,
    direction: Direction | None = None,
) -> pd.DataFrame:
    """The ``top`` runs by ``metric``: ``mode``, else its direction (by default the runs' declared
    outputs', ``results.declared_outputs``)."""
    column = f"metrics.{metric}"
    if column not in runs.columns or runs[column].isna().all():
        known = final_metric_columns(runs)
        raise ResultsError(f"metric {metric!r} not logged in this study; logged: {known}")
    mode = mode or selection.default_mode(metric, direction or declared_outputs(runs).direction)
    rows = selection.ranked(list(runs.index), lambda i: runs.at[i, column], mode)
    return runs.loc[rows[:top]]


def to_markdown(frame: pd.DataFrame) -> str:
    """A GitHub-flavoured markdown table of a frame (index included)."""
    frame = frame.reset_index()
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in frame.itertuples(index=False):
        lines.append("| " + " | ".join(str(v) for v in row) + " |")
    return "\n".join(lines) + "\n"
