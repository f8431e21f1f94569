"""Tables and figure info from a runs frame shaped like MLflow's search_runs output."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from analysis.figures import bar_info, factor_traversals
from analysis.results import ResultsError, final_metric_columns, varying_params
from analysis.tables import best_runs, mean_pm_std, summary, to_markdown
from trainables.core.outputs import Declared, Output
from trainables.data import load


@pytest.fixture
def runs() -> pd.DataFrame:
    rows = []
    for variant, base in (("multi_head", 0.6), ("single_task", 0.2)):
        for seed in range(3):
            rows.append({
                "run_id": f"{variant}-{seed}", "params.variant": variant, "params.seed": str(seed),
                "params.epochs": "5", "metrics.mig": base + 0.1 * seed, "metrics.rmse": 1 - base,
                "metrics.dci_informativeness": 0.5, "metrics.dci_informativeness_test": 0.5,
                "metrics.train/loss": 3.0, "metrics.metric_seconds_dci": 1.0,
                "tags.outputs": Declared((Output("rmse", False),)).to_tag(),  # as a run carries it
            })  # fmt: skip
    return pd.DataFrame(rows)


def test_final_metrics_skip_progress_timings_and_aliases(runs):
    assert final_metric_columns(runs) == ["dci_informativeness", "mig", "rmse"]
    assert varying_params(runs) == ["variant"]


def test_summary_mean_std_over_seeds(runs):
    table = summary(runs)
    assert table.loc["multi_head", ("mig", "mean")] == pytest.approx(0.7)
    assert table.loc["multi_head", ("mig", "std")] == pytest.approx(0.1)
    assert table.loc["single_task", ("mig", "count")] == 3
    pretty = mean_pm_std(table)
    assert pretty.loc["multi_head", "mig"] == "0.700 ± 0.100"
    assert "| multi_head |" in to_markdown(pretty)


def test_best_runs_direction_follows_the_metric(runs):
    assert best_runs(runs, "mig", top=1)["run_id"].tolist() == ["multi_head-2"]
    assert best_runs(runs, "rmse", top=1)["params.variant"].tolist() == ["multi_head"]
    assert best_runs(runs, "mig", mode="min", top=1)["run_id"].tolist() == ["single_task-0"]
    with pytest.raises(ResultsError, match="not logged"):  # the user's --metric: one line, exit 2
        best_runs(runs, "sap")


def test_bar_info_draws_scores_only(runs):
    info = bar_info(summary(runs))
    assert info.groups == ["multi_head", "single_task"]
    assert info.metrics == ["dci_informativeness", "mig"]  # rmse: lower is better, other scale
    assert np.allclose(info.means[:, 1], [0.7, 0.3]) and np.allclose(info.stds[:, 1], [0.1, 0.1])


def test_factor_traversals_vary_one_factor_per_row():
    labels, images = factor_traversals(load("dsprites"), columns=4, seed=3)
    assert labels == ["shape", "scale", "orientation", "posX", "posY"]
    assert images.shape == (5, 4, 1, 64, 64)
    for row in images:
        assert len({r.tobytes() for r in row}) > 1
