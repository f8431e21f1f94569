"""The multi-task paper's findings as checks with written verdict rules (FINDINGS.md, M*), and
what every finding check shares (``findings_modular`` holds the modular paper's, W*).

Each check takes the runs of a reproduction chain (one frame per role: ``encoders``, ``decoders``,
``autoencoder``, ``heads``, ``modular``; the columns of ``analysis.results.load_runs``) for one
dataset and returns a ``Verdict``: *reproduced*, *not reproduced*, or *not comparable* with the
reason (a role, metric or group the chain did not produce, or too few seeds to test). Numbers
behind a verdict are in ``evidence``. Pure: frames in, verdicts out.

Seeds are the unit of replication. A single-task "group" is one model per task: per seed its
value is the mean over the tasks' models (the paper's single-task mean), so it pairs with the
multi-head model of the same seed.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import pandas as pd

from . import hypothesis as ht
from . import stats

REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_COMPARABLE = "not comparable"
# The multi-task paper's Table 5 metrics (our output names), in its order.
TABLE5_METRICS = (
    "factor_vae", "dci_disentanglement", "dci_completeness", "dci_informativeness", "mig", "sap",
)  # fmt: skip
SEED = "params.seed"
VARIANT = "params.variant"


class Verdict(NamedTuple):
    id: str  # FINDINGS.md's id, e.g. "M1"
    dataset: str
    claim: str  # what the paper found, in words
    source: str  # where (table / figure)
    rule: str  # the rule applied to our runs
    verdict: str  # REPRODUCED | NOT_REPRODUCED | NOT_COMPARABLE
    evidence: str  # the numbers behind it, or why it is not comparable


def _metric(runs: pd.DataFrame, metric: str) -> str | None:
    column = f"metrics.{metric}"
    return column if column in runs and runs[column].notna().any() else None


def groups(
    runs: pd.DataFrame, column: str, metric: str, replicate: str = SEED
) -> dict[str, pd.Series]:
    """Per value of ``params.<column>``, the metric per replicate (``stats.group_values``: the
    mean over the group's runs of a seed, e.g. over the tasks of single-task models)."""
    if f"params.{column}" not in runs or _metric(runs, metric) is None:
        return {}
    return stats.group_values(runs, [column], metric, replicate)


def variant_values(runs: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    """Per variant of the multi-task encoders, the metric per seed (single-task: over tasks)."""
    values = groups(runs, "variant", metric)
    return {
        v: values[v] for v in ("multi_head", "one_head", "single_task", "random") if v in values
    }


def _not_comparable(id_, dataset, claim, source, rule, why) -> Verdict:
    return Verdict(id_, dataset, claim, source, rule, NOT_COMPARABLE, why)


def _cells(
    runs: pd.DataFrame, a: str, b: str, metrics: tuple[str, ...], alpha: float
) -> tuple[list[ht.Comparison], list[ht.Comparison], list[str]]:
    """Per metric: a > b (one-sided) and a < b (one-sided), each Holm-corrected across metrics."""
    better, worse, used = [], [], []
    for metric in metrics:
        if _metric(runs, metric) is None:
            continue
        values = variant_values(runs, metric)
        if a not in values or b not in values:
            continue
        used.append(metric)
        better.append(ht.compare(values[a], values[b], alternative="greater", names=(a, b)))
        worse.append(ht.compare(values[a], values[b], alternative="less", names=(a, b)))
    return ht.holm_table(better), ht.holm_table(worse), used


def _majority_rule(id_, dataset, claim, source, runs, a, b, alpha) -> Verdict:
    rule = (
        f"{a} > {b} per seed, one-sided paired t (Welch where seeds differ), Holm across the "
        f"metrics at {alpha}: reproduced when most metrics are significant and none is "
        "significantly the other way"
    )
    if runs is None:
        return _not_comparable(id_, dataset, claim, source, rule, "the chain has no encoders step")
    better, worse, used = _cells(runs, a, b, TABLE5_METRICS, alpha)
    if not used:
        return _not_comparable(id_, dataset, claim, source, rule, f"no runs of both {a} and {b}")
    if all(c.test == ht.NONE for c in better):
        return _not_comparable(id_, dataset, claim, source, rule, "fewer than 2 seeds per group")
    wins = sum(c.p_holm <= alpha for c in better)
    losses = [m for m, c in zip(used, worse, strict=True) if c.p_holm <= alpha]
    ok = wins > len(used) / 2 and not losses
    lines = [f"{m}: {ht.describe(c, alpha)}" for m, c in zip(used, better, strict=True)]
    summary = f"{wins}/{len(used)} metrics significant; significantly worse on: {losses or 'none'}"
    return Verdict(
        id_, dataset, claim, source, rule, REPRODUCED if ok else NOT_REPRODUCED,
        summary + "\n" + "\n".join(lines),
    )  # fmt: skip


# -- the multi-task paper (seed 000) -------------------------------------------------------------


def m1_multi_over_single(runs, dataset, alpha=0.05) -> Verdict:
    return _majority_rule(
        "M1", dataset, "multi-head encoders are more disentangled than single-task ones "
        "(their mean over tasks) on the disentanglement metrics", "Table 5, Figure 3",
        runs, "multi_head", "single_task", alpha,
    )  # fmt: skip


def m2_multi_over_random(runs, dataset, alpha=0.05) -> Verdict:
    return _majority_rule(
        "M2", dataset, "multi-head encoders beat untrained (random) encoders on every metric",
        "Table 5", runs, "multi_head", "random", alpha,
    )  # fmt: skip


def m4_multi_over_one_head(runs, dataset, alpha=0.05) -> Verdict:
    return _majority_rule(
        "M4", dataset, "a head per task beats one head with all tasks' outputs", "Figure 4",
        runs, "multi_head", "one_head", alpha,
    )  # fmt: skip


def m5_one_head_over_single(runs, dataset, alpha=0.05) -> Verdict:
    return _majority_rule(
        "M5", dataset, "one-head multi-task encoders beat the single-task mean", "Figure 4",
        runs, "one_head", "single_task", alpha,
    )  # fmt: skip


def m3_multi_over_best_single(runs, dataset, alpha=0.05) -> Verdict:
    claim = "the multi-head mean minus one sd exceeds the best single-task model"
    rule = (
        "per metric: mean - sd of multi-head over seeds > the best task's single-task model "
        "(each task averaged over its seeds); reproduced in at least 2/3 of the metrics"
    )
    if runs is None:
        return _not_comparable("M3", dataset, claim, "Table 5", rule, "no encoders step")
    cells, lines = [], []
    for metric in TABLE5_METRICS:
        if _metric(runs, metric) is None:
            continue
        multi = variant_values(runs, metric).get("multi_head", pd.Series(dtype=float))
        single = runs[runs[VARIANT] == "single_task"]
        if len(multi) < 2 or single.empty or "params.task_index" not in single:
            continue
        best = single.groupby("params.task_index")[f"metrics.{metric}"].mean().max()
        low = multi.mean() - multi.std(ddof=1)
        cells.append(low > best)
        lines.append(f"{metric}: multi-head mean - sd {low:.3f} vs best single-task {best:.3f}")
    if not cells:
        return _not_comparable(
            "M3", dataset, claim, "Table 5", rule, "needs 2 multi-head seeds and single-task runs"
        )
    ok = sum(cells) >= 2 * len(cells) / 3
    return Verdict(
        "M3", dataset, claim, "Table 5", rule, REPRODUCED if ok else NOT_REPRODUCED,
        f"{sum(cells)}/{len(cells)} metrics\n" + "\n".join(lines),
    )  # fmt: skip


def m6_random_not_over_single(runs, dataset, alpha=0.05) -> Verdict:
    claim = "on dSprites, untrained encoders never beat the single-task mean"
    rule = f"no metric with random > single-task significant (one-sided, Holm, {alpha})"
    if dataset != "dsprites":
        return _not_comparable(
            "M6", dataset, claim, "Table 5", rule,
            "the paper's claim for Shapes3D / MPI3D is a count of cells (7 of 12), not a rule",
        )  # fmt: skip
    if runs is None:
        return _not_comparable("M6", dataset, claim, "Table 5", rule, "no encoders step")
    better, _, used = _cells(runs, "random", "single_task", TABLE5_METRICS, alpha)
    if not used or all(c.test == ht.NONE for c in better):
        return _not_comparable("M6", dataset, claim, "Table 5", rule, "too few seeds or groups")
    over = [m for m, c in zip(used, better, strict=True) if c.p_holm <= alpha]
    lines = [f"{m}: {ht.describe(c, alpha)}" for m, c in zip(used, better, strict=True)]
    return Verdict(
        "M6", dataset, claim, "Table 5", rule, NOT_REPRODUCED if over else REPRODUCED,
        f"random significantly above single-task on: {over or 'none'}\n" + "\n".join(lines),
    )  # fmt: skip


def m7_per_task_error(runs, dataset, alpha=0.05) -> Verdict:
    claim = (
        "the multi-task model's error on each task is below that task's own single-task model's "
        "(dSprites, MPI3D; reversed on Shapes3D)"
    )
    rule = (
        "sign test over (task, seed) pairs of test RMSE (same targets, same standardisation), "
        f"one-sided at {alpha}, in the paper's direction for the dataset"
    )
    if runs is None:
        return _not_comparable("M7", dataset, claim, "Tables 8-10", rule, "no encoders step")
    single = runs[runs[VARIANT] == "single_task"]
    multi = runs[runs[VARIANT] == "multi_head"]
    pairs = []
    for _, row in single.iterrows():
        task, seed = row.get("params.task_index"), row[SEED]
        column = f"metrics.rmse_task_{task}"
        partner = multi[multi[SEED] == seed]
        if column not in runs or partner.empty or pd.isna(row.get(column)):
            continue
        pairs.append((int(task), seed, float(partner[column].iloc[0]), float(row[column])))
    if len(pairs) < 2:
        return _not_comparable("M7", dataset, claim, "Tables 8-10", rule, "no (task, seed) pairs")
    multi_better = sum(m < s for _, _, m, s in pairs)
    expect_multi = dataset != "shapes3d"
    wins = multi_better if expect_multi else len(pairs) - multi_better
    p = ht.sign_test(wins, len(pairs))
    ok = p <= alpha
    by_task = pd.DataFrame(pairs, columns=["task", "seed", "multi", "single"]).groupby("task")
    lines = [
        f"task {t}: multi-head RMSE {g['multi'].mean():.3f} vs its single-task model "
        f"{g['single'].mean():.3f} (mean over {len(g)} seeds)"
        for t, g in by_task
    ]
    return Verdict(
        "M7", dataset, claim, "Tables 8-10", rule, REPRODUCED if ok else NOT_REPRODUCED,
        f"multi-head lower in {multi_better}/{len(pairs)} pairs, sign test p = {p:.2g}\n"
        + "\n".join(lines),
    )  # fmt: skip


def m11_spearman(runs, dataset, alpha=0.05) -> Verdict:
    claim = (
        "code dimensions matched to factors by Spearman correlation correlate more strongly "
        "for multi-head than single-task encoders"
    )
    rule = f"spearman_rho multi-head > single-task mean, one-sided paired t at {alpha}"
    if runs is None or _metric(runs, "spearman_rho") is None:
        return _not_comparable(
            "M11", dataset, claim, "Table 7", rule, "the encoders did not log spearman_match"
        )
    values = variant_values(runs, "spearman_rho")
    if "multi_head" not in values or "single_task" not in values:
        return _not_comparable("M11", dataset, claim, "Table 7", rule, "no multi/single runs")
    c = ht.compare(values["multi_head"], values["single_task"], alternative="greater",
                   names=("multi_head", "single_task"))  # fmt: skip
    if c.test == ht.NONE:
        return _not_comparable("M11", dataset, claim, "Table 7", rule, "fewer than 2 seeds")
    found = variant_values(runs, "spearman_factors")
    return Verdict(
        "M11", dataset, claim, "Table 7", rule, REPRODUCED if c.p <= alpha else NOT_REPRODUCED,
        f"{ht.describe(c, alpha)}; factors found (mean over seeds): multi-head "
        f"{found['multi_head'].mean():.2f}, single-task {found['single_task'].mean():.2f}",
    )  # fmt: skip


RECONSTRUCTION = ("reconstruction_sse", "reconstruction_mse")


def m9_decoders(runs, dataset, alpha=0.05) -> Verdict:
    claim = "decoders on multi-head codes reconstruct better than on single-task and random codes"
    rule = (
        "reconstruction error multi-head < single-task and multi-head < random, one-sided t "
        f"over upstream seeds (paired when they share seeds), Holm over the two, {alpha}"
    )
    column = "params.upstream.variant"
    if runs is None or column not in runs:
        return _not_comparable("M9", dataset, claim, "Table 4", rule, "no decoders step")
    metric = next((m for m in RECONSTRUCTION if _metric(runs, m)), None)
    if metric is None:
        return _not_comparable("M9", dataset, claim, "Table 4", rule, "no reconstruction error")
    # decoders train with one seed: the upstream encoders' seeds replicate them
    by_variant = groups(runs, "upstream.variant", metric, "params.upstream.seed")
    values = {
        v: by_variant.get(v, pd.Series(dtype=float))
        for v in ("multi_head", "single_task", "random")
    }
    if any(len(v) == 0 for v in values.values()):
        return _not_comparable("M9", dataset, claim, "Table 4", rule, "a variant has no decoder")
    tests = ht.holm_table([
        ht.compare(values["multi_head"], values[other], alternative="less",
                   names=("multi_head", other))
        for other in ("single_task", "random")
    ])  # fmt: skip
    if any(c.test == ht.NONE for c in tests):
        return _not_comparable("M9", dataset, claim, "Table 4", rule, "fewer than 2 seeds")
    ok = all(c.p_holm <= alpha for c in tests)
    means = ", ".join(f"{v} {s.mean():.4g}" for v, s in values.items())
    return Verdict(
        "M9", dataset, claim, "Table 4", rule, REPRODUCED if ok else NOT_REPRODUCED,
        f"{metric} means: {means}\n" + "\n".join(ht.describe(c, alpha) for c in tests),
    )  # fmt: skip


def _head_rmse(runs: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    return groups(runs, "upstream.family", metric)


def m12_ground_truth_not_best(runs, dataset, alpha=0.05) -> Verdict:
    claim = "on dSprites the true factors do not give the lowest task RMSE (the paper: the highest)"
    rule = "task heads on the true factors: mean test RMSE not the lowest of the sources"
    if dataset != "dsprites":
        claim = "on Shapes3D and MPI3D the true factors give the lowest task RMSE"
        rule = "task heads on the true factors: mean test RMSE the lowest of the sources"
    if runs is None or _metric(runs, "rmse") is None:
        return _not_comparable("M12", dataset, claim, "Table 1", rule, "no task-heads step")
    values = _head_rmse(runs, "rmse")
    if "ground_truth" not in values or len(values) < 2:
        return _not_comparable("M12", dataset, claim, "Table 1", rule, "no true-factor heads")
    order = sorted(values, key=lambda f: values[f].mean())
    lowest = order[0] == "ground_truth"
    ok = not lowest if dataset == "dsprites" else lowest
    ranking = ht.ordering(values, higher_is_better=False, alpha=alpha)
    return Verdict(
        "M12", dataset, claim, "Table 1", rule, REPRODUCED if ok else NOT_REPRODUCED,
        f"RMSE (standardised targets), best first: {ranking.text}",
    )  # fmt: skip


def m13_disentangled_not_best(heads, autoencoders, dataset, alpha=0.05) -> Verdict:
    claim = "the most disentangled auto-encoder (by MIG) does not give the lowest task RMSE"
    rule = "the family with the highest upstream MIG is not the one with the lowest heads' RMSE"
    if heads is None or autoencoders is None or _metric(autoencoders, "mig") is None:
        return _not_comparable("M13", dataset, claim, "Tables 1, 6", rule, "no AE or heads step")
    mig = autoencoders.groupby("tags.family")["metrics.mig"].mean()
    values = {f: s for f, s in _head_rmse(heads, "rmse").items() if f in mig.index}
    if len(values) < 2:
        return _not_comparable("M13", dataset, claim, "Tables 1, 6", rule, "fewer than 2 AEs")
    most = mig.loc[list(values)].idxmax()
    lowest = min(values, key=lambda f: values[f].mean())
    return Verdict(
        "M13", dataset, claim, "Tables 1, 6", rule,
        REPRODUCED if most != lowest else NOT_REPRODUCED,
        "upstream MIG: " + ", ".join(f"{f} {mig[f]:.3f}" for f in values)
        + "; heads' RMSE: " + ", ".join(f"{f} {values[f].mean():.3f}" for f in values)
        + f"; most disentangled: {most}, lowest RMSE: {lowest}",
    )  # fmt: skip


# -- which checks a paper runs -------------------------------------------------------------------

Check = Callable[..., Verdict]
ENCODER_CHECKS: tuple[Check, ...] = (
    m1_multi_over_single, m2_multi_over_random, m3_multi_over_best_single,
    m4_multi_over_one_head, m5_one_head_over_single, m6_random_not_over_single,
    m7_per_task_error, m11_spearman,
)  # fmt: skip


def multitask_verdicts(roles: dict[str, pd.DataFrame], dataset: str, alpha=0.05) -> list[Verdict]:
    """Every multi-task finding for one dataset's chain (``roles``: frames by role)."""
    encoders = roles.get("encoders")
    verdicts = [check(encoders, dataset, alpha) for check in ENCODER_CHECKS]
    verdicts.append(m9_decoders(roles.get("decoders"), dataset, alpha))
    verdicts.append(m12_ground_truth_not_best(roles.get("heads"), dataset, alpha))
    verdicts.append(
        m13_disentangled_not_best(roles.get("heads"), roles.get("autoencoder"), dataset, alpha)
    )
    return sorted(verdicts, key=lambda v: int(v.id[1:]))


def verdict_table(verdicts: list[Verdict]) -> pd.DataFrame:
    """One row per verdict: id, dataset, source, claim, verdict and the first evidence line."""
    return pd.DataFrame(
        [
            {"finding": v.id, "dataset": v.dataset, "paper": v.source, "claim": v.claim,
             "verdict": v.verdict, "numbers": v.evidence.splitlines()[0] if v.evidence else ""}
            for v in verdicts
        ]
    )  # fmt: skip


def counts(verdicts: list[Verdict]) -> dict[str, int]:
    out = {REPRODUCED: 0, NOT_REPRODUCED: 0, NOT_COMPARABLE: 0}
    for v in verdicts:
        out[v.verdict] += 1
    return out


__all__ = ["Verdict", "verdict_table", "counts", "groups", "variant_values"]
