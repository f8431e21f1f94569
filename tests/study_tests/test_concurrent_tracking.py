"""Several processes creating the same new SQLite store, experiment and parent runs at once."""

from __future__ import annotations

import multiprocessing
import subprocess
import sys

import pytest
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


def _first_call_of_a_launch(uri: str, study: str) -> int:
    # What `study run` does first with a store: end launches a killed driver left RUNNING.
    return tracking.close_stale_launches(uri, study, "ray_results")


def test_first_calls_of_concurrent_launches_into_a_fresh_store_all_succeed(tmp_path):
    # Without a lock around the store's creation, MLflow's schema migration races: most of these
    # failed ("Online migration expected to match one row ... in 'alembic_version'").
    for attempt in range(3):
        uri = f"sqlite:///{tmp_path / f'fresh{attempt}.db'}"
        with multiprocessing.get_context("spawn").Pool(6) as pool:
            closed = pool.starmap(_first_call_of_a_launch, [(uri, f"s{i}") for i in range(6)])
        assert closed == [0] * 6
        assert [e.name for e in MlflowClient(uri).search_experiments()] == ["Default"]


@pytest.mark.ray
@pytest.mark.slow
def test_local_launches_started_together_all_finish_and_never_oversubscribe(
    tmp_path, external_study
):
    """Into a store not yet there; each study alone could run 2 trials on this machine's 2 CPUs,
    so together they would run 4 at once without their turns on the machine's local Ray."""
    names = ["first", "second"]
    procs = []
    for name in names:
        external_study(name, seeds=(0, 1), pictures=False)
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "study.cli", "run", f"{name}.yaml", "--num-cpus", "2"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))  # fmt: skip
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, output in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, output[-3000:]
    assert sum("waiting for the local Ray of study" in out for out in outputs) == 1
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    spans = []
    for name in names:
        experiment = client.get_experiment_by_name(name)
        runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
        assert len(runs) == 2
        for run in runs:
            assert run.info.status == "FINISHED" and run.data.metrics["mig"] >= 0
            spans.append((run.info.start_time, run.info.end_time))
    # The most trials running at once, over both studies: each trial's run spans its life.
    events = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    running = most = 0
    for _, change in events:
        running += change
        most = max(most, running)
    assert most <= 2, f"{most} trials ran at once on 2 CPUs"
