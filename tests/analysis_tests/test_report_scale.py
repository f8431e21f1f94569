"""The report at Locatello et al.'s scale (hundreds of groups): each vectorised function gives
what its per-cell / per-pair form gave, to the bit, and each cap (figures, pictures, rankings,
heatmap numbers) bites only past its limit and says so in the report."""

from __future__ import annotations

import math
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from mlflow.entities import FileInfo
from scipy import stats as scipy_stats

from analysis import hypothesis, plots, report, tables
from analysis import report_analyses as analyses
from analysis.document import Document
from analysis.stats import (
    _column,
    best_marks,
    format_table,
    group_values,
    interval_table,
    selection_transfer,
    short_key,
    variance_explained,
)
from trainables.core.outputs import Declared, Output

DECLARED = Declared((Output("mig", True), Output("rmse", False)), pictures=("traversals.png",))
DIRECTION = DECLARED.direction


def many_groups(n_groups: int = 300, seeds: int = 2, seed: int = 0) -> pd.DataFrame:
    """``n_groups`` settings of (beta, dataset) x ``seeds``; mig rises with the group number."""
    rng = np.random.default_rng(seed)
    rows = []
    for g in range(n_groups):
        for s in range(seeds):
            rows.append({"run_id": f"run-{g}-{s}", "params.beta": str(g // 3),
                         "params.dataset.name": f"d{g % 3}", "params.seed": str(s),
                         "metrics.mig": g / n_groups + rng.normal(0, 0.01),
                         "metrics.rmse": 1 - g / n_groups + rng.normal(0, 0.01)})  # fmt: skip
    return pd.DataFrame(rows)


# -- vectorised == per cell ------------------------------------------------------------------


def _format_table_per_cell(table, marks, fmt, digits=3) -> str:
    """format_table as it was: every cell read through pandas."""
    latex = fmt == "latex"
    metrics = list(table.columns.get_level_values(0).unique())
    text = (lambda s: s) if latex else (lambda s: s.replace("|", r"\|"))
    plus_minus = r" $\pm$ " if latex else " ± "
    cells = []
    for row in range(len(table)):
        for metric in metrics:
            mean, std = table[(metric, "mean")].iloc[row], table[(metric, "std")].iloc[row]
            n = table[(metric, "n")].iloc[row]
            if pd.isna(mean):
                cells.append("-")
                continue
            value = f"{mean:.{digits}f}"
            if n > 1 and pd.notna(std):
                value += f"{plus_minus}{std:.{digits}f}"
            if marks is not None and metric in marks.columns and bool(marks[metric].iloc[row]):
                value = rf"\textbf{{{value}}}" if latex else f"**{value}**"
            cells.append(text(value))
    return cells


@pytest.mark.parametrize("fmt", ["markdown", "latex"])
def test_format_table_matches_the_per_cell_reading(fmt):
    runs = many_groups(40, seeds=3)
    runs.loc[runs.index[:3], "metrics.rmse"] = np.nan  # a group without rmse: '-'
    runs = runs.drop(index=runs.index[5:7])  # a group of one run: its mean alone
    table = interval_table(runs, ["beta", "dataset.name"], ["mig", "rmse"])
    marks = best_marks(table, ["mig", "rmse"], DIRECTION)
    written = format_table(table, marks, fmt=fmt)
    body = written.splitlines()[4:-2] if fmt == "latex" else written.splitlines()[2:]
    separator = " & " if fmt == "latex" else " | "
    cells = [c for line in body for c in line.removesuffix(r" \\").strip("| ").split(separator)[2:]]
    assert cells == _format_table_per_cell(table, marks, fmt)


def _group_values_per_group(runs, by, metric, replicate=None) -> dict[str, pd.Series]:
    """group_values as it was: one groupby per group."""
    column, group_columns = _column(metric, "metrics"), [_column(b, "params") for b in by]
    out = {}
    for key, frame in runs.dropna(subset=[column]).groupby(group_columns, dropna=False):
        parts = key if isinstance(key, tuple) else (key,)
        label = " / ".join(short_key(p) for p in parts if not pd.isna(p)) or "-"
        if replicate is not None and replicate in frame:
            out[label] = frame.groupby(replicate)[column].mean().astype(float)
        else:
            out[label] = frame[column].reset_index(drop=True).astype(float)
    return out


@pytest.mark.parametrize("replicate", [None, "params.seed"])
@pytest.mark.parametrize("by", [["a"], ["a", "b"]])
def test_group_values_matches_a_groupby_per_group(rng, by, replicate):
    n = 500
    runs = pd.DataFrame({
        "params.a": rng.choice(["x", "y", "z", None], n),  # a param some runs lack
        "params.b": rng.choice(["1", "2", "0.0022373901095679746", "0.00223739010956797"], n),
        "params.seed": rng.choice([*map(str, range(6)), None], n),  # runs without a seed
        "metrics.m": np.where(rng.random(n) < 0.1, np.nan, rng.random(n) * 1e3),
    })  # fmt: skip
    new, old = (
        group_values(runs, by, "m", replicate),
        _group_values_per_group(runs, by, "m", replicate),
    )
    assert list(new) == list(old)  # same labels (two floats that print alike: the later wins)
    for label in old:
        pd.testing.assert_series_equal(new[label], old[label], check_exact=True)


def test_the_t_distribution_without_scipys_checks_is_scipys_to_the_bit(rng):
    for diff, se, df in zip(rng.normal(0, 1, 200), rng.uniform(0.01, 2, 200),
                            rng.uniform(1, 60, 200), strict=True):  # fmt: skip
        for alternative, p in (("two-sided", 2 * scipy_stats.t.sf(abs(diff / se), df)),
                               ("greater", scipy_stats.t.sf(diff / se, df)),
                               ("less", scipy_stats.t.cdf(diff / se, df))):  # fmt: skip
            statistic, got, low, high = hypothesis._t_result(diff, se, df, alternative, 0.95)
            half = scipy_stats.t.ppf(0.975, df) * se
            assert (statistic, got, low, high) == (
                diff / se,
                float(min(p, 1.0)),
                diff - half,
                diff + half,
            )


def test_paired_matches_seeds_by_dict_as_the_index_does(rng):
    """Seeds all text: matched by a dict; one odd key (an int) makes ``paired`` take the index's
    intersection instead: the same pairs, in the same order, so the same numbers."""
    seeds = [str(s) for s in range(8)]
    a = pd.Series(rng.normal(0, 1, 8), index=seeds)
    b = pd.Series(rng.normal(0.5, 1, 8), index=list(rng.permutation(seeds)))
    b.iloc[2] = np.nan  # dropped from both
    mixed = pd.concat([a, pd.Series([np.nan], index=[99])])  # not in b: no pair
    for alternative in hypothesis.ALTERNATIVES:
        fast = hypothesis.paired(a, b.iloc[1:], alternative=alternative)
        assert fast == hypothesis.paired(mixed, b.iloc[1:], alternative=alternative)
        assert fast.n_a == 6 and fast.test == hypothesis.PAIRED


def test_transfer_matrix_is_selection_transfer_per_pair(rng):
    for trial in range(12):
        n = int(rng.integers(20, 150))
        runs = pd.DataFrame({
            "params.beta": rng.choice(["1", "2", "4", None], n),
            "params.lr": rng.choice(["0.1", "0.01"], n),
            "params.seed": rng.choice([*map(str, range(int(rng.integers(1, 5)))), None], n),
            "metrics.mig": rng.random(n).round(1),  # ties in the selection
            "metrics.rmse": rng.random(n),
            "metrics.sap": np.where(rng.random(n) < 0.3, np.nan, rng.random(n)),
        })  # fmt: skip
        metrics = ["mig", "rmse", "sap"]
        for settings in (["params.beta"], ["params.beta", "params.lr"]):
            matrix = analyses.transfer_matrix(runs, metrics, settings, "params.seed", DIRECTION)
            for select in metrics:
                for target in metrics:
                    old = selection_transfer(runs, select, target, settings, direction=DIRECTION)
                    new = matrix.loc[select, target]
                    assert old == new or (math.isnan(old) and math.isnan(new)), (trial, settings)


# -- caps ----------------------------------------------------------------------------------------


def test_best_positions_keeps_everything_up_to_the_limit_then_the_best_in_order():
    assert plots.best_positions([0.3, 0.1, 0.2], True, 3) == [0, 1, 2]
    assert plots.best_positions([0.3, 0.1, 0.2, np.nan], True, 2) == [0, 2]
    assert plots.best_positions([0.3, 0.1, 0.2, np.nan], False, 2) == [1, 2]
    assert plots.best_positions([np.nan, 0.5, 0.5, 0.1], None, 2) == [1, 2]  # ties: the first


def test_figures_of_300_groups_draw_the_best_24_and_say_so():
    runs = many_groups()
    by = ["beta", "dataset.name"]
    doc, skipped = Document("t"), []
    report._figures(doc, runs, tables.summary(runs, by), ["mig", "rmse"], by, skipped, DIRECTION)
    captions = [b.caption for kind, b in doc.blocks if kind == "figure"]
    assert captions == [
        "Scores per group, one panel per metric scale; the 24 of 300 groups best by mig "
        "(the Scores table has them all)",
        "Distribution of mig over each group's runs; the 24 of 300 groups best by mean mig",
    ]
    assert skipped == ["bars: the 24 of 300 groups best by mig",
                       "violins: the 24 of 300 groups best by mean mig (of those with two runs)"]  # fmt: skip
    few, skipped = many_groups(20), []
    report._figures(Document("t"), few, tables.summary(few, by), ["mig"], by, skipped, DIRECTION)
    assert skipped == []  # 20 groups: every one drawn, nothing said


class Artifacts:
    """A store's artifact calls: run ids whose runs logged traversals.png."""

    def __init__(self, drawn: set[str]):
        self.drawn, self.listed, self.fetched = drawn, [], []

    def list_artifacts(self, run_id, path=None):
        self.listed.append(run_id)
        names = ["traversals.png", "model"] if run_id in self.drawn else ["model"]
        return [FileInfo(n, n == "model", None if n == "model" else 100) for n in names]

    def download_artifacts(self, run_id, path, dst):
        self.fetched.append((run_id, path))
        Path(dst).mkdir(parents=True, exist_ok=True)
        plt.imsave(Path(dst) / path, np.zeros((8, 8)))
        return str(Path(dst) / path)


def test_pictures_of_300_groups_are_the_best_12_groups_best_runs(tmp_path):
    runs = many_groups()
    best = runs.loc[runs.groupby(["params.beta", "params.dataset.name"])["metrics.mig"].idxmax()]
    top = set(best.nlargest(12, "metrics.mig")["run_id"])
    client = Artifacts(drawn=set(list(top)[:5]) | {"run-0-0"})  # five of them drew, and a loser
    doc, skipped = Document("t"), []
    analyses.pictures(
        doc, client, runs, ["beta", "dataset.name"], ["mig"], tmp_path, skipped, DECLARED
    )
    assert sorted(client.listed) == sorted(top)  # each chosen run listed once, no other
    assert sorted(client.fetched) == sorted((r, "traversals.png") for r in list(top)[:5])
    [(kind, figure)] = doc.blocks
    assert figure.caption == ("traversals.png: the best runs of the 12 of 300 groups whose best "
                              "runs score best by mig")  # fmt: skip
    assert skipped == [
        "pictures: the best runs of the 12 of 300 groups whose best runs score best (by mig)"
    ]


def test_pictures_of_few_groups_are_every_groups_best_run(tmp_path):
    runs = many_groups(6)
    client, doc, skipped = Artifacts(drawn=set(runs["run_id"])), Document("t"), []
    analyses.pictures(
        doc, client, runs, ["beta", "dataset.name"], ["mig"], tmp_path, skipped, DECLARED
    )
    assert len(client.listed) == 6 and skipped == []
    assert doc.blocks[0][1].caption == "traversals.png: each group's best run by mig"


def test_rankings_of_300_groups_are_written_to_24_and_every_step_to_a_csv(tmp_path):
    runs = many_groups()
    design = report.Design("s", "", "vae", ("beta", "dataset.name", "seed"), question=("mig",))
    doc, skipped = Document("t"), []
    by = ["beta", "dataset.name"]
    written = report._answer(
        doc, runs, {"s": design}, ["mig", "rmse"], by, skipped, DIRECTION, tmp_path
    )
    lines = next(b for kind, b in doc.blocks if kind == "ul")
    assert all(line.count(" (p=") == 23 and "... (276 more groups)" in line for line in lines)
    table = next(b for kind, b in doc.blocks if kind == "table").frame
    assert len(table) == 2 * 23
    steps = pd.read_csv(written[0])
    assert written == [tmp_path / "answer_steps.csv"] and len(steps) == 2 * 299
    assert list(steps["step"][:23]) == list(table["step"][:23])  # the shown ones lead, as shown
    assert skipped[-1] == ("answer: each ranking is written out to its 24 best groups (of up to "
                           "300); all 598 steps were tested and Holm-corrected, and "
                           "answer_steps.csv lists them")  # fmt: skip


def test_heatmaps_past_20_metrics_are_colours_the_size_of_20(rng):
    def figure(k):
        names = [f"m{i}" for i in range(k)]
        return plots.plot_correlation_heatmap(
            pd.DataFrame(rng.uniform(-1, 1, (k, k)), names, names)
        )

    small, twenty, large = figure(12), figure(20), figure(50)
    assert len(small.axes[0].texts) == 144 and len(twenty.axes[0].texts) == 400
    assert len(large.axes[0].texts) == 0
    assert tuple(large.get_size_inches()) == tuple(twenty.get_size_inches())
    for fig in (small, twenty, large):
        plt.close(fig)


def _variance_per_method(runs, metric, hyperparameter, method_column) -> pd.DataFrame:
    """variance_explained as it was: a groupby per method."""
    column, setting = f"metrics.{metric}", f"params.{hyperparameter}"
    scored = runs.dropna(subset=[column])
    methods = (
        [("all", scored)]
        if method_column not in scored.columns
        else list(scored.groupby(method_column, sort=True, dropna=False))
    )
    rows = []
    for method, frame in methods:
        values = frame[column].astype(float)
        setting_means = values.groupby(frame[setting], dropna=False).transform("mean")
        total = float(((values - values.mean()) ** 2).sum())
        between = float(((setting_means - values.mean()) ** 2).sum())
        eta = between / total if total > 0 else math.nan
        rows.append([method, hyperparameter, eta, 1 - eta, len(frame),
                     frame[setting].nunique(dropna=False)])  # fmt: skip
    return pd.DataFrame(rows, columns=[
        "method", "hyperparameter", "eta_squared", "seed_share", "n_runs", "n_settings"
    ])  # fmt: skip


def test_variance_explained_matches_a_groupby_per_method(rng):
    for trial in range(30):
        n = int(rng.integers(1, 300))
        runs = pd.DataFrame({
            "tags.family": rng.choice(["vae", "factor_vae", None], n),  # NaN: a method too
            "params.beta": rng.choice(["1", "2", "4", None], n),
            "metrics.mig": np.where(rng.random(n) < 0.2, np.nan, rng.random(n) * 10.0 ** (trial % 5 - 2)),
        })  # fmt: skip
        if trial % 7 == 0:
            runs["metrics.mig"] = 0.1  # constant: eta NaN
        for method in ("tags.family", "tags.absent"):
            pd.testing.assert_frame_equal(
                variance_explained(runs, "mig", "beta", method_column=method),
                _variance_per_method(runs, "mig", "beta", method),
                check_exact=True,
            )


def test_table_cells_read_by_column_are_the_per_cell_reading(rng):
    from analysis.document import Table, _cells

    frame = pd.DataFrame(
        {
            "mean": rng.normal(size=6).round(3),
            "n": np.arange(6),
            "label": ["a", None, "c", "d", math.nan, "f"],
            "when": pd.to_datetime(np.arange(6), unit="s", utc=True),
        },
        index=pd.Index(list("uvwxyz"), name="group"),
    )
    frame.loc["w", "mean"] = math.nan
    bold = pd.DataFrame(rng.random((6, 2)) > 0.5, columns=["mean", "n"], index=frame.index)
    header, rows, keys = _cells(Table(frame, bold=bold))
    flat = frame.reset_index()
    assert header == list(flat.columns) and keys == 1
    for i in range(len(flat)):  # what the old reader did: one .iloc per cell
        expected = [
            (
                "" if pd.isna(flat.iloc[i, j]) else str(flat.iloc[i, j]),
                j >= 1 and c in bold.columns and bool(bold.iloc[i][c]),
            )
            for j, c in enumerate(flat.columns)
        ]
        assert rows[i] == expected
