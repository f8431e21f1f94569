"""A real two-trial study: `study run` on a local Ray into the default MLflow SQLite store, then
`study best`, `study report`, and a `--resume` that must not duplicate any run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
SHRINK = [
    "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:8', posY: '0:32:8'}",
    "fixed.epochs=2",
    "fixed.n_tasks=2",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "sweep={variant: [multi_head, random], seed: [0]}",
    "name=e2e",
]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _study(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("study")
    args = ["run", str(QUICKSTART), "--num-cpus", "2"]
    for item in SHRINK:
        args += ["--set", item]
    result = _study(cwd, *args)
    (cwd / "run_stdout.txt").write_text(result.stdout)
    (cwd / "run_stderr.txt").write_text(result.stderr)
    return cwd


@pytest.fixture(scope="module")
def client(study_dir) -> MlflowClient:
    return MlflowClient(f"sqlite:///{study_dir / 'mlruns.db'}")


def _runs(client, role):
    experiment = client.get_experiment_by_name("e2e")
    return client.search_runs([experiment.experiment_id], filter_string=f"tags.role = '{role}'")


def test_one_parent_and_one_finished_child_per_trial(client):
    parents = _runs(client, "launch")
    children = _runs(client, "trial")
    assert len(parents) == 1 and parents[0].info.status == "FINISHED"
    assert len(children) == 2
    assert {c.data.tags["variant"] for c in children} == {"multi_head", "random"}
    for child in children:
        assert child.info.status == "FINISHED"
        assert child.data.tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert child.data.tags["study"] == "e2e" and child.data.tags["family"] == "multitask"
        assert (
            child.data.params["epochs"] == "2" and child.data.params["dataset.name"] == "dsprites"
        )
        for key in ("mig", "dci_disentanglement", "dci_completeness", "rmse", "rmse_task_1"):
            assert math.isfinite(child.data.metrics[key]), key
        history = client.get_metric_history(child.info.run_id, "train/loss")
        assert sorted(m.step for m in history) == [1, 2]
        artifacts = {a.path for a in client.list_artifacts(child.info.run_id)}
        assert "codes.npz" in artifacts


def test_a_launch_prints_a_line_per_change_and_no_warnings_to_ignore(study_dir, client):
    """Not Tune's tables every 30 s, its config box and TensorBoard hint, Ray's token notice or
    MLflow's table creation: a header, one line each time the trials' state changes, the end."""
    output = (study_dir / "run_stdout.txt").read_text()
    errors = (study_dir / "run_stderr.txt").read_text()
    for noise in ("Token authentication", "TensorBoard", "Configuration for experiment",
                  "Trial status", "Creating initial MLflow database tables", "Warning",
                  "Downloading artifacts"):  # fmt: skip
        assert noise not in output + errors, noise
    # stderr: nothing, or that it waited for another local study to end (another test's).
    assert all(line.startswith("waiting for the local Ray") for line in errors.splitlines())
    lines = output.splitlines()
    progress = [line for line in lines if line.startswith("[")]
    # 2 trials: each starts and ends once, so at most a header, ~5 changes and the last 2 lines.
    assert len(lines) <= 10 and len(progress) >= 2, output
    best = max(c.data.metrics["mig"] for c in _runs(client, "trial"))
    assert progress[-1].startswith("[2/2] 2 finished · best mig " + f"{best:.4f}"), progress
    assert lines[-2].startswith("done: 2 trials, 0 errors") and lines[-1].startswith("MLflow: ")


def test_best_json_ranks_by_metric(study_dir, client):
    out = _study(study_dir, "best", "--study", "e2e", "--metric", "mig", "--json").stdout
    rows = json.loads(out)
    assert len(rows) == 2 and rows[0]["mig"] >= rows[1]["mig"]
    assert set(rows[0]["params"]) == {"variant"}
    values = {c.info.run_id: c.data.metrics["mig"] for c in _runs(client, "trial")}
    assert rows[0]["mig"] == pytest.approx(max(values.values()))


def test_report_writes_tables_and_figure(study_dir):
    _study(study_dir, "report", "--study", "e2e", "--out", "report")
    report = study_dir / "report"
    markdown = (report / "summary.md").read_text()
    assert "| multi_head |" in markdown and "| random |" in markdown and "mig" in markdown
    assert "Launches pooled: 1 (" in markdown
    assert (report / "scores.png").stat().st_size > 1000
    header = (report / "summary.csv").read_text().splitlines()[0]
    assert "mig_mean" in header and "mig_std" in header


def test_each_trained_model_is_an_mlflow_logged_model_that_gives_the_scored_codes(
    study_dir, client, monkeypatch
):
    """MLflow lists one READY model per trial run (its "Logged models"), and
    ``mlflow.pyfunc.load_model`` of it encodes as the project's own loader does."""
    import mlflow
    import numpy as np

    from trainables import load_model

    uri = f"sqlite:///{study_dir / 'mlruns.db'}"
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: uri)  # the store the study used
    mlflow.set_tracking_uri(uri)
    trials = _runs(client, "trial")
    experiment_id = trials[0].info.experiment_id
    models = client.search_logged_models([experiment_id])
    assert sorted(m.source_run_id for m in models) == sorted(r.info.run_id for r in trials)
    images = (np.random.default_rng(0).random((5, 1, 64, 64)) * 255).astype(np.uint8)
    for model in models:
        assert str(model.status) == "READY" and model.name == "encoder"
        assert model.tags["study"] == "e2e" and model.tags["variant"] in ("multi_head", "random")
        served = mlflow.pyfunc.load_model(f"models:/{model.model_id}").predict(images)
        ours = load_model(model.source_run_id, tracking_uri=uri).encode(images)
        assert np.array_equal(served, ours)
    # Sent again (a retry, `study sync`): the same model, not a second one.
    from study import mlflow_model

    run = trials[0]
    folder = Path(client.download_artifacts(run.info.run_id, "model", str(study_dir / "again")))
    again = mlflow_model.log_model(client, run.info.run_id, experiment_id, folder, {})
    assert again == next(m.model_id for m in models if m.source_run_id == run.info.run_id)
    assert len(client.search_logged_models([experiment_id])) == len(models)


