"""Each way a trial can end without finishing carries its own cause, in MLflow (``end_cause``
beside ``end_reason``), in ``study status`` and in the launch's last line.

The memory kill is Ray's own: its memory monitor, told that 1% of the machine's memory is the
limit, kills the trial's worker as it would a real runaway trial.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from study import causes

pytestmark = [pytest.mark.ray, pytest.mark.slow]

def _run(cwd: Path, name: str, env: dict[str, str] | None = None):
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", f"{name}.yaml", "--num-cpus", "1"],
        cwd=cwd, env={**os.environ, **(env or {})}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    status = subprocess.run(
        [sys.executable, "-m", "study.cli", "status", name, "--json"],
        cwd=cwd, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    return result, json.loads(status.stdout), runs


def test_a_memory_kill_is_named_as_one(tmp_path, external_study):
    external_study("oom", extra={"max_failures": 0})
    oom = {"RAY_memory_usage_threshold": "0.01", "RAY_memory_monitor_refresh_ms": "50"}
    result, status, runs = _run(tmp_path, "oom", oom)
    assert result.returncode == 1, result.stdout[-2000:] + result.stderr[-2000:]
    last = " ".join(result.stdout.split())
    assert "1 killed by Ray's memory monitor (out of memory)" in last
    assert "SIGINT" not in result.stdout + result.stderr  # no signal was sent
    assert status["causes"] == {causes.OUT_OF_MEMORY: 1} and status["counts"]["FAILED"] == 1
    assert len(runs) == 1 and runs[0].info.status == "FAILED"
    assert runs[0].data.tags["end_cause"] == causes.OUT_OF_MEMORY
    assert "memory monitor" in runs[0].data.tags["end_reason"]


def test_an_exception_in_the_trial_is_named_by_its_own_line(tmp_path, external_study):
    np.savez(tmp_path / "short.npz", codes=np.zeros((5, 2)))  # fewer rows than the dataset
    external_study("raises", extra={"max_failures": 0}, encoder=None,
                   codes=str(tmp_path / "short.npz"))  # fmt: skip
    result, status, runs = _run(tmp_path, "raises")
    assert result.returncode == 1
    assert status["causes"] == {causes.ERROR: 1}
    (run,) = runs
    assert run.info.status == "FAILED" and run.data.tags["end_cause"] == causes.ERROR
    reason = run.data.tags["end_reason"]
    assert reason.startswith("trial error: ") and "has 5 rows" in reason, reason


@pytest.mark.parametrize(
    ("text", "cause"),
    [  # the phrases Ray 2.60 writes into a trial's error.txt for each cause
        ("1 worker(s) were killed due to the node running low on memory.", causes.OUT_OF_MEMORY),
        ("ray.exceptions.NodeDiedError: the node has died", causes.NODE_LOST),
        ("ActorDiedError: The actor died unexpectedly before finishing this task.\n"
         "The actor died because its node has died.", causes.NODE_LOST),
        ("ActorDiedError: The actor died unexpectedly ... worker exited unexpectedly",
         causes.WORKER_DIED),
        ("Traceback (most recent call last):\n  File 'x'\nKeyError: 'lr'", causes.ERROR),
    ],
)  # fmt: skip
def test_ray_error_texts_map_to_causes(text, cause):
    assert causes.classify(text)[0] == cause


def test_a_launch_cut_without_a_signal_does_not_claim_one():
    assert causes.interruption(None)[0] == causes.LAUNCH_ENDED
    assert "SIGINT" not in causes.interruption(None)[1]
    assert causes.interruption("SIGTERM") == (causes.SIGNAL, "SIGTERM: study interrupted")
