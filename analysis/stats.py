"""Statistics over a runs frame: confidence intervals, bold marks, metric agreement, variance shares.

Pure functions, DataFrame in, DataFrame (or a number) out, like ``tables``. Seeds are the unit of
replication: a group's spread is over its runs, so an interval says how sure the mean is, not how
good one run is.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
from scipy import stats

from trainables.metrics import higher_is_better
from trainables.metrics.selection import Direction

from .results import declared_outputs

STATS = ("mean", "std", "n", "ci")
SINGLE_TASK = "single_task"
ALL = "all"  # the one group's name when nothing groups the runs


def _column(name: str, prefix: str) -> str:
    """``prefix.name`` unless the name already carries a ``params.``/``metrics.``/``tags.`` prefix."""
    return name if name.startswith(("params.", "metrics.", "tags.")) else f"{prefix}.{name}"


def _require(runs: pd.DataFrame, columns: list[str]) -> None:
    missing = [c for c in columns if c not in runs.columns]
    if missing:
        raise KeyError(f"columns {missing} not in the runs frame")


def _direction(metric: str, direction: Direction) -> bool:
    higher = direction(metric)
    if higher is None:
        raise ValueError(f"metric {metric!r} has no known direction (higher or lower is better)")
    return higher


# -- intervals and bold marks ---------------------------------------------------------------------


def interval_table(
    runs: pd.DataFrame, by: list[str], metrics: list[str], confidence: float = 0.95
) -> pd.DataFrame:
    """Mean, std (ddof=1), n and the Student-t confidence half-width per group and metric.

    A handful of seeds per group is the norm, so the interval uses t with n - 1 degrees of freedom
    rather than the normal quantile; it is NaN for a group with fewer than two runs (no spread to
    judge). Groups are the values of ``params.<by>`` (NaN kept: a param only some families have);
    the index is named by the param names, the columns are a MultiIndex (metric, stat).
    """
    group_columns = [_column(b, "params") for b in by]
    metric_columns = [_column(m, "metrics") for m in metrics]
    _require(runs, group_columns + metric_columns)
    names = [c.removeprefix("params.") for c in group_columns]
    frame = runs[group_columns + metric_columns].copy()
    frame.columns = names + list(metrics)
    if not names:
        frame = frame.assign(study=ALL)
        names = ["study"]
    grouped = frame.groupby(names, sort=True, dropna=False)
    parts = {}
    for metric in metrics:
        agg = grouped[metric].agg(["mean", "std", "count"])
        n = agg["count"].astype(int)
        quantile = stats.t.ppf(0.5 + confidence / 2, np.maximum(n - 1, 1))
        ci = (quantile * agg["std"] / np.sqrt(n)).where(n >= 2)
        parts[metric] = pd.DataFrame({"mean": agg["mean"], "std": agg["std"], "n": n, "ci": ci})
    return pd.concat(parts, axis=1, names=["metric", "stat"])


def best_marks(
    table: pd.DataFrame, metrics: list[str] | None = None, direction: Direction = higher_is_better
) -> pd.DataFrame:
    """Which entries to bold: per metric, the best group by mean and every group not shown worse.

    "Not shown worse" means its interval (mean ± ci) overlaps the best group's. A group without an
    interval (one run) is marked only if its mean equals the best: a single run proves nothing. A
    best group without an interval is taken as the point at its mean. Metrics with no known direction
    (counts, total correlation) get an all-False column. ``direction``: the metric registry's, or
    the runs' declared outputs' (``results.declared_outputs(runs).direction``).
    """
    metrics = list(table.columns.get_level_values(0).unique()) if metrics is None else metrics
    marks = pd.DataFrame(False, index=table.index, columns=pd.Index(metrics, name="metric"))
    for metric in metrics:
        higher = direction(metric)
        mean, ci = table[(metric, "mean")], table[(metric, "ci")]
        if higher is None or mean.isna().all():
            continue
        position = int(
            np.argmax(mean.fillna(-np.inf)) if higher else np.argmin(mean.fillna(np.inf))
        )
        best_mean = mean.iloc[position]
        best_ci = 0.0 if pd.isna(ci.iloc[position]) else ci.iloc[position]
        gap = (mean - best_mean).abs()
        overlapping = (gap <= ci + best_ci).where(ci.notna(), gap == 0)
        marks[metric] = overlapping.fillna(False).astype(bool).to_numpy()
    return marks


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def latex_escape(text: str) -> str:
    """Text safe inside a LaTeX table cell (run names and metric names are full of underscores)."""
    return "".join(_LATEX_SPECIAL.get(char, char) for char in text)


def short_key(value: object) -> str:
    """A group key as a reader wants it: a drawn float (``0.0022373901095679746``, as a number or
    as its logged text) to 4 significant digits; anything else as it is."""
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    if len(text) > 8 and any(c in text for c in ".eE"):
        try:
            number = float(text)
        except ValueError:
            return text
        if math.isfinite(number):
            return f"{number:.4g}"
    return text


def format_table(
    table: pd.DataFrame,
    marks: pd.DataFrame | None = None,
    fmt: str = "markdown",
    digits: int = 3,
) -> str:
    """An interval table as a markdown or LaTeX (booktabs) table of ``mean ± std`` cells.

    A group with one run shows just the mean, a group without the metric '-'. Marked cells (from
    ``best_marks``) are bold. Written by hand: pandas' ``to_markdown`` needs tabulate, which the
    project does not install, and one writer for both formats keeps the cells identical.
    """
    if fmt not in ("markdown", "latex"):
        raise ValueError(f"fmt must be 'markdown' or 'latex', not {fmt!r}")
    latex = fmt == "latex"
    metrics = list(table.columns.get_level_values(0).unique())
    key_names = [str(n) for n in table.index.names]
    text = latex_escape if latex else (lambda s: s.replace("|", r"\|"))
    plus_minus = r" $\pm$ " if latex else " ± "

    # Each column read once as a list (a cell indexed through pandas per cell was the report's
    # slowest table at 250 groups); the cells' text is what indexing per cell gave.
    columns = {
        m: (
            table[(m, "mean")].tolist(),
            table[(m, "std")].tolist(),
            table[(m, "n")].tolist(),
            marks[m].astype(bool).tolist() if marks is not None and m in marks.columns else None,
        )
        for m in metrics
    }

    def cell(metric: str, row: int) -> str:
        means, stds, counts, bolds = columns[metric]
        mean, std, n = means[row], stds[row], counts[row]
        if pd.isna(mean):
            return "-"
        value = f"{mean:.{digits}f}"
        if n > 1 and pd.notna(std):
            value += f"{plus_minus}{std:.{digits}f}"
        if bolds is not None and bolds[row]:
            value = rf"\textbf{{{value}}}" if latex else f"**{value}**"
        return value

    header = [text(n) for n in key_names] + [text(m) for m in metrics]
    rows = []
    for row, key in enumerate(table.index):
        keys = key if isinstance(key, tuple) else (key,)
        rows.append(
            ["-" if pd.isna(k) else text(short_key(k)) for k in keys]
            + [cell(m, row) for m in metrics]
        )
    if latex:
        lines = [
            r"\begin{tabular}{" + "l" * len(key_names) + "r" * len(metrics) + "}",
            r"\toprule",
            " & ".join(header) + r" \\",
            r"\midrule",
            *(" & ".join(r) + r" \\" for r in rows),
            r"\bottomrule",
            r"\end{tabular}",
        ]
    else:
        lines = [
            "| " + " | ".join(header) + " |",
            "|" + "---|" * len(key_names) + "---:|" * len(metrics),
            *("| " + " | ".join(r) + " |" for r in rows),
        ]
    return "\n".join(lines) + "\n"


# -- values per group and replicate, for the hypothesis tests -----------------------------------

REPLICATES = ("params.seed", "params.upstream.seed")


def replicate_column(runs: pd.DataFrame) -> str | None:
    """What replicates a group: its own seed if the runs vary it, else (probes trained with one
    seed) the seed of the upstream model; None: runs are the replicates."""
    for column in REPLICATES:
        if column in runs and runs[column].nunique(dropna=True) > 1:
            return column
    return None


def group_values(
    runs: pd.DataFrame, by: list[str], metric: str, replicate: str | None = None
) -> dict[str, pd.Series]:
    """Per group (its label, the ``by`` values joined by " / "), the metric per replicate: the mean
    over the group's runs of that replicate (e.g. over the tasks of single-task models, or over
    a probe's upstream models), so groups that share replicates can be compared pairwise."""
    column = _column(metric, "metrics")
    group_columns = [_column(b, "params") for b in by]
    _require(runs, [column, *group_columns])
    scored = runs.dropna(subset=[column])
    out: dict[str, pd.Series] = {}
    if not group_columns:
        return out
    # One groupby for all groups (per group it was the answer's second cost at 250 groups): each
    # (group, replicate) mean is over the same rows in the same order as a groupby per group.
    grouped = scored.groupby(group_columns, dropna=False, sort=True)
    keys = list(grouped.size().index)
    number = pd.Series(grouped.ngroup().to_numpy(), index=scored.index, name="group")
    if replicate is not None and replicate in scored:
        kept = scored[replicate].notna()  # a replicate-wise groupby drops a missing replicate
        rows = scored[kept]
        means = rows.groupby([number[kept], rows[replicate]], sort=True)[column].mean()
        numbers = means.index.get_level_values(0).to_numpy()
        labels, values = means.index.get_level_values(1), means.to_numpy(dtype=float)
        index = lambda part: pd.Index(labels[part], name=replicate)  # noqa: E731
    else:
        order = np.argsort(number.to_numpy(), kind="stable")  # each group's runs in row order
        numbers, values = number.to_numpy()[order], scored[column].to_numpy(dtype=float)[order]
        index = lambda part: pd.RangeIndex(part.stop - part.start)  # noqa: E731
    bounds = np.searchsorted(numbers, np.arange(len(keys) + 1))
    for i, key in enumerate(keys):
        parts = key if isinstance(key, tuple) else (key,)
        label = " / ".join(short_key(p) for p in parts if not pd.isna(p)) or "-"
        part = slice(int(bounds[i]), int(bounds[i + 1]))
        out[label] = pd.Series(values[part], index=index(part), name=column, dtype=float)
    return out


