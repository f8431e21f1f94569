"""Several processes creating the same new SQLite store, experiment and parent runs at once."""

from __future__ import annotations

import multiprocessing

from mlflow.tracking import MlflowClient

from study import tracking


def _launch(uri: str) -> str:
    return tracking.start_parent_run(uri, "race", "vae", "name: race\n", {})[1]


def test_concurrent_launches_create_one_store_one_experiment_and_a_parent_each(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        run_ids = pool.map(_launch, [uri] * 4)
    client = MlflowClient(uri)
    experiments = [e for e in client.search_experiments() if e.name == "race"]
    assert len(experiments) == 1
    runs = client.search_runs([experiments[0].experiment_id], "tags.role = 'launch'")
    assert sorted(r.info.run_id for r in runs) == sorted(run_ids) and len(set(run_ids)) == 4
