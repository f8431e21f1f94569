"""``study report``: one study's (or several studies') tables and figures in ``report.html``.

The report opens with each study's question (its YAML ``description``) and answers it in words where
the data can: which group leads on each metric and whether the lead exceeds the 95% intervals over
seeds. Then the tables (mean ± std with the tied best in bold; CSV, markdown and LaTeX files too), the
agreement between metrics, how much of each metric the swept hyperparameter explains against the
seed, whether choosing a setting by one metric transfers to another, and the figures: bars with one
panel per metric scale, a correlation heatmap, violins, learning curves and the trials' own pictures.
What the data cannot support is listed at the end with the reason, instead of silently missing.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from mlflow.tracking import MlflowClient

from trainables.core.outputs import Declared

from . import hypothesis, plots, stats, tables
from . import report_analyses as analyses
from .document import Document
from .report_analyses import label as _label
from .results import (
    Design,
    declared_outputs,
    load_studies,
    main_metrics,
    require_store,
    study_design,
    varying_params,
)

# What a study's question is usually about leads the answer and picks the pictures: the outputs
# the runs' families declare primary (``Trainer.outputs``), then these registered metrics.
LEADING_METRICS = ("mig", "dci_disentanglement")
MAX_CURVE_RUNS = 60  # learning curves: enough lines to see the spread, few enough to read
# Past these many groups (a study at Locatello et al.'s scale has 250) a figure or a ranking shows
# the best groups by the leading metric, and says so; the tables and tests keep every group.
MAX_FIGURE_GROUPS = 24  # bars and violins
MAX_RANKED = 24  # the answer's rankings written out (every step is tested; a CSV holds them all)
# Learning curves: the families' declared ones, else a validation loss by the name
# ``Trainer.validate`` suggests, else the loop's own training loss.
FALLBACK_CURVES = ("val/loss", "train/loss")


def write_report(
    tracking_uri: str, studies: str | list[str], out: str | Path, *, cache: Path | None = None
) -> list[Path]:
    studies = [studies] if isinstance(studies, str) else list(studies)
    require_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    runs = load_studies(tracking_uri, studies, cache=cache)
    designs = {s: study_design(client, s) for s in studies}
    declared = declared_outputs(runs)  # directions, leading outputs, curves, pictures
    direction = declared.direction
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    by = grouping(runs, designs)
    asked = [m for d in designs.values() for m in d.question if f"metrics.{m}" in runs]
    metrics = list(dict.fromkeys(asked + ordered(main_metrics(runs, declared), declared)))
    skipped: list[str] = []
    doc = Document(f"Report: {', '.join(studies)}")
    written: list[Path] = []

    _question(doc, runs, designs, by)
    _probe_note(doc, runs, metrics, declared)
    summary = tables.summary(runs, by)
    written += _summary_files(runs, summary, out)
    interval = (
        stats.interval_table(runs, by, metrics) if by else stats.interval_table(runs, [], metrics)
    )
    marks = stats.best_marks(interval, metrics, direction)
    written += _answer(doc, runs, designs, metrics, by, skipped, direction, out)
    _scores(doc, interval, marks, metrics, out, written)
    analyses.single_task(doc, runs, metrics, skipped, direction)
    analyses.agreement(doc, runs, metrics, skipped, direction)
    analyses.variance(doc, runs, designs, metrics, skipped, direction)
    analyses.transfer(doc, runs, designs, metrics, skipped, direction)
    _figures(doc, runs, summary, metrics, by, skipped, direction)
    _curves(doc, client, runs, summary, by, skipped, declared)
    analyses.pictures(doc, client, runs, by, metrics, out, skipped, declared)
    doc.heading("Skipped")
    doc.bullets(skipped or ["nothing: every section had the data it needs"])
    written += doc.write(out)
    return written


def ordered(metrics: list[str], declared: Declared | None = None) -> list[str]:
    """The declared primary outputs, then ``LEADING_METRICS`` (each in that order), then the rest
    in the order given."""
    leading = [*(declared or Declared()).primary, *LEADING_METRICS]
    first = [m for m in dict.fromkeys(leading) if m in metrics]
    return first + [m for m in metrics if m not in first]


def grouping(runs: pd.DataFrame, designs: dict[str, Design]) -> list[str]:
    """What the tables group by: the study (when several), then the swept params that are not the
    seed (from the launches' specs; guessed from the runs only where no spec was found). A probe's
    upstream run id is replaced by what tells its upstreams apart (``varying_params``)."""
    guessed = varying_params(runs)
    declared = []
    for factor in (f for d in designs.values() for f in d.factors):
        # an axis of mappings (e.g. dataset.subset) is logged flattened: group by its parts
        parts = [g for g in guessed if g.startswith(f"{factor}.")]
        declared += parts if parts and f"params.{factor}" not in runs else [factor]
    by = [f for f in dict.fromkeys(declared) if f in guessed or f"params.{f}" in runs]
    # Studies compared side by side whose specs sweep only seeds: each study is one group (their
    # params differ because their families do, which is not a factor of either study).
    seeds_only = len(designs) > 1 and all(d.family and not d.factors for d in designs.values())
    if ("upstream" in by or not declared) and not seeds_only:
        by = [b for b in by if b != "upstream"] + [g for g in guessed if g not in by]
    by = [
        b
        for b in dict.fromkeys(by)
        if f"params.{b}" in runs and runs[f"params.{b}"].nunique(dropna=False) > 1
    ]
    if len(designs) > 1:
        runs["params.study"] = runs["tags.study"]
        by = ["study", *by]
    return by


def _question(doc: Document, runs, designs, by) -> None:
    doc.heading("The question")
    for design in designs.values():
        n = int((runs["tags.study"] == design.study).sum()) if "tags.study" in runs else len(runs)
        what = design.description or "(no description in the study's YAML)"
        doc.paragraph(
            f"{design.study} ({design.family}, {n} finished trials): {what}. "
            f"Swept: {', '.join(design.swept) or 'nothing'}; seed param: {design.seed}."
        )
    doc.paragraph(
        f"Groups: {', '.join(by) or 'all runs as one group'}; each number is the mean over a "
        f"group's runs (seeds{', and upstream runs for probes' if 'params.upstream.family' in runs else ''})."
    )
    doc.paragraph(tables_launches(runs))


def _probe_note(doc: Document, runs, metrics: list[str], declared: Declared) -> None:
    """A probe's own results apart from the scores it re-measures on its upstream's codes."""
    if "params.upstream" not in runs:
        return
    own = [m for m in metrics if declared.find(m) is not None and not declared.find(m).of_metrics]
    upstream = [m for m in metrics if m not in own]
    if not upstream:
        return
    doc.paragraph(
        "These runs are probes on frozen upstream representations. Their own results: "
        f"{', '.join(own) or 'none declared'}. The disentanglement scores "
        f"({', '.join(upstream[:6])}{', ...' if len(upstream) > 6 else ''}) are the upstream's: "
        "its codes, re-measured on this data view; they describe the representation the probe "
        "read, not the probe."
    )


def tables_launches(runs) -> str:
    column = "tags.mlflow.parentRunId"
    if column not in runs:
        return "Launches pooled: unknown (runs without a parent run)."
    counts = runs[column].value_counts()
    listed = ", ".join(f"{run_id} ({n} trials)" for run_id, n in counts.items())
    return f"Launches pooled: {len(counts)} ({listed})."


def _answer(doc, runs, designs, metrics, by, skipped, direction, out: Path) -> list[Path]:
    """Per metric, the groups ranked best first with each step down tested over replicates
    (``hypothesis.ordering``: one-sided, paired where groups share seeds, Welch otherwise), Holm's
    correction across every step of the table; the metrics the study asks about lead. Past
    ``MAX_RANKED`` groups a ranking is written out to its best ones, and every step goes to
    ``answer_steps.csv``."""
    doc.heading("The answer, where the data gives one")
    if not by:
        doc.paragraph("One group only: nothing to compare.", answer=True)
        skipped.append("answer: the runs form one group (no swept parameter besides the seed)")
        return []
    asked = [m for d in designs.values() for m in d.question]
    asked = [m for m in dict.fromkeys(asked) if f"metrics.{m}" in runs]
    alpha = min((d.alpha for d in designs.values()), default=0.05)
    others = [m for m in metrics if m not in asked and direction(m) is not None]
    replicate = stats.replicate_column(runs)
    orderings: dict[str, tuple[list[str], list]] = {}
    for metric in asked + others:
        values = stats.group_values(runs, by, metric, replicate)
        values = {g: v for g, v in values.items() if (~np.isnan(v.to_numpy(float))).any()}
        if len(values) < 2:
            continue
        ranked = hypothesis.ordering(values, higher_is_better=bool(direction(metric)))
        orderings[metric] = (ranked.groups, list(ranked.steps))
    if not orderings:
        skipped.append("answer: no metric with a known direction and two groups")
        return []
    # Holm across the cells of the table: the question's steps as one family, the rest as another
    for family in (asked, others):
        steps = [s for m in family if m in orderings for s in orderings[m][1]]
        adjusted = iter(hypothesis.holm_table(steps))
        for m in family:
            if m in orderings:
                orderings[m] = (orderings[m][0], [next(adjusted) for _ in orderings[m][1]])
    how = {None: "runs", "params.seed": "seeds", "params.upstream.seed": "upstream seeds"}
    doc.paragraph(
        f"Each step of a ranking is a one-sided t-test over {how[replicate]} (paired where two "
        f"groups share them, Welch otherwise), Holm-corrected across the steps of "
        f"{'the question' if asked else 'all'} metrics; '>' / '<': significant at {alpha:g}, "
        f"'≥' / '≤': not (n.s.)."
    )
    lines, rows, every = [], [], []
    for metric, (groups, steps) in orderings.items():
        higher = bool(direction(metric))
        strict, weak = (">", "≥") if higher else ("<", "≤")
        text = [groups[0]]
        for i, step in enumerate(steps):
            significant = not np.isnan(step.p_holm) and step.p_holm <= alpha
            p = "n/a" if np.isnan(step.p_holm) else f"{step.p_holm:.2g}"
            row = {
                "metric": metric, "step": f"{step.a} vs {step.b}", "test": step.test,
                "n": f"{step.n_a}, {step.n_b}", "difference [95% CI]":
                f"{step.diff:+.4g} [{step.ci_low:.3g}, {step.ci_high:.3g}]",
                "effect": f"{step.effect:.3g}", "p": f"{step.p:.2g}", "p (Holm)": p,
            }  # fmt: skip
            every.append(row)
            if i + 1 < MAX_RANKED:  # the step down to the MAX_RANKED-th group is the last shown
                relation, note = (strict, "") if significant else (weak, ", n.s.")
                text.append(f"{relation} {step.b} (p={p}{note})")
                rows.append(row)
        if len(groups) > MAX_RANKED:
            text.append(f"{weak} ... ({len(groups) - MAX_RANKED} more groups)")
        n_sig = sum(not np.isnan(s.p_holm) and s.p_holm <= alpha for s in steps)
        verdict = "every step significant" if n_sig == len(steps) else (
            f"{n_sig} of {len(steps)} steps significant")  # fmt: skip
        prefix = "asked: " if metric in asked else ""
        lines.append(
            f"{prefix}{metric} ({'higher' if higher else 'lower'} is better): "
            f"{' '.join(text)}; {verdict} at {alpha:g}."
        )
    contrasts = [c for d in designs.values() for c in d.contrasts]
    if contrasts and asked:
        lines = _contrasts(runs, by, asked, contrasts, replicate, alpha, direction) + lines
    doc.bullets(lines)
    doc.table(pd.DataFrame(rows).set_index("metric"), "each step of the rankings above")
    if not asked:
        skipped.append("answer: the study declares no question metrics (question: {metrics: [...]})")
    if len(every) == len(rows):
        return []
    pd.DataFrame(every).to_csv(out / "answer_steps.csv", index=False)
    most = max(len(groups) for groups, _ in orderings.values())
    skipped.append(
        f"answer: each ranking is written out to its {MAX_RANKED} best groups (of up to {most}); "
        f"all {len(every)} steps were tested and Holm-corrected, and answer_steps.csv lists them"
    )
    return [out / "answer_steps.csv"]


def _contrasts(runs, by, metrics, contrasts, replicate, alpha, direction) -> list[str]:
    """The question's own comparisons (first group better than the second), Holm-corrected
    across every (metric, pair) cell, each stated as significant or not."""
    cells: list[tuple[str, hypothesis.Comparison | str]] = []
    for metric in metrics:
        alternative = "greater" if direction(metric) else "less"
        values = stats.group_values(runs, by, metric, replicate)
        for a, b in contrasts:
            missing = [g for g in (a, b) if g not in values]
            if missing:
                cells.append((metric, f"{a} vs {b}: no group {', '.join(missing)} in the runs"))
            else:
                test = hypothesis.compare(values[a], values[b], alternative=alternative, names=(a, b))
                cells.append((metric, test))
    adjusted = iter(hypothesis.holm_table([t for _, t in cells if not isinstance(t, str)]))
    return [
        f"asked: {metric}: {t if isinstance(t, str) else hypothesis.describe(next(adjusted), alpha)}"
        for metric, t in cells
    ]


def _scores(doc, interval, marks, metrics, out: Path, written: list[Path]) -> None:
    doc.heading("Scores")
    pretty = _pretty(interval, metrics)
    bold = marks.reindex(index=pretty.index, columns=pretty.columns).fillna(False)
    shown = pretty.index.map(
        lambda k: (
            tuple(stats.short_key(p) for p in k) if isinstance(k, tuple) else stats.short_key(k)
        )
    )  # drawn floats to 4 significant digits
    pretty.index, bold.index = shown, shown
    if isinstance(interval.index, pd.MultiIndex):
        pretty.index.names = bold.index.names = interval.index.names
    else:
        pretty.index.name = bold.index.name = interval.index.name
    doc.table(
        pretty,
        "mean ± std over each group's runs; bold: the best and every group whose "
        "95% t-interval overlaps it",
        bold,
    )
    for fmt, suffix in (("markdown", "md"), ("latex", "tex")):
        path = out / f"scores.{suffix}"
        path.write_text(stats.format_table(interval, marks, fmt=fmt))
        written.append(path)
    flat = interval.copy()  # with the interval half-widths the formatted tables leave out
    flat.columns = [f"{metric}_{stat}" for metric, stat in interval.columns]
    flat.to_csv(out / "scores.csv")
    written.append(out / "scores.csv")


def _pretty(interval: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    out = pd.DataFrame(index=interval.index)
    for metric in metrics:
        cells = []
        for mean, std, n in zip(
            interval[(metric, "mean")],
            interval[(metric, "std")],
            interval[(metric, "n")],
            strict=True,
        ):
            cells.append(
                "-" if pd.isna(mean) else f"{mean:.3f}" if n < 2 else f"{mean:.3f} ± {std:.3f}"
            )
        out[metric] = cells
    return out


def _summary_files(runs, summary, out: Path) -> list[Path]:
    """The full summary (every final metric) as CSV and markdown, and the runs as CSV."""
    flat = summary.copy()
    flat.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    flat.to_csv(out / "summary.csv")
    runs.to_csv(out / "runs.csv", index=False)
    (out / "summary.md").write_text(
        f"# {', '.join(sorted(runs['tags.study'].unique())) if 'tags.study' in runs else 'Study'}\n\n"
        f"{len(runs)} finished trials.\n\n{tables_launches(runs)}\n\n"
        + tables.to_markdown(tables.mean_pm_std(summary))
    )
    return [out / "summary.csv", out / "runs.csv", out / "summary.md"]


def _figures(doc, runs, summary, metrics, by, skipped, direction) -> None:
    """Bars of every metric and violins of the leading one; past ``MAX_FIGURE_GROUPS`` groups,
    of the groups best by the leading metric's mean (said in the caption and under Skipped)."""
    doc.heading("Figures")
    first = next((m for m in metrics if direction(m) is not None), None)
    shown, capped = summary, ""
    if first is not None and first in summary.columns.get_level_values(0):
        means = summary[(first, "mean")].tolist()
        rows = plots.best_positions(means, direction(first), MAX_FIGURE_GROUPS)
        if len(rows) < len(summary):
            shown, capped = summary.iloc[rows], f"; the {len(rows)} of {len(summary)} groups"
            skipped.append(f"bars: the {len(rows)} of {len(summary)} groups best by {first}")
    panels = plots.bar_panels(
        shown, [m for m in metrics if m in summary.columns.get_level_values(0)], direction
    )
    if panels:
        doc.figure(
            plots.png_bytes(plots.plot_bar_panels(panels, "mean ± std per group")),
            "scores.png",
            "Scores per group, one panel per metric scale"
            + (f"{capped} best by {first} (the Scores table has them all)" if capped else ""),
        )
    else:
        skipped.append("bars: no metric with a known direction")
    if first is not None:
        groups = plots.violin_groups(runs, first, by)
        means = [float(np.mean(values)) for _, values in groups]
        kept = plots.best_positions(means, direction(first), MAX_FIGURE_GROUPS)
        best = f"the {len(kept)} of {len(groups)} groups best by mean {first}"
        if len(kept) < len(groups):
            skipped.append(f"violins: {best} (of those with two runs)")
        if groups:
            chosen = [groups[i] for i in kept]
            violins = plots.plot_violins(chosen, first, f"{first} per group", direction)
            doc.figure(
                plots.png_bytes(violins),
                f"violins_{first}.png",
                f"Distribution of {first} over each group's runs"
                + (f"; {best}" if len(kept) < len(groups) else ""),
            )
        else:
            skipped.append(f"violins: no group has two runs of {first}")


def _curves(doc, client, runs, summary, by, skipped, declared) -> None:
    keys = [*declared.curves, *FALLBACK_CURVES]
    key = next(
        (k for k in keys if f"metrics.{k}" in runs and runs[f"metrics.{k}"].notna().any()), None
    )
    if key is None:
        skipped.append("learning curves: the runs log no per-epoch validation or training loss")
        return
    curves: dict[str, dict[str, list[tuple[int, float]]]] = {}
    chosen = runs.head(MAX_CURVE_RUNS)
    for _, run in chosen.iterrows():
        history = client.get_metric_history(run["run_id"], key)
        group = _label(tuple(run.get(f"params.{b}") for b in by)) if by else "all"
        curves.setdefault(group, {})[run["run_id"][:8]] = [(m.step, m.value) for m in history]
    # Each group in the colour it has in the bar chart (the summary's order).
    colours = {_label(k): f"C{i % 10}" for i, k in enumerate(summary.index)} if by else {}
    figure = plots.plot_learning_curves(curves, f"{key} per run", ylabel=key, colours=colours)
    doc.figure(
        plots.png_bytes(figure),
        "learning_curves.png",
        f"Learning curves ({key}); thick: the group mean",
    )
    if len(runs) > MAX_CURVE_RUNS:
        skipped.append(f"learning curves: drew the first {MAX_CURVE_RUNS} of {len(runs)} runs")
