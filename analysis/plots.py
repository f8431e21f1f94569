"""Study figures: decide what to draw (pure, tested), then draw it (matplotlib, Agg).

Each ``plot_*`` / ``picture_panel`` returns a Figure; ``save_png`` writes and closes it.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from matplotlib.ticker import MaxNLocator  # noqa: E402

from trainables.metrics import higher_is_better  # noqa: E402
from trainables.metrics.selection import Direction  # noqa: E402

from .results import final_metric_columns  # noqa: E402

# Metrics share a bar panel only while the largest one's scale is at most this many times the
# smallest's: a 0.05 MIG drawn beside a 0.9 informativeness is a flat line.
SCALE_RATIO = 5.0

KIND_TITLES = {
    "score": "scores (higher is better)",
    "error": "errors (lower is better)",
    "other": "other",
}


def _label(key) -> str:
    """A group key (scalar or tuple from groupby) as a short label; missing params read '-'."""
    parts = key if isinstance(key, tuple) else (key,)
    return " / ".join("-" if pd.isna(p) else str(p) for p in parts)


def _kind(metric: str, direction: Direction = higher_is_better) -> str:
    higher = direction(metric)
    return "score" if higher is True else "error" if higher is False else "other"


def best_positions(values: Sequence[float], higher: bool | None, limit: int) -> list[int]:
    """Positions of the ``limit`` best values (by ``higher``; unknown: higher), in their given
    order: every position while there are no more (a figure of hundreds of groups shows its best
    ones). NaN ranks last; equal values keep their order."""
    if len(values) <= limit:
        return list(range(len(values)))
    sign = 1.0 if higher is False else -1.0
    order = sorted(range(len(values)), key=lambda i: (math.isnan(values[i]), sign * values[i]))
    return sorted(order[:limit])


# --- 1. grouped bars, one panel per metric scale ---------------------------------------------


class Panel(NamedTuple):
    kind: str  # "score", "error" or "other" (direction unknown)
    groups: list[str]
    metrics: list[str]
    means: np.ndarray  # (groups, metrics)
    stds: np.ndarray  # (groups, metrics); 0 where a group has a single run


def bar_panels(
    summary: pd.DataFrame, metrics: list[str] | None = None, direction: Direction = higher_is_better
) -> list[Panel]:
    """Split a ``tables.summary`` frame into bar panels of one direction and a similar scale.

    By default only metrics with a known direction are drawn (scores and errors); metrics whose
    group means are all NaN are skipped. Panels come scores first, then errors, then others,
    each kind from the largest scale down; metrics keep their order within a panel.
    ``direction``: the metric registry's, or the runs' declared outputs' (``Declared.direction``).
    """
    available = list(summary.columns.get_level_values(0).unique())
    if metrics is None:
        metrics = [m for m in available if direction(m) is not None]
    groups = [_label(i) for i in summary.index]
    means = {m: summary[(m, "mean")].to_numpy(dtype=float) for m in metrics}
    scale = {
        m: float(np.nanmax(np.abs(v))) if np.isfinite(v).any() else math.nan
        for m, v in means.items()
    }

    panels: list[Panel] = []
    for kind in ("score", "error", "other"):
        chosen = [m for m in metrics if _kind(m, direction) == kind and not math.isnan(scale[m])]
        bins: list[list[str]] = []
        for metric in sorted(chosen, key=lambda m: -scale[m]):
            top = scale[bins[-1][0]] if bins else None
            # All-zero means fit anywhere: they join the smallest-scale panel.
            if top is not None and (scale[metric] == 0 or top <= SCALE_RATIO * scale[metric]):
                bins[-1].append(metric)
            else:
                bins.append([metric])
        for members in bins:
            ordered = [m for m in chosen if m in members]
            mean = np.column_stack([means[m] for m in ordered])
            std = np.column_stack(
                [np.nan_to_num(summary[(m, "std")].to_numpy(dtype=float)) for m in ordered]
            )
            panels.append(Panel(kind, groups, ordered, mean, std))
    return panels


def plot_bar_panels(panels: Sequence[Panel], title: str = ""):
    """One axis per panel: a bar per (metric, group) with mean ± std error bars."""
    if not panels:
        raise ValueError("no panels to draw")
    widths = [len(p.metrics) for p in panels]
    n_groups = max(len(p.groups) for p in panels)
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(max(6.0, sum(1.0 + 0.3 * w * n_groups for w in widths) + 2.0), 4.0),
        width_ratios=widths,
        layout="constrained",
        squeeze=False,
    )
    for ax, panel in zip(axes[0], panels, strict=True):
        width = 0.8 / max(len(panel.groups), 1)
        x = np.arange(len(panel.metrics))
        for g, group in enumerate(panel.groups):
            ax.bar(
                x + g * width,
                panel.means[g],
                width,
                yerr=panel.stds[g],
                capsize=3,
                label=group,
                color=f"C{g % 10}",
            )
        ax.set_xticks(
            x + width * (len(panel.groups) - 1) / 2, panel.metrics, rotation=30, ha="right"
        )
        ax.set_title(KIND_TITLES[panel.kind], fontsize="medium")
    axes[0][0].set_ylabel("mean ± std over runs")
    # One legend for the figure: every panel has the same groups in the same colours.
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside right upper", fontsize="small")
    if title:
        fig.suptitle(title)
    return fig


# --- 2. correlation heatmap ------------------------------------------------------------------

MAX_ANNOTATED = 20  # metrics: a heatmap of more has cells too small for their numbers


def plot_correlation_heatmap(matrix: pd.DataFrame, title: str = "", digits: int = 2):
    """Annotated heatmap; the colour scale is fixed to [-1, 1] so figures compare across studies.

    Past ``MAX_ANNOTATED`` metrics the cells carry no numbers (too small to read: a table has
    them) and shrink so that the figure stays the size of ``MAX_ANNOTATED`` metrics'."""
    values = matrix.to_numpy(dtype=float)
    rows, cols = values.shape
    scale = min(1.0, MAX_ANNOTATED / max(rows, cols, 1))
    fig, ax = plt.subplots(
        figsize=(max(4.0, 0.8 * cols * scale + 2.5), max(3.5, 0.6 * rows * scale + 2.0))
    )
    image = ax.imshow(values, cmap="RdBu_r", vmin=-1.0, vmax=1.0)
    for i in range(rows if scale == 1.0 else 0):
        for j in range(cols):
            if np.isnan(values[i, j]):
                continue  # left blank: too few runs with both metrics
            # White text where the cell is dark enough to hide black text.
            colour = "white" if abs(values[i, j]) > 0.6 else "black"
            ax.text(
                j,
                i,
                f"{values[i, j]:.{digits}f}",
                ha="center",
                va="center",
                color=colour,
                fontsize="small",
            )
    ax.set_xticks(range(cols), [str(c) for c in matrix.columns], rotation=45, ha="right")
    ax.set_yticks(range(rows), [str(r) for r in matrix.index])
    fig.colorbar(image, ax=ax, label="Spearman ρ")
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --- 3. violins per group ------------------------------------------------------------------


