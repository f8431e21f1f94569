"""A shrunk smoke study of an auto-encoder family through `study run` on a real local Ray and MLflow:
every finished run carries its scores, model, matrices and pictures; a diverging trial ends FAILED
with its reason while the other finishes; the saved model reloads from the run id alone."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from study.params import unflatten
from trainables import get_family

SMOKE = Path(__file__).parents[2] / "configs" / "smoke" / "factor_vae.yaml"
SHRINK = [
    "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:8', posY: '0:32:8'}",
    "fixed.steps=20",
    "fixed.report_every=10",
    "fixed.batch_size=16",
    "fixed.discriminator_hidden=[16, 16]",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "fixed.umap_points=60",
    "sweep={lr: [1.0e-3, 1.0e+30], seed: [0]}",  # the second trial's loss becomes non-finite
    "max_failures=0",
    "name=ae_e2e",
]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("study")
    args = [sys.executable, "-m", "study.cli", "run", str(SMOKE), "--num-cpus", "2"]
    for item in SHRINK:
        args += ["--set", item]
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("ae_e2e")
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.role = 'trial'")
    by_lr = {json.loads(r.data.params["lr"]): r for r in runs}
    return result, client, by_lr, cwd


def test_diverged_trial_fails_with_its_reason_and_the_study_says_so(study):
    result, client, by_lr, _ = study
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    assert "1 diverged" in result.stdout.replace("\n", " ")
    diverged = by_lr[1e30]
    assert diverged.info.status == "FAILED"
    assert "non-finite loss term" in diverged.data.tags["end_reason"]
    assert diverged.data.tags["end_cause"] == "diverged"
    assert "model" not in {a.path for a in client.list_artifacts(diverged.info.run_id)}


def test_finished_run_has_scores_model_matrices_and_pictures(study):
    _, client, by_lr, _ = study
    run = by_lr[1e-3]
    assert run.info.status == "FINISHED" and len(by_lr) == 2
    for key in ("mig", "dci_disentanglement", "mig_sampled", "reconstruction_mse"):
        assert math.isfinite(run.data.metrics[key]), key
    history = client.get_metric_history(run.info.run_id, "train/loss")
    assert [m.step for m in history] == [10, 20]  # explicit optimiser steps, each once
    names = {a.path for a in client.list_artifacts(run.info.run_id)}
    for name in ("model", "codes.npz", "dci_importance.npy", "dci_importance.png",
                 "mig_mutual_information.png", "umap.png", "traversals.png",
                 "reconstructions.png"):  # fmt: skip
        assert name in names, name


def test_params_round_trip_and_model_reloads_from_the_run_id(study, tmp_path):
    _, client, by_lr, cwd = study
    run = by_lr[1e-3]
    family = get_family("factor_vae")
    params = unflatten(run.data.params)
    params.pop("dataset")
    cfg = family.Config(**params)  # lists stay lists, numbers stay numbers
    assert cfg.discriminator_hidden == (16, 16) and cfg.lr == 1e-3
    uri = f"sqlite:///{cwd / 'mlruns.db'}"
    model = family.load_encoder(run.info.run_id, tracking_uri=uri)
    assert model.trainer.cfg == cfg
    codes_file = client.download_artifacts(run.info.run_id, "codes.npz", str(tmp_path))
    saved = np.load(codes_file)
    data = family.prepare_data(_view(run), [cfg])
    sample = np.random.default_rng(cfg.seed).integers(0, len(data["factors"]), 300)
    codes = model.encode(data["images"][sample])
    assert np.array_equal(codes, np.concatenate([saved["codes"], saved["codes_test"]]))


def _view(run):
    from trainables import DatasetConfig

    dataset = unflatten(run.data.params)["dataset"]
    return DatasetConfig(**dataset)


def test_an_erroring_trial_ends_failed_in_mlflow_and_in_status(tmp_path):
    # 96 images, 72 train rows: a step of two 64-row batches cannot be formed, the trial raises.
    args = [sys.executable, "-m", "study.cli", "run", str(SMOKE), "--num-cpus", "2"]
    for item in [*SHRINK[:-3], "fixed.batch_size=64", "sweep={seed: [0]}", "max_failures=0",
                 "name=ae_error"]:  # fmt: skip
        args += ["--set", item]
    result = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 1 and "1 errors" in result.stdout.replace("\n", " ")
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    experiment = client.get_experiment_by_name("ae_error")
    (run,) = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    assert run.info.status == "FAILED"
    status = subprocess.run(
        [sys.executable, "-m", "study.cli", "status", "ae_error", "--json"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    state = json.loads(status.stdout)
    assert state["counts"]["FAILED"] == 1 and state["launch_status"] == "FAILED"