# -- the multi-task paper's single-task row -----------------------------------------------------


def single_task_summary(
    runs: pd.DataFrame,
    metric: str,
    task_column: str = "params.task_index",
    variant_column: str = "params.variant",
) -> pd.DataFrame:
    """Single-task models summarised as one row, next to the other variants' means.

    The multi-task paper reports task-specific models as the mean, max and min over the tasks (its
    Table 5): each task's model is first averaged over its seeds, so a task run with more seeds does
    not weigh more. Other variants are one model for all tasks: only their mean over runs is
    reported (max and min NaN). Index: the variant (single_task first); columns mean, max, min and
    n (task indices for single_task, runs for the others). Runs without the metric are ignored.
    """
    column = _column(metric, "metrics")
    _require(runs, [column, variant_column])
    scored = runs.dropna(subset=[column])
    rows = {}
    single = scored[scored[variant_column] == SINGLE_TASK]
    if not single.empty:
        _require(runs, [task_column])
        per_task = single.groupby(task_column, dropna=False)[column].mean()
        rows[SINGLE_TASK] = {
            "mean": per_task.mean(),
            "max": per_task.max(),
            "min": per_task.min(),
            "n": len(per_task),
        }
    others = scored[scored[variant_column] != SINGLE_TASK]
    for variant, values in others.groupby(variant_column, sort=True, dropna=False)[column]:
        rows[variant] = {"mean": values.mean(), "max": np.nan, "min": np.nan, "n": len(values)}
    out = pd.DataFrame.from_dict(rows, orient="index", columns=["mean", "max", "min", "n"])
    out.index.name = variant_column.removeprefix("params.")
    return out.astype({"n": int})


