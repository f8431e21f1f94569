"""Locatello et al. 2019 (seed 002) in the reproduction report (``reproduction``): its departures,
its verdicts over every step's runs at once, two findings the analysis modules leave to here (L6,
L8), and its tables, the paper's transfer numbers (``paper_values/locatello.yaml``) beside ours.

The paper's findings compare methods, settings, seeds and datasets, so the chain's steps (one study
per method, each sweeping its datasets as a data axis) are judged as one frame: ``pooled`` joins
them before ``locatello_verdicts`` and ``tables`` see them.
"""

from __future__ import annotations

import math

import pandas as pd

from trainables.metrics.selection import Direction

from . import findings_locatello as fl
from . import locatello as lo
from . import locatello_selection as sel
from . import paper_values
from .document import Document
from .findings import Verdict, _not_comparable
from .results import declared_outputs

DEPARTURES = [
    "Datasets are rendered procedurally on the official factor grids: our dSprites sprites "
    "(outlines and a 1-pixel position step differ from the official file), ray-cast stand-ins "
    "for SmallNORB and Cars3D, and a procedural swirl texture instead of the Scream painting; the "
    "paper used the official files (dataset.options.path reads them, one dataset per study).",
    "CPU twin: two of the six methods (beta-VAE, beta-TCVAE) at three of disentanglement_lib's six "
    "strengths each (beta 1, 4, 16 and 1, 4, 10), 5 seeds (paper 50), two datasets (dSprites and "
    "Color-dSprites; paper 7) on a 1,152-image view (orientation fixed, every 4th position; paper: "
    "the whole grids), 600 steps of Adam 1e-3 at batch 32 (paper 300k at 1e-4, batch 64): the "
    "models have left the blank-image plateau but are far from converged.",
    "CPU twin: metric points 1,000 / 500 (paper 10,000 / 5,000), drawn with replacement from the "
    "1,152 images; no downstream test (its sample efficiency needs 10,000 training codes), so L10 "
    "is not comparable at CPU scale.",
    "A method is a family and its type (DIP-VAE-I and -II apart); a setting is the params that "
    "vary within a method; model-selection probabilities are exact over every seed, dataset and "
    "metric pair (ties count as wins), not the paper's 10,000 random draws.",
    "DCI by default in fast mode (compiled boosting, within 0.004 of the reference's trees).",
    "FactorVAE's discriminator trains on a second batch (disentanglement_lib permutes within one "
    "batch); beta-TCVAE's logged total correlation includes a -log M term (same gradients).",
]
ORDER = ("L2", "L3", "L4", "L5", "L6", "L7", "L8", "L9", "L10")
TRANSFER_PAIR = ("dsprites", "color_dsprites")  # L8: the pair the paper names


def pooled(by_dataset: dict[str, dict[str, pd.DataFrame]]) -> dict[str, dict[str, pd.DataFrame]]:
    """Every step's runs in one frame per role, keyed by the datasets they hold (the runs'
    ``params.dataset.name`` tells them apart)."""
    roles: dict[str, list[pd.DataFrame]] = {}
    for frames in by_dataset.values():
        for role, runs in frames.items():
            roles.setdefault(role, []).append(runs)
    joined = {r: pd.concat(f, ignore_index=True, sort=False) for r, f in roles.items()}
    names = sorted({n for runs in joined.values() for n in lo.dataset_of(runs).unique()})
    return {", ".join(names) or "-": joined} if joined else {}


def _runs(roles: dict[str, pd.DataFrame]) -> pd.DataFrame | None:
    frames = [f for f in roles.values() if f is not None and not f.empty]
    return pd.concat(frames, ignore_index=True, sort=False) if frames else None


def _best(values: pd.Series, higher: bool):
    """The label of the best value (first of ties)."""
    return values.idxmax() if higher else values.idxmin()