def _sort_key(label_parts: tuple) -> tuple:
    # Hyperparameters are logged as strings: "10" must come after "2".
    key = []
    for part in label_parts:
        try:
            key.append((0, float(part), ""))
        except (TypeError, ValueError):
            key.append((1, 0.0, str(part)))
    return tuple(key)


def violin_groups(runs: pd.DataFrame, metric: str, by: list[str]) -> list[tuple[str, np.ndarray]]:
    """(group label, the metric's non-NaN values) per group of ``params.<by>`` values.

    Groups with fewer than two values are dropped (a violin of one point is no distribution);
    groups are ordered numerically where the values are numbers.
    """
    column = f"metrics.{metric}"
    if column not in runs.columns:
        raise KeyError(
            f"metric {metric!r} not logged in this study; logged: {final_metric_columns(runs)}"
        )
    if not by:
        values = runs[column].dropna().to_numpy(dtype=float)
        return [("all", values)] if len(values) >= 2 else []
    params = [f"params.{b}" for b in by]
    out = []
    for key, frame in runs.groupby(params, dropna=False, sort=False):
        values = frame[column].dropna().to_numpy(dtype=float)
        if len(values) >= 2:
            out.append((key if isinstance(key, tuple) else (key,), values))
    out.sort(key=lambda item: _sort_key(item[0]))
    return [(_label(key), values) for key, values in out]


