"""The SQL reader gives MLflow's own answer: the frame of ``runs_frame`` (MLflow's search_runs),
row for row and column for column, on a real store written through MLflow's client."""

from __future__ import annotations

import math
import sys

import pandas as pd
import pytest
from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from analysis import runs_sql
from analysis.results import runs_frame


def _store(tmp_path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment("study", artifact_location=(tmp_path / "a").as_uri())
    other = client.create_experiment("other", artifact_location=(tmp_path / "b").as_uri())

    def run(exp, role, status, metrics, params, start, tags=()):
        r = client.create_run(exp, start_time=start, tags={"role": role, **dict(tags)})
        client.log_batch(
            r.info.run_id,
            metrics=[Metric(k, v, 1000 + i, step) for i, (k, v, step) in enumerate(metrics)],
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("family", "vae")],
        )
        if status != "RUNNING":
            client.set_terminated(r.info.run_id, status, end_time=start + 500)
        return r.info.run_id

    upstream = run(other, "trial", "FINISHED", [("mig", 0.3, 0)], {"beta": "4"}, 10)
    for seed in range(3):  # a tie on start time: the run id decides the order, as in MLflow
        run(
            experiment, "trial", "FINISHED",
            [("mig", 0.1 * seed, 0), ("mig", 0.2 + seed, 5), ("loss/epoch", math.nan, 2),
             ("dci", float("inf"), 0)],
            {"seed": str(seed), "beta": "1" if seed else "2"}, 100 if seed < 2 else 50,
            tags={"upstream_run_id": upstream},
        )  # fmt: skip
    run(experiment, "trial", "FAILED", [("mig", 0.9, 0)], {"seed": "9"}, 200)
    run(experiment, "trial", "RUNNING", [], {"seed": "8"}, 300)
    run(experiment, "launch", "FINISHED", [("mig", 0.5, 0)], {}, 400)  # a parent, not a trial
    deleted = run(experiment, "trial", "FINISHED", [("mig", 0.7, 0)], {"seed": "7"}, 500)
    client.delete_run(deleted)
    return uri, experiment


def _same(ours: pd.DataFrame, mlflows: pd.DataFrame) -> None:
    assert list(ours["run_id"]) == list(mlflows["run_id"])  # same rows, same order
    assert sorted(ours.columns) == sorted(mlflows.columns)
    pd.testing.assert_frame_equal(
        ours[sorted(ours.columns)], mlflows[sorted(ours.columns)], check_dtype=False
    )


@pytest.mark.parametrize("finished_only", [True, False])
def test_trial_runs_are_mlflows_search_row_for_row(tmp_path, finished_only):
    uri, experiment = _store(tmp_path)
    db = runs_sql.engine(uri)
    assert runs_sql.experiment_id(db, "study") == experiment
    status = " and attributes.status = 'FINISHED'" if finished_only else ""
    expected = runs_frame(MlflowClient(uri), experiment, f"tags.role = 'trial'{status}")
    ours = runs_sql.trial_runs(db, experiment, finished_only=finished_only)
    _same(ours, expected)
    assert len(ours) == (3 if finished_only else 5)  # no parent, no deleted run
    mig = dict(zip(ours["params.seed"], ours["metrics.mig"].round(6), strict=True))
    assert [mig[s] for s in "012"] == [0.2, 1.2, 2.2]  # the value at the last step
    trials = ours[ours["params.seed"].isin(list("012"))]
    assert trials["metrics.loss/epoch"].isna().all()
    assert (trials["metrics.dci"] == sys.float_info.max).all()  # how MLflow stores infinity
    assert list(ours["params.seed"].iloc[-3:]) in (["0", "1", "2"], ["1", "0", "2"])  # newest first


def test_since_filters_on_end_time_and_runs_by_id_name_their_experiment(tmp_path):
    uri, experiment = _store(tmp_path)
    db = runs_sql.engine(uri)
    client = MlflowClient(uri)
    late = runs_sql.trial_runs(db, experiment, since_ms=600)
    _same(
        late, runs_frame(client, experiment, "tags.role = 'trial' and "
                         "attributes.status = 'FINISHED' and attributes.end_time >= 600")
    )  # fmt: skip
    assert len(late) == 2
    upstream = late["tags.upstream_run_id"].iloc[0]
    found = runs_sql.runs_by_id(db, [upstream, "no-such-run"])
    assert found["run_id"].tolist() == [upstream]
    assert found["experiment_name"].tolist() == ["other"]
    assert found["params.beta"].tolist() == ["4"]
    assert runs_sql.runs_by_id(db, []).empty


def test_a_store_of_another_shape_is_named_as_such(tmp_path):
    import sqlite3

    path = tmp_path / "foreign.db"
    sqlite3.connect(path).execute("CREATE TABLE other (x INTEGER)").connection.commit()
    with pytest.raises(runs_sql.SchemaMismatch):
        runs_sql.experiment_id(runs_sql.engine(f"sqlite:///{path}"), "study")
    assert runs_sql.is_sql_store("postgresql+psycopg2://u@h/db")
    assert not runs_sql.is_sql_store("http://127.0.0.1:5000")