# -- Locatello et al. 2019: metric agreement, variance shares, hyperparameter selection ------------


def metric_rank_correlation(
    runs: pd.DataFrame, metrics: list[str], by: str | None = "params.dataset.name"
) -> dict[str, pd.DataFrame]:
    """Spearman rank correlation between metrics over runs, one matrix per value of ``by``.

    Rank correlation because metrics live on different scales and only their ordering of models
    matters for selection (Locatello et al. 2019, metric agreement). Datasets are kept apart: the
    agreement differs between them and pooling would mix scales. The whole frame is one group
    (named "all") when ``by`` is None or not a column. Within a group a metric that is all-NaN or
    constant has no ranking and is dropped; pairs use the runs where both metrics are present.
    """
    columns = [_column(m, "metrics") for m in metrics]
    _require(runs, columns)
    if by is None or by not in runs.columns:
        groups = [(ALL, runs)]
    else:
        groups = [
            ("-" if pd.isna(key) else str(key), frame)
            for key, frame in runs.groupby(by, sort=True, dropna=False)
        ]
    out = {}
    for key, frame in groups:
        values = frame[columns].astype(float)
        values.columns = list(metrics)
        varying = [m for m in metrics if values[m].nunique(dropna=True) >= 2]
        out[key] = values[varying].corr(method="spearman")
    return out


