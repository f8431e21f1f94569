"""``study report``: tables (CSV + markdown) and figures for one study."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt

from . import figures, tables
from .results import load_runs, varying_params


def write_report(tracking_uri: str, study: str, out: str | Path) -> list[Path]:
    runs = load_runs(tracking_uri, study)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by = varying_params(runs)
    summary = tables.summary(runs, by)
    pretty = tables.mean_pm_std(summary)
    written = []

    csv = out / "summary.csv"
    flat = summary.copy()
    flat.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    flat.to_csv(csv)
    runs.to_csv(out / "runs.csv", index=False)
    written += [csv, out / "runs.csv"]

    markdown = out / "summary.md"
    markdown.write_text(
        f"# Study `{study}`\n\n{len(runs)} finished trials; {pooled_line(runs, summary)}, "
        f"grouped by {', '.join(by) or 'nothing'}.\n\n{launches_line(runs)}\n\n"
        + tables.to_markdown(pretty)
    )
    written.append(markdown)

    info = figures.bar_info(summary)
    if info.metrics:
        figure = figures.plot_bars(info, title=study)
        png = out / "scores.png"
        figure.savefig(png, dpi=120)
        plt.close(figure)
        written.append(png)
    return written


def pooled_line(runs, summary) -> str:
    """What each mean ± std is over: the runs a group holds (seeds, and a probe's upstream runs)."""
    counts = summary.xs("count", axis=1, level=1).max(axis=1) if len(summary.columns) else []
    low, high = (int(min(counts)), int(max(counts))) if len(counts) else (0, 0)
    size = f"{low}" if low == high else f"{low}-{high}"
    over = "seeds and upstream runs" if "params.upstream.family" in runs else "seeds"
    return f"mean ± std over the {size} runs of each group ({over})"


def launches_line(runs) -> str:
    """Which launches (parent runs) a report pools, so two launches are never mixed silently."""
    column = "tags.mlflow.parentRunId"
    if column not in runs:
        return "Launches pooled: unknown (runs without a parent run)."
    counts = runs[column].value_counts()
    listed = ", ".join(f"`{run_id}` ({n} trials)" for run_id, n in counts.items())
    return f"Launches pooled: {len(counts)} ({listed})."
