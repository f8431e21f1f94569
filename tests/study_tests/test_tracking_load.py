"""benchmarks/tracking_load.py's core at a small size: writers started together through the trials'
journal and sending thread lose nothing in a real ``mlflow server`` on SQLite, and its loss count,
which reads the store, finds what is taken out of the store afterwards."""

from __future__ import annotations

import sqlite3

import pytest
import tracking_load  # benchmarks/ (conftest.py)
from local_servers import mlflow_server

from study import tracking

WRITERS, EPOCHS = 4, 5


@pytest.mark.slow
def test_writers_lose_nothing_and_a_loss_planted_in_the_store_is_counted(tmp_path):
    database = tmp_path / "mlflow.db"
    store = f"sqlite:///{database}"
    tracking.ensure_store(store)
    artifacts = tmp_path / "artifacts"
    with mlflow_server(tmp_path, store, workers=1, artifacts=artifacts) as uri:
        # cpu_groups={}: no waiting for the server to be at rest to time its CPU.
        point = tracking_load.run_point(uri, WRITERS, EPOCHS, tmp_path / "writers", cpu_groups={})
        counted = tracking_load.count_lost(uri, point["expected"])
        row = tracking_load.summarize(point, counted, (tmp_path / "server.log").read_text())
        assert (row["crashed"], row["unsent"]) == (0, 0), row["crashes"] or row["messages"]
        assert counted == {"lost": {}, "total": 0, "duplicated": {}}
        assert row["records_per_s"] > 0 and row["call_p95"] > 0
        # The server took each writer's run, 5 epochs, finals, artifacts and end: 9 records.
        assert sum(r["sent"] for r in point["results"]) == WRITERS * (EPOCHS + 4)

        # Planted: one epoch of one metric and one artifact file go missing from the store.
        with sqlite3.connect(database) as connection:
            deleted = connection.execute(
                "DELETE FROM metrics WHERE rowid = (SELECT min(rowid) FROM metrics "
                "WHERE key = 'val/loss' AND step = 3)"
            ).rowcount
        assert deleted == 1
        next(artifacts.rglob("umap.png")).unlink()
        counted = tracking_load.count_lost(uri, point["expected"])
        assert counted["lost"] == {"metric points": 1, "artifacts": 1}
        assert counted["total"] == 2
        # A replay of the journals (as `study sync`) has nothing left to send: still lost.
        trials = tmp_path / "writers" / tracking_load.TRIALS
        assert tracking_load._sync(uri, trials, point["expected"]) == (0, counted)