def l6_no_recipe(runs, dataset=None, alpha=0.05, direction=None) -> Verdict:
    claim = (
        "no method dominates the others, and no regularisation strength is best on every dataset"
    )
    source = "Sec. 5.3"
    rule = (
        "per metric, the method with the best mean on each dataset: one method best on every "
        "dataset in at most half of the metrics; per method and metric, the setting with the best "
        "mean over seeds on each dataset: one setting best on every dataset in at most half of "
        "the cells"
    )
    runs, label = fl._scope(runs, dataset)
    datasets = [name for name, _ in lo.by_dataset(runs)] if runs is not None else []
    if len(datasets) < 2:
        return _not_comparable(
            "L6", label, claim, source, rule, f"needs two datasets (has {datasets})"
        )
    direction = direction or declared_outputs(runs).direction
    metrics = fl._scored(runs, lo.PAPER_METRICS, direction)
    marked = lo.annotate(runs)
    if not metrics or marked[lo.METHOD].nunique() < 2:
        why = "needs two methods and one of the paper's metrics"
        return _not_comparable("L6", label, claim, source, rule, why)
    keys = [lo.dataset_of(marked), marked[lo.METHOD]]
    dominated, consistent, lines = 0, [], []
    for metric in metrics:
        column, higher = f"metrics.{metric}", bool(direction(metric))
        by_method = marked.groupby(keys)[column].mean().dropna().unstack()  # dataset x method
        best = {
            d: _best(row.dropna(), higher) for d, row in by_method.iterrows() if row.notna().any()
        }
        one = len(best) >= 2 and len(set(best.values())) == 1
        dominated += one
        lines.append(f"{metric}: best method {', '.join(f'{d} {m}' for d, m in best.items())}"
                     f"{' (the same everywhere)' if one else ''}")  # fmt: skip
        for method, part in marked.groupby(lo.METHOD, sort=True):
            means = part.groupby([lo.dataset_of(part), part[lo.SETTING]])[column].mean().dropna()
            settings = {d: _best(s.droplevel(0), higher) for d, s in means.groupby(level=0)
                        if len(s) > 1}  # fmt: skip
            if len(settings) >= 2:
                consistent.append(len(set(settings.values())) == 1)
                lines.append(f"{metric} / {method}: best setting "
                              + ", ".join(f"{d} {s}" for d, s in settings.items()))  # fmt: skip
    if not consistent:
        why = "no method has two settings on two datasets"
        return _not_comparable("L6", label, claim, source, rule, why)
    ok = dominated <= len(metrics) / 2 and sum(consistent) <= len(consistent) / 2
    summary = (
        f"one method best on every dataset for {dominated}/{len(metrics)} metrics; one setting "
        f"best on every dataset in {sum(consistent)}/{len(consistent)} method-metric cells"
    )
    return fl._verdict("L6", label, claim, source, rule, ok, summary, lines)


def l8_color_transfer(runs, dataset=None, alpha=0.05, direction=None, share=0.5) -> Verdict:
    source_name, target_name = TRANSFER_PAIR
    claim = "settings chosen on dSprites transfer to Color-dSprites, but the random seed still dominates"
    source = "Sec. 5.4"
    rule = (
        f"per paper metric, the setting it chooses on each {source_name} seed, judged by its mean "
        f"over {target_name}'s seeds (locatello_selection.selection_across): the mean probability "
        "of beating a random setting above its chance level (transfer works), and on "
        f"{target_name} the seed share of the metric's variance (nested: method, setting, seed) "
        f">= {share} in most metrics (seed-dominated)"
    )
    runs, _ = fl._scope(runs, dataset)
    label = f"{source_name} -> {target_name}"
    names = [name for name, _ in lo.by_dataset(runs)] if runs is not None else []
    if not set(TRANSFER_PAIR) <= set(names):
        why = f"needs runs on {source_name} and {target_name} (has {names})"
        return _not_comparable("L8", label, claim, source, rule, why)
    pair = runs[lo.dataset_of(runs).isin(TRANSFER_PAIR)]
    direction = direction or declared_outputs(pair).direction
    metrics = fl._scored(pair, lo.PAPER_METRICS, direction)
    if not metrics or not fl._seeded(pair):
        why = "needs one of the paper's metrics and two seeds per setting"
        return _not_comparable("L8", label, claim, source, rule, why)
    frames = dict(lo.by_dataset(lo.annotate(pair)))
    shares = lo.variance_decomposition(frames[target_name], metrics).set_index("metric")
    lines, probabilities, chances, seeded = [], [], [], 0
    for metric in metrics:
        p, chance = sel.selection_across(
            frames[source_name], frames[target_name], metric, metric, direction=direction
        )
        seed_share = shares["seed_share"].get(metric, math.nan)
        seeded += bool(seed_share >= share)
        if not math.isnan(p):
            probabilities.append(p)
            chances.append(chance)
        lines.append(f"{metric}: probability {p:.2f} (chance {chance:.2f}); seed share on "
                     f"{target_name} {seed_share:.2f}")  # fmt: skip
    if not probabilities:
        return _not_comparable("L8", label, claim, source, rule, "no setting on both datasets")
    mean, chance = sum(probabilities) / len(probabilities), sum(chances) / len(chances)
    ok = mean > chance and seeded > len(metrics) / 2
    summary = (
        f"transfer probability {mean:.2f} vs chance {chance:.2f}; seed share >= {share} in "
        f"{seeded}/{len(metrics)} metrics"
    )
    return fl._verdict("L8", label, claim, source, rule, ok, summary, lines)