def variance_explained(
    runs: pd.DataFrame,
    metric: str,
    hyperparameter: str,
    method_column: str = "tags.family",
) -> pd.DataFrame:
    """Per method, the share of a metric's variance explained by one hyperparameter (eta squared).

    One-way ANOVA: eta² = between-setting sum of squares / total sum of squares, over the method's
    runs that have the metric. The remainder (``seed_share`` = 1 - eta²) is the within-setting
    spread; it is the random seed's share when the hyperparameter is the only other thing that
    varies between the method's runs (otherwise it also holds the other axes). Locatello et al.
    2019 ask this to show how much a model's score depends on luck rather than on its setting.
    Eta² is NaN when the metric does not vary at all. When ``method_column`` is absent all runs
    are one method ("all").
    """
    column = _column(metric, "metrics")
    setting = _column(hyperparameter, "params")
    _require(runs, [column, setting])
    scored = runs.dropna(subset=[column])
    values, settings = scored[column].astype(float), scored[setting]
    # one groupby for every method (per method it was the report's cost at 250 groups): a
    # (method, setting) mean is over the same runs in the same order, and each method's sums are
    # pandas' own (numpy's sum of the same values), so the numbers are those of a loop per method
    if method_column in scored.columns:
        grouped = scored.groupby(method_column, sort=True, dropna=False)
        names, number = list(grouped.size().index), grouped.ngroup().to_numpy()
        keys = [scored[method_column], settings]
    else:
        names, number, keys = [ALL], np.zeros(len(scored), dtype=int), [settings]
    means = values.groupby(keys, dropna=False).transform("mean").to_numpy()
    rows = []
    for i, method in enumerate(names):
        at = np.flatnonzero(number == i)
        x = values.to_numpy()[at]
        mean = x.sum() / np.float64(len(x)) if len(x) else math.nan  # as Series.mean: sum / count
        total = float(((x - mean) ** 2).sum())
        between = float(((means[at] - mean) ** 2).sum())
        eta = between / total if total > 0 else math.nan
        rows.append({
            "method": method,
            "hyperparameter": setting.removeprefix("params."),
            "eta_squared": eta,
            "seed_share": 1 - eta,
            "n_runs": len(at),
            "n_settings": settings.iloc[at].nunique(dropna=False),
        })  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "method", "hyperparameter", "eta_squared", "seed_share", "n_runs", "n_settings"
    ])  # fmt: skip


def selection_transfer(
    runs: pd.DataFrame,
    select_metric: str,
    target_metric: str,
    setting_columns: list[str],
    seed_column: str = "params.seed",
    *,
    other_seeds: bool = True,
    direction: Direction | None = None,
) -> float:
    """How often picking a setting by one metric beats picking one at random on another.

    Locatello et al. 2019 (section 5.4): per seed, choose the setting whose run has the best
    ``select_metric``; score every setting on ``target_metric`` and report the probability that
    the chosen setting is at least as good as a uniformly random setting, averaged over seeds.

    The probability is exact, not sampled: the share of settings whose target is no better than
    the chosen one's (ties count as a win; settings without a target value are not drawn). Ties in
    the selection are averaged over the tied settings, so no random number is involved.

    A setting's target is, with ``other_seeds`` (the default, as in the paper), its mean over the
    seeds other than the one used to select: the selection's own luck does not carry over. With a
    single seed in the frame, or ``other_seeds=False``, it is the run on the selecting seed itself
    (selecting and judging on the same runs, so identical metrics always give 1.0). Seeds whose
    chosen setting has no target value are skipped; NaN when none is left. Directions come from
    ``direction``, by default the runs' declared outputs' (``results.declared_outputs``).
    """
    select = _column(select_metric, "metrics")
    target = _column(target_metric, "metrics")
    settings = [_column(c, "params") for c in setting_columns]
    _require(runs, [select, target, seed_column, *settings])
    direction = direction or declared_outputs(runs).direction
    higher_select = _direction(select.removeprefix("metrics."), direction)
    higher_target = _direction(target.removeprefix("metrics."), direction)
    seeds = runs[seed_column]
    same_run = not other_seeds or seeds.nunique(dropna=False) < 2
    # settings by number: a setting of several params with one missing (another family's
    # hyperparameter, NaN) is found again by its number, where a lookup by value fails (NaN != NaN)
    number = runs.groupby(settings, sort=True, dropna=False).ngroup()
    wins = []
    for seed in seeds.drop_duplicates():
        on_seed = (seeds == seed) | (seeds.isna() & pd.isna(seed))
        candidates = runs[on_seed].groupby(number[on_seed])[select].mean().dropna()
        if candidates.empty:
            continue
        best = candidates.max() if higher_select else candidates.min()
        chosen = candidates.index[candidates == best]
        judged = on_seed if same_run else ~on_seed
        scores = runs[judged].groupby(number[judged])[target].mean().dropna()
        chances = []
        for setting in chosen:
            if setting not in scores.index:
                continue
            value = scores[setting]
            no_better = scores <= value if higher_target else scores >= value
            chances.append(float(no_better.mean()))
        if chances:
            wins.append(float(np.mean(chances)))
    return float(np.mean(wins)) if wins else math.nan