def plot_violins(
    groups: Sequence[tuple[str, np.ndarray]],
    metric: str,
    title: str = "",
    direction: Direction = higher_is_better,
):
    """A violin per group with its runs overlaid as jittered points."""
    if not groups:
        raise ValueError("no groups with at least two values to draw")
    fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(groups) + 2.0), 4.0))
    positions = np.arange(1, len(groups) + 1)
    ax.violinplot([v for _, v in groups], positions=positions, showmedians=True)
    rng = np.random.default_rng(0)  # fixed jitter: the same study redraws the same figure
    for position, (_, values) in zip(positions, groups, strict=True):
        jitter = rng.uniform(-0.08, 0.08, size=len(values))
        ax.scatter(position + jitter, values, s=12, color="black", alpha=0.6, zorder=3)
    ax.set_xticks(positions, [label for label, _ in groups], rotation=30, ha="right")
    higher = direction(metric)
    hint = "" if higher is None else " (higher is better)" if higher else " (lower is better)"
    ax.set_ylabel(metric + hint)
    ax.set_title(title)
    fig.tight_layout()
    return fig


# --- 4. learning curves --------------------------------------------------------------------


def mean_curve(runs: dict[str, list[tuple[int, float]]]) -> tuple[np.ndarray, np.ndarray]:
    """Steps every run logged, and the runs' mean value there (a step's last value wins)."""
    series = [dict(points) for points in runs.values()]  # MLflow may log a step twice
    if not series:
        return np.array([], dtype=int), np.array([], dtype=float)
    common = sorted(set.intersection(*(set(s) for s in series)))
    means = [float(np.mean([s[step] for s in series])) for step in common]
    return np.array(common, dtype=int), np.array(means, dtype=float)


def plot_learning_curves(
    curves: dict[str, dict[str, list[tuple[int, float]]]],
    title: str = "",
    ylabel: str = "",
    colours: dict[str, str] | None = None,
):
    """Thin line per run coloured by group; thick line for the group mean over common steps.

    ``colours``: group -> colour, so that a group has the colour it has in the report's other
    figures (by default the colour cycle in the order given)."""
    if not any(curves.values()):
        raise ValueError("no curves to draw")
    fig, ax = plt.subplots(figsize=(7.0, 4.0))
    for g, (group, runs) in enumerate(curves.items()):
        colour = (colours or {}).get(group, f"C{g % 10}")
        for points in runs.values():
            if points:
                steps, values = zip(*sorted(dict(points).items()), strict=True)
                ax.plot(steps, values, color=colour, alpha=0.3, linewidth=0.8)
        steps, means = mean_curve(runs)
        if len(steps):
            ax.plot(steps, means, color=colour, linewidth=2.5, label=f"{group} (n={len(runs)})")
    ax.set_xlabel("step")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs and steps are whole numbers
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize="small")
    fig.tight_layout()
    return fig


# --- 5. trial pictures ---------------------------------------------------------------------


def picture_panel(images: Sequence[tuple[str, Path]], columns: int = 3, title: str = ""):
    """Existing PNGs tiled ``columns`` wide, each titled with its label, axes off."""
    if not images:
        raise ValueError("no pictures to draw")
    missing = [str(p) for _, p in images if not Path(p).is_file()]
    if missing:
        # Loud: a silently absent tile would read as "this group has no picture".
        raise FileNotFoundError(f"pictures not found: {missing}")
    pictures = [(label, mpimg.imread(Path(path))) for label, path in images]
    height, width = pictures[0][1].shape[:2]
    # Wide pictures (a UMAP panel per factor) get whole rows: tiled three abreast, a 1300 px
    # picture shrank to a 250 px strip whose labels ran together.
    cols = max(1, min(columns, len(pictures), int(4 * height / width + 0.5)))
    rows = math.ceil(len(pictures) / cols)
    tile = 12.0 / cols if width > height * 1.5 else 3.5
    fig, axes = plt.subplots(
        rows, cols, figsize=(tile * cols, tile * rows * height / width + 0.6), squeeze=False
    )
    for ax, (label, picture) in zip(axes.flat, pictures, strict=False):
        ax.imshow(picture, cmap="gray" if picture.ndim == 2 else None)
        ax.set_title(label, fontsize="small")
        ax.axis("off")
    for ax in axes.flat[len(pictures) :]:
        fig.delaxes(ax)  # the last row's unused slots
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_png(fig, path: str | Path, dpi: int = 120) -> Path:
    """Write ``fig`` as a PNG (parent folders created) and close it to free its memory."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=dpi, format="png")
    finally:
        plt.close(fig)
    return path


def png_bytes(fig, dpi: int = 110) -> bytes:
    """``fig`` as PNG bytes (to embed in a report), closed to free its memory."""
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        plt.close(fig)
    return buffer.getvalue()
