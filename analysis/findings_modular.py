"""The modular weak-disentanglement paper's findings (seed 001; FINDINGS.md, W*) as checks with
written verdict rules, on the ``modular`` role of its reproduction chain."""

from __future__ import annotations

import math

import pandas as pd

from . import hypothesis as ht
from .findings import (
    NOT_REPRODUCED,
    REPRODUCED,
    Check,
    Verdict,
    _not_comparable,
    groups,
)

SUBSET = "params.dataset.subset"


def _by_version(runs: pd.DataFrame, metric: str) -> dict[str, pd.Series]:
    return groups(runs, "dataset.subset", metric)


def w1_relation_accuracy(runs, dataset, alpha=0.05) -> Verdict:
    claim = "with 1,000 labels the relational learner is right on most relations (0.65-0.75)"
    rule = (
        "per version v2, v3: mean relation_accuracy >= 0.6, relation_accepted >= 0.9, and "
        f"accuracy > 10x chance (one-sided one-sample t over seeds at {alpha})"
    )
    if runs is None:
        return _not_comparable("W1", dataset, claim, "Table 1", rule, "no modular step")
    accuracy = _by_version(runs, "relation_accuracy")
    accepted = _by_version(runs, "relation_accepted")
    chance = _by_version(runs, "relation_chance")
    versions = [v for v in ("v2", "v3") if v in accuracy]
    if not versions:
        return _not_comparable("W1", dataset, claim, "Table 1", rule, "no v2 or v3 runs")
    ok, lines = True, []
    for v in versions:
        acc, acc_ok = accuracy[v], accuracy[v].mean() >= 0.6
        taken = accepted.get(v, pd.Series(dtype=float))
        floor = 10 * float(chance[v].mean()) if v in chance else math.nan
        test = ht.compare(
            acc, pd.Series([floor] * len(acc), index=acc.index), alternative="greater"
        )
        above = not math.isnan(floor) and test.p <= alpha
        accepted_ok = len(taken) > 0 and taken.mean() >= 0.9
        ok &= acc_ok and above and accepted_ok
        lines.append(
            f"{v}: accuracy {acc.mean():.3f} ± {acc.std(ddof=1):.3f} (n={len(acc)}), accepted "
            f"{taken.mean():.3f}, 10x chance {floor:.3f} (p = {test.p:.2g})"
        )
    return Verdict(
        "W1", dataset, claim, "Table 1", rule, REPRODUCED if ok else NOT_REPRODUCED,
        "\n".join(lines),
    )  # fmt: skip


def w2_constant_accuracy(runs, dataset, alpha=0.05) -> Verdict:
    claim = "relation accuracy stays roughly constant as factor combinations grow (27 -> 135)"
    rule = "|mean accuracy v3 - v2| <= 0.10"
    accuracy = _by_version(runs, "relation_accuracy") if runs is not None else {}
    if "v2" not in accuracy or "v3" not in accuracy:
        return _not_comparable("W2", dataset, claim, "Table 1", rule, "needs v2 and v3 runs")
    c = ht.compare(accuracy["v3"], accuracy["v2"], names=("v3", "v2"))
    ok = abs(c.diff) <= 0.10
    return Verdict(
        "W2",
        dataset,
        claim,
        "Table 1",
        rule,
        REPRODUCED if ok else NOT_REPRODUCED,
        ht.describe(c, alpha),
    )


def w4_converted_scores(runs, dataset, alpha=0.05) -> Verdict:
    claim = "codes converted to factor values score near the paper's DCI 0.97 / MIG 0.97 (dSprites)"
    rule = "mean converted DCI disentanglement and MIG >= 0.9 on v2"
    if dataset != "dsprites":
        rule = "mean converted DCI and MIG within 0.1 of the paper's (version not stated)"
    dci = _by_version(runs, "converted_dci_disentanglement") if runs is not None else {}
    mig = _by_version(runs, "converted_mig") if runs is not None else {}
    if "v2" not in dci or "v2" not in mig:
        return _not_comparable("W4", dataset, claim, "Table 2", rule, "needs converted v2 scores")
    if dataset == "dsprites":
        ok = dci["v2"].mean() >= 0.9 and mig["v2"].mean() >= 0.9
    else:
        from . import paper_values

        paper = paper_values.table("modular", "table2")
        paper = paper[(paper["dataset"] == dataset) & (paper["group"] == "modular")]
        target = paper.set_index("metric")["value"]
        ok = bool(
            abs(dci["v2"].mean() - target["dci_disentanglement"]) <= 0.1
            and abs(mig["v2"].mean() - target["mig"]) <= 0.1
        )
    lines = [f"{v}: DCI {dci[v].mean():.3f}, MIG {mig[v].mean():.3f}" for v in dci if v in mig]
    return Verdict(
        "W4",
        dataset,
        claim,
        "Table 2",
        rule,
        REPRODUCED if ok else NOT_REPRODUCED,
        "\n".join(lines),
    )



MODULAR_CHECKS: tuple[Check, ...] = (
    w1_relation_accuracy,
    w2_constant_accuracy,
    w4_converted_scores,
)


def modular_verdicts(roles: dict[str, pd.DataFrame], dataset: str, alpha=0.05) -> list[Verdict]:
    return [check(roles.get("modular"), dataset, alpha) for check in MODULAR_CHECKS]