def test_resume_reuses_runs(study_dir, client):
    before = {c.data.tags["trial_id"]: c.info.run_id for c in _runs(client, "trial")}
    args = ["run", str(QUICKSTART), "--num-cpus", "2", "--resume"]
    for item in SHRINK:
        args += ["--set", item]
    _study(study_dir, *args)
    after = {c.data.tags["trial_id"]: c.info.run_id for c in _runs(client, "trial")}
    assert after == before  # no second run for any trial
    launches = _runs(client, "launch")
    assert len(launches) == 1 and launches[0].info.status == "FINISHED"  # the same parent run


def test_status_reads_the_finished_launch(study_dir):
    state = json.loads(_study(study_dir, "status", "e2e", "--json").stdout)
    assert state["launch_status"] == "FINISHED" and state["n_trials"] == 2
    assert state["counts"]["FINISHED"] == 2 and state["counts"]["PENDING"] == 0
    assert state["best"]["metric"] == max(t["metric"] for t in state["trials"])
    assert state["remaining_s"] is None and state["elapsed_s"] > 0


def test_best_config_reruns_the_best_trial_with_the_same_numbers(study_dir, client):
    import yaml

    printed = _study(study_dir, "best", "--study", "e2e", "--metric", "mig", "--config").stdout
    spec = yaml.safe_load(printed)
    (study_dir / "rerun.yaml").write_text(printed)
    _study(study_dir, "run", "rerun.yaml", "--num-cpus", "2")
    best = max(_runs(client, "trial"), key=lambda r: r.data.metrics["mig"])
    experiment = client.get_experiment_by_name(spec["name"])
    (rerun,) = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    for key in ("mig", "rmse", "dci_disentanglement"):
        assert rerun.data.metrics[key] == best.data.metrics[key], key
