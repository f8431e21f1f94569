"""The report's analyses beyond the tables: the single-task baseline as the multi-task paper
summarises it, agreement between metrics, the hyperparameter's share of variance against the
seed's, whether choosing a setting by one metric transfers to another, and the trials' own
pictures. Each adds its section to the document, or says in ``skipped`` why the data cannot
support it (or, past a cap, what it shows of the groups)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pandas as pd

from trainables.metrics import selection
from trainables.metrics.selection import Direction

from . import plots, stats
from .results import declared_outputs

METRIC_PICTURES = ("dci_importance.png",)  # drawn by a metric, after the families' pictures
MAX_PICTURE_GROUPS = 12  # past this many groups: the pictures of the best groups' best runs


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
        bare = matrix.shape[0] > plots.MAX_ANNOTATED  # drawn without its numbers
        note = f"; {matrix.shape[0]} metrics, in colour only: the table has the numbers"
        doc.figure(
            plots.png_bytes(plots.plot_correlation_heatmap(matrix, f"Spearman, {name}")),
            f"correlation_{re.sub(r'[^A-Za-z0-9_-]+', '_', str(name))}.png",  # a dotted path
            f"Rank correlation between metrics ({name}){note if bare else ''}",
        )
    if any(m.shape[0] > plots.MAX_ANNOTATED for m in matrices.values()):
        skipped.append(
            f"metric agreement: heatmaps of more than {plots.MAX_ANNOTATED} metrics carry no "
            "numbers (their tables do)"
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
        frame = transfer_matrix(own, scored, settings, f"params.{design.seed}", direction)
        doc.table(
            frame.round(2).astype(str).rename_axis("chosen by"),
            f"{design.study}: rows, the metric a setting ({', '.join(hyper)}) is chosen by on one "
            "seed; columns, the probability it does at least as well as a random setting on that "
            "metric, averaged over the other seeds",
        )


def transfer_matrix(runs, metrics, settings, seed_column, direction: Direction) -> pd.DataFrame:
    """``stats.selection_transfer(runs, chosen by, judged by, settings, seed_column)`` for every
    pair of ``metrics`` (rows: chosen by), from two groupbys of all metrics per seed instead of
    two per pair and seed: the same means, compared in the same order, so the same numbers."""
    columns = [f"metrics.{m}" for m in metrics]
    higher = [bool(direction(m)) for m in metrics]
    grouped = runs.groupby(settings, sort=True, dropna=False)
    setting, keys = grouped.ngroup(), grouped.size().index  # numbered in the groupby's order
    n_settings, seeds = len(keys), runs[seed_column]
    same_run = seeds.nunique(dropna=False) < 2  # one seed: judged on the runs it chose by
    wins: dict[tuple[int, int], list[float]] = {}

    def means(rows) -> np.ndarray:  # (setting, metric); NaN: a setting without the metric here
        table = runs.loc[rows, columns].groupby(setting[rows]).mean()
        out = np.full((n_settings, len(columns)), np.nan)
        out[table.index.to_numpy()] = table.to_numpy(dtype=float)
        return out

    for seed in seeds.drop_duplicates():
        on_seed = (seeds == seed) | (seeds.isna() & pd.isna(seed))
        chosen_by, judged = means(on_seed), means(on_seed if same_run else ~on_seed)
        present = ~np.isnan(judged)
        for i in range(len(metrics)):
            candidates = chosen_by[:, i]
            if np.isnan(candidates).all():
                continue
            best = np.nanmax(candidates) if higher[i] else np.nanmin(candidates)
            chances: list[list[float]] = [[] for _ in metrics]
            for chosen in np.flatnonzero(candidates == best):
                for j in np.flatnonzero(present[chosen]):
                    scores, value = judged[present[:, j], j], judged[chosen, j]
                    no_better = scores <= value if higher[j] else scores >= value
                    chances[j].append(float(np.count_nonzero(no_better) / len(scores)))
            for j, chance in enumerate(chances):
                if chance:
                    wins.setdefault((i, j), []).append(float(np.mean(chance)))
    matrix = [[float(np.mean(wins[i, j])) if (i, j) in wins else math.nan
               for j in range(len(metrics))] for i in range(len(metrics))]  # fmt: skip
    return pd.DataFrame(matrix, index=metrics, columns=metrics, dtype=float)


def label(key) -> str:
    """A group key as the report writes it (drawn floats short; a param a group lacks left out)."""
    parts = key if isinstance(key, tuple) else (key,)
    shown = [stats.short_key(p) for p in parts if not pd.isna(p)]  # NaN: a param it lacks
    return " / ".join(shown) or "-"


def pictures(doc, client, runs, by, metrics, out: Path, skipped, declared) -> None:
    """The trials' own pictures (those their families declare): for each group, its best run's
    (by the first metric it logs); past ``MAX_PICTURE_GROUPS`` groups, those of the groups whose
    best runs score best. A run's artifacts are listed once: only pictures it has are fetched."""
    scored = [m for m in metrics if declared.direction(m) is not None]
    keys = [f"params.{b}" for b in by]
    groups = runs.groupby(keys, dropna=False) if keys else [("all", runs)]
    best, used, rank = [], [], []
    for key, group in groups:
        metric = next((m for m in scored if group[f"metrics.{m}"].notna().any()), None)
        if metric is None:
            continue
        mode = selection.default_mode(metric, declared.direction)  # ``scored``: each has one
        values = group[f"metrics.{metric}"]
        row = selection.best(list(values.index), values.get, mode)
        best.append((label(key), group.at[row, "run_id"]))
        used.append(metric)
        # the first metric ranks first; then the best value (lower first: the score negated)
        rank.append((scored.index(metric), values[row] if mode == "min" else -values[row]))
    order = sorted(range(len(best)), key=lambda i: rank[i])[:MAX_PICTURE_GROUPS]
    chosen = [best[i] for i in sorted(order)]
    first = ", ".join(dict.fromkeys(used[i] for i in sorted(order)))
    each = "each group's best run" if len(chosen) == len(best) else (
        f"the best runs of the {len(chosen)} of {len(best)} groups whose best runs score best")  # fmt: skip
    folder, drawn = out / "pictures", 0
    pictures = list(dict.fromkeys([*declared.pictures, *METRIC_PICTURES]))
    logged = {run_id: _logged(client, run_id, pictures) for _, run_id in chosen}
    for picture in pictures:
        images = []
        for name, run_id in chosen:
            if logged[run_id] is not None and picture not in logged[run_id]:
                continue  # this family does not draw it
            try:
                path = client.download_artifacts(run_id, picture, str(folder / run_id))
            except Exception:  # not listed, or not there after all
                continue
            images.append((name, Path(path)))
        if not images:
            continue
        drawn += 1
        doc.figure(
            plots.png_bytes(
                plots.picture_panel(
                    images,
                    columns=min(3, len(images)),
                    title=f"{picture} of {each} by {first}",
                )
            ),
            f"panel_{picture}",
            f"{picture}: {each} by {first}",
        )
    if not best:
        skipped.append("pictures: no run with a score to pick by")
    elif len(chosen) < len(best):
        skipped.append(f"pictures: {'' if drawn else 'none logged by '}{each} (by {first})")


def _logged(client, run_id: str, pictures: list[str]) -> set[str] | None:
    """Which of ``pictures`` the run logged, one listing per folder they are in; None where the
    store cannot list them (then each is tried)."""
    found: set[str] = set()
    for folder in dict.fromkeys(str(Path(p).parent) for p in pictures):
        try:
            listed = client.list_artifacts(run_id, None if folder == "." else folder)
        except Exception:
            return None
        found |= {f.path for f in listed if not f.is_dir}
    return found
