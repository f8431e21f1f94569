"""A trial process killed mid-training is retried by Tune from its last checkpoint, into the same
MLflow run, without starting its epochs again and logging every epoch once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"
EPOCHS = 8
SETTINGS = [
    "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:4', posY: '0:32:4'}",
    f"fixed.epochs={EPOCHS}",
    "fixed.n_tasks=2",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "sweep={variant: [multi_head], seed: [0]}",
    "max_failures=2",
    "name=killed",
]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _trial_pids() -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().decode(errors="ignore")
            except OSError:
                continue
            if "ray::ImplicitFunc" in cmdline:
                pids.append(int(entry.name))
    return pids


def _epochs_logged(client: MlflowClient) -> list[int]:
    experiment = client.get_experiment_by_name("killed")
    if experiment is None:
        return []
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    if not runs:
        return []
    return [m.step for m in client.get_metric_history(runs[0].info.run_id, "train/loss")]


def test_killed_trial_resumes_from_checkpoint(tmp_path):
    args = [sys.executable, "-m", "study.cli", "run", str(QUICKSTART), "--num-cpus", "2"]
    for item in SETTINGS:
        args += ["--set", item]
    process = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlruns.db'}")
    killed = False
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        if len(_epochs_logged(client)) >= 2 and _trial_pids():
            for pid in _trial_pids():
                os.kill(pid, signal.SIGKILL)
            killed = True
            break
        time.sleep(0.2)
    output, _ = process.communicate(timeout=600)
    assert killed, output.decode()[-3000:]
    assert process.returncode == 0, output.decode()[-3000:]

    runs = client.search_runs(
        [client.get_experiment_by_name("killed").experiment_id], "tags.role = 'trial'"
    )
    assert len(runs) == 1 and runs[0].info.status == "FINISHED"  # the retry reused the run
    steps = _epochs_logged(client)
    # Resumed from a checkpoint: the epochs after it are trained again but logged once.
    assert sorted(steps) == list(range(1, EPOCHS + 1))
    assert "mig" in runs[0].data.metrics
