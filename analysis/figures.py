"""Figures: decide what to draw (pure, tested), then draw it (matplotlib, Agg)."""

from __future__ import annotations

from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from trainables.metrics import higher_is_better  # noqa: E402
from trainables.metrics.selection import Direction  # noqa: E402


class BarInfo(NamedTuple):
    groups: list[str]
    metrics: list[str]
    means: np.ndarray  # (groups, metrics)
    stds: np.ndarray  # (groups, metrics); 0 where a group has a single run


def bar_info(
    table: pd.DataFrame, metrics: list[str] | None = None, direction: Direction = higher_is_better
) -> BarInfo:
    """Grouped bars of bounded scores (those in [0, 1]) from a ``tables.summary`` frame."""
    available = list(table.columns.get_level_values(0).unique())
    if metrics is None:
        # Scores only (bounded, higher is better): RMSE and timings have other scales.
        metrics = [m for m in available if direction(m) is True]
    groups = [" / ".join(map(str, i)) if isinstance(i, tuple) else str(i) for i in table.index]
    means = np.array([[table[(m, "mean")].iloc[g] for m in metrics] for g in range(len(groups))])
    stds = np.nan_to_num(
        np.array([[table[(m, "std")].iloc[g] for m in metrics] for g in range(len(groups))])
    )
    return BarInfo(
        groups, metrics, means.reshape(len(groups), len(metrics)), stds.reshape(means.shape)
    )


def plot_bars(info: BarInfo, title: str = ""):
    fig, ax = plt.subplots(
        figsize=(max(6.0, 1.2 * len(info.metrics) * max(1, len(info.groups)) / 2), 4)
    )
    width = 0.8 / max(len(info.groups), 1)
    x = np.arange(len(info.metrics))
    for g, group in enumerate(info.groups):
        ax.bar(x + g * width, info.means[g], width, yerr=info.stds[g], capsize=3, label=group)
    ax.set_xticks(x + width * (len(info.groups) - 1) / 2, info.metrics, rotation=30, ha="right")
    ax.set_ylabel("mean ± std over seeds")
    ax.set_title(title)
    ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


def factor_traversals(dataset, *, columns: int = 10, seed: int = 0) -> tuple[list[str], np.ndarray]:
    """One row per factor: that factor traversed over (up to) ``columns`` evenly spaced values,
    the others fixed at a random base point. Returns (row labels, uint8 (rows, cols, C, 64, 64))."""
    base = dataset.sample_factors(1, np.random.default_rng(seed))[0]
    rows = []
    for k, size in enumerate(dataset.factor_sizes):
        classes = np.tile(base, (columns, 1))
        classes[:, k] = np.linspace(0, size - 1, columns).round().astype(int)
        rows.append(dataset.images(classes))
    return list(dataset.factor_names), np.stack(rows)
