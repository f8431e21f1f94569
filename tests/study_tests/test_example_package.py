"""The whole bring-your-own path, as a user outside this repository takes it.

``examples/byo_package`` is a package of its own (a family, a dataset, an encoder trained
elsewhere), put on ``PYTHONPATH`` and named by dotted paths in its study files. Its family and the
built-in ``ae`` train on its dataset through ``study run`` on a real local Ray; its encoder is
scored by ``study evaluate`` under the ``ae`` study's protocol; one ``study report`` holds all
three. The supervised encoder must out-score both auto-encoders on MIG (0.93 against about 0.1
when measured), or the external path is scoring something other than its codes.
"""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainables import load_model
from trainables.testing import check_family

PACKAGE = Path(__file__).parents[2] / "examples" / "byo_package"
STUDIES = PACKAGE / "studies"

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _study(cwd: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


@pytest.fixture(scope="module")
def studies(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("byo")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PACKAGE), *sys.path])}
    subprocess.run(
        [sys.executable, "-m", "byo.elsewhere", str(cwd / "elsewhere")],
        cwd=cwd, env=env, check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    one_seed = ["--set", "sweep={seed: [0]}", "--num-cpus", "2"]
    _study(cwd, env, "run", str(STUDIES / "mlp_ae.yaml"), *one_seed)
    _study(cwd, env, "run", str(STUDIES / "ae.yaml"), *one_seed)
    _study(cwd, env, "evaluate", "--like", str(STUDIES / "ae.yaml"),
           "--encoder", str(cwd / "elsewhere" / "encoder.pt"), "--name", "byo_elsewhere",
           "--num-cpus", "2")  # fmt: skip
    report = _study(cwd, env, "report", "--study", "byo_mlp_ae", "--study", "byo_ae",
                    "--study", "byo_elsewhere", "--out", str(cwd / "report"))  # fmt: skip
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")
    runs = {}
    for name in ("byo_mlp_ae", "byo_ae", "byo_elsewhere"):
        experiment = client.get_experiment_by_name(name)
        runs[name] = client.search_runs(
            [experiment.experiment_id], filter_string="tags.role = 'trial'"
        )
    notes = {
        name: client.get_experiment_by_name(name).tags.get("mlflow.note.content")
        for name in runs
    }
    return cwd, runs, report, notes


def test_each_study_finished_its_trials_under_its_family(studies):
    _, runs, _, _ = studies
    expected = {
        "byo_mlp_ae": ("byo.models:MLPAutoEncoder", 1),
        "byo_ae": ("ae", 1),
        "byo_elsewhere": ("external", 2),  # the ae study's two seeds: its protocol
    }
    for name, (family, count) in expected.items():
        assert len(runs[name]) == count, name
        for run in runs[name]:
            assert run.info.status == "FINISHED", (name, run.data.tags.get("end_reason"))
            assert run.data.tags["family"] == family
            assert run.data.params["dataset.name"] == "byo.data:Squares"
            # Named by what sets it apart in its study, then Tune's trial id.
            seed = run.data.params["seed"]
            assert run.info.run_name == f"seed={seed} ({run.data.tags['trial_id']})"


def test_each_experiment_carries_its_studys_description(studies):
    *_, notes = studies  # MLflow's UI shows the experiment's note as its description
    assert notes["byo_ae"] == "the built-in auto-encoder on a user's dataset"
    assert notes["byo_elsewhere"] == "an external encoder under the protocol of byo_ae"


def test_the_users_family_reloads_from_its_run_id(studies, monkeypatch):
    cwd, runs, _, _ = studies
    monkeypatch.syspath_prepend(str(PACKAGE))  # importable here as where the study ran
    run = runs["byo_mlp_ae"][0]
    model = load_model(run.info.run_id, tracking_uri=f"sqlite:///{cwd / 'mlruns.db'}")
    assert model.family == "byo.models:MLPAutoEncoder"
    assert type(model.trainer).__module__ == "byo.models"
    assert run.data.metrics["reconstruction_mse"] < 0.02  # a blank image's error is ~0.06


def test_the_users_family_keeps_the_contract_by_its_own_check(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PACKAGE))
    check_family("byo.models:MLPAutoEncoder", tmp_path)  # what the package's own test calls


def test_the_encoder_trained_elsewhere_scores_above_both_auto_encoders(studies):
    _, runs, _, _ = studies
    external = min(r.data.metrics["mig"] for r in runs["byo_elsewhere"])
    trained = max(r.data.metrics["mig"] for name in ("byo_ae", "byo_mlp_ae") for r in runs[name])
    assert external > 0.5 and external > trained, (external, trained)


def test_one_report_holds_all_three(studies):
    cwd, _, report, _ = studies
    html = (cwd / "report" / "report.html").read_text()
    for name in ("byo_mlp_ae", "byo_ae", "byo_elsewhere"):
        assert name in html, name
    with open(cwd / "report" / "summary.csv") as handle:
        rows = {row["study"]: row for row in csv.DictReader(handle)}
    assert set(rows) == {"byo_mlp_ae", "byo_ae", "byo_elsewhere"}
    assert not any(":" in p.name for p in (cwd / "report").rglob("*.png"))  # no URL-like names
    # Each study sweeps only seeds: a study is a group, not its families' differing params.
    markdown = (cwd / "report" / "report.md").read_text()
    assert "Groups: study;" in markdown
    # The user's family declared its output's direction; the report ranks by it.
    assert "reconstruction_mse (lower is better)" in markdown