def locatello_verdicts(
    roles: dict[str, pd.DataFrame], dataset: str, alpha: float = 0.05
) -> list[Verdict]:
    """Every finding L2-L10 over all the chain's runs (``dataset``: ``pooled``'s label, unused:
    the runs name their own datasets)."""
    runs = _runs(roles)
    direction: Direction | None = None
    if runs is not None:
        direction = declared_outputs(runs).direction  # once: it may import the families
    verdicts = fl.locatello_verdicts(runs, alpha, direction)
    verdicts += [l6_no_recipe(runs, None, alpha, direction),
                 l8_color_transfer(runs, None, alpha, direction)]  # fmt: skip
    return sorted(verdicts, key=lambda v: ORDER.index(v.id) if v.id in ORDER else len(ORDER))


def _cell(values: pd.Series) -> str:
    values = values.dropna().astype(float)
    if values.empty:
        return "-"
    sd = f" ± {values.std(ddof=1):.3f}" if len(values) > 1 else ""
    return f"{values.mean():.3f}{sd}"


def scores_table(runs: pd.DataFrame, metrics: list[str]) -> pd.DataFrame:
    """Per dataset and method: each metric's mean ± sd over its settings and seeds; the runs."""
    marked = lo.annotate(runs)
    rows = {}
    for (name, method), part in marked.groupby([lo.dataset_of(marked), lo.METHOD], sort=True):
        row = {m: _cell(part[f"metrics.{m}"]) for m in metrics}
        rows[f"{name} / {method}"] = {**row, "runs": str(len(part))}
    frame = pd.DataFrame.from_dict(rows, orient="index")
    frame.index.name = "dataset / method"
    return frame


def transfer_beside_paper(runs: pd.DataFrame, metrics: list[str], direction) -> pd.DataFrame:
    """``transfer_table`` with the paper's numbers read from ``paper_values``."""
    table = sel.transfer_table(runs, metrics, direction)
    paper = paper_values.table("locatello", "transfer").set_index("group")["value"]
    out = pd.DataFrame(index=table.index)
    out["ours"] = [f"{p:.2f}" if not math.isnan(p) else "-" for p in table["probability"]]
    out["chance"] = [f"{c:.2f}" if not math.isnan(c) else "-" for c in table["chance"]]
    out["paper"] = [f"{paper[k]:.2f}" if k in paper else "-" for k in table.index]
    out["cells"] = table["n_cells"].astype(str)
    return out


def tables(doc: Document, roles: dict[str, pd.DataFrame]) -> None:
    runs = _runs(roles)
    if runs is None:
        return
    direction = declared_outputs(runs).direction
    metrics = fl._scored(runs, lo.PAPER_METRICS, direction)
    if not metrics:
        doc.paragraph("None of the paper's six metrics was logged: no tables.")
        return
    doc.heading("Scores by dataset and method (Sec. 5.3, Figure 3's spread)", 3)
    doc.table(scores_table(runs, metrics), "mean ± sd over settings and seeds")
    doc.heading("Where the spread comes from (Sec. 5.3; finding L4)", 3)
    shares = lo.variance_decomposition(runs, metrics)
    shares = shares.set_index(["dataset", "metric"])[["method_share", "setting_share",
                                                       "seed_share", "n_runs"]]  # fmt: skip
    doc.table(shares.round(3).astype(str), "shares of the sum of squares, nested")
    if len(metrics) >= 2 and fl._seeded(runs):
        meta = paper_values.meta("locatello", "transfer")
        doc.heading("Model selection beats random how often? (Sec. 5.4; finding L9)", 3)
        doc.paragraph(f"Paper's unit: {meta['unit']}. How ours maps: {meta['ours']} "
                      f"Reading of the seed's text: {meta['ambiguity']}")  # fmt: skip
        doc.table(transfer_beside_paper(runs, metrics, direction), "probability (ours | paper)")
