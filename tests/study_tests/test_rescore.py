"""``study rescore``: metrics from each finished trial's saved codes, written into the same runs.

On one tiny study (``family: external``, two seeds, scored with MIG only) through the command on a
real local Ray: the rescored values equal the metric functions on the downloaded codes, the runs
keep their status and end time, a second rescore writes nothing (one value per run), a value the
trial logged is recognised as unchanged; refusals are one line and exit 2 before Ray starts. In
process, without Ray: the idempotence rule on a store of our own (a changed value is appended at the
run's step and becomes its value), the plan's skips, and a sampling metric from saved grid codes.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study import rescore
from trainables import get_family
from trainables.errors import UserError
from trainables.metrics import modularity, sap
from trainables.metrics.scoring import load_arrays, score_arrays

TINY_SUBSET = {"orientation": 0, "posX": "0:32:8", "posY": "0:32:8", "scale": [0, 5]}  # 96 images


def _study(cwd: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args], cwd=cwd, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


def _runs(client: MlflowClient, name: str) -> dict[str, object]:
    experiment = client.get_experiment_by_name(name)
    runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    return {r.info.run_id: r for r in runs}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A finished two-trial study, then ``study rescore tiny --metrics sap,modularity`` twice."""
    cwd = tmp_path_factory.mktemp("rescore")
    encoder = get_family("external").trainer.tiny_inputs(cwd / "inputs")["encoder"]
    spec = {
        "name": "tiny",
        "family": "external",
        "dataset": {"name": "dsprites", "subset": TINY_SUBSET},
        "fixed": {"encoder": encoder, "metric_train_points": 200, "metric_test_points": 100,
                  "pictures": False},
        "metrics": ["mig"],
        "sweep": {"seed": [0, 1]},
        "resources": {"cpu": 1, "gpu": 0},
    }  # fmt: skip
    (cwd / "tiny.yaml").write_text(yaml.safe_dump(spec, sort_keys=False))
    launch = _study(cwd, "run", "tiny.yaml", "--num-cpus", "2", timeout=600)
    assert launch.returncode == 0, launch.stdout[-2000:] + launch.stderr[-2000:]
    client = MlflowClient(f"sqlite:///{cwd / 'mlruns.db'}")
    before = _runs(client, "tiny")
    first = _study(cwd, "rescore", "tiny", "--metrics", "sap,modularity", "--num-cpus", "2")
    after_first = _runs(client, "tiny")
    second = _study(cwd, "rescore", "tiny", "--metrics", "sap,modularity,mig", "--num-cpus", "2")
    return cwd, client, before, after_first, first, second


@pytest.mark.ray
@pytest.mark.slow
def test_rescored_values_are_the_metrics_on_the_saved_codes(tiny, tmp_path):
    cwd, client, before, after, first, _ = tiny
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    assert "[2/2] 2 done" in first.stdout
    assert "2 runs rescored, 10 values written, 0 unchanged, 0 failed, 0 skipped" in first.stdout
    for run_id, run in after.items():
        codes = np.load(client.download_artifacts(run_id, "codes.npz", str(tmp_path / run_id)))
        expected_sap = sap.sap(
            codes["codes"], codes["factors"], codes["codes_test"], codes["factors_test"]
        )
        assert run.data.metrics["sap"] == pytest.approx(expected_sap, rel=1e-12)
        expected = modularity.modularity(codes["codes"], codes["factors"])
        assert run.data.metrics["modularity"] == pytest.approx(expected, rel=1e-12)
        assert run.data.metrics["mig"] == before[run_id].data.metrics["mig"]
        assert run.data.tags[rescore.TAG].endswith(" sap,modularity")
        assert "one-feature linear SVM" in run.data.tags["estimator.sap"]
    by_run = [r.data.metrics["modularity"] for r in after.values()]
    assert by_run[0] != by_run[1]  # each run scored from its own codes


@pytest.mark.ray
@pytest.mark.slow
def test_rescoring_keeps_status_and_end_time_and_writes_nothing_twice(tiny):
    _, client, before, after_first, _, second = tiny
    assert second.returncode == 0, second.stdout[-2000:] + second.stderr[-2000:]
    # mig: the value each trial logged, recomputed from its codes and recognised as unchanged
    assert "2 runs rescored, 0 values written, 12 unchanged" in second.stdout
    for run_id, run in _runs(client, "tiny").items():
        assert (run.info.status, run.info.end_time) == ("FINISHED", before[run_id].info.end_time)
        for key in ("sap", "modularity", "explicitness", "mig"):
            assert len(client.get_metric_history(run_id, key)) == 1, key
        assert run.data.tags[rescore.TAG] == after_first[run_id].data.tags[rescore.TAG]


@pytest.mark.ray
@pytest.mark.slow
def test_refusals_are_one_line_and_exit_2_before_ray(tiny):
    cwd = tiny[0]
    sampling = _study(cwd, "rescore", "tiny", "--metrics", "sap,factor_vae")
    assert sampling.returncode == 2 and sampling.stdout == ""
    line = sampling.stderr.strip()
    assert "\n" not in line and "factor_vae" in line and "whole factor grid" in line, line
    unknown = _study(cwd, "rescore", "nope", "--metrics", "sap")
    assert unknown.returncode == 2 and unknown.stderr.strip().startswith("error: no study 'nope'")
    assert "\n" not in unknown.stderr.strip()
    metric = _study(cwd, "rescore", "tiny", "--metrics", "sapp")
    assert metric.returncode == 2 and "unknown metric 'sapp'" in metric.stderr


# In process, no Ray: the rule, the plan, a sampling metric from saved grid codes.


def _finished_run(client: MlflowClient, experiment_id: str, name: str, metrics=("mig",)) -> str:
    run = client.create_run(experiment_id, run_name=name, tags={"role": "trial"})
    run_id = run.info.run_id
    client.log_param(run_id, "metrics", json.dumps(list(metrics)))
    for step in (0, 5):
        client.log_metric(run_id, "metric_seconds_mig", 0.1, step=step)
    client.log_metric(run_id, "mig", 0.25, step=5)
    client.set_terminated(run_id, "FINISHED")
    return run_id


def test_a_value_is_written_once_and_a_changed_one_appended_at_the_runs_step(tmp_mlflow, tmp_path):
    client = MlflowClient(tmp_mlflow)
    run_id = _finished_run(client, client.create_experiment("rule", tmp_path.as_uri()), "a")
    ended = client.get_run(run_id).info
    assert rescore.write_scores(client, run_id, {"mig": {"mig": 0.25}}) == (0, 1)
    assert rescore.write_scores(client, run_id, {"sap": {"sap": 0.5}}) == (1, 0)
    assert rescore.write_scores(client, run_id, {"sap": {"sap": 0.5}}) == (0, 1)
    assert [(m.step, m.value) for m in client.get_metric_history(run_id, "sap")] == [(5, 0.5)]
    assert rescore.write_scores(client, run_id, {"mig": {"mig": 0.3}}, mode="fast") == (1, 0)
    run = client.get_run(run_id)
    assert run.data.metrics["mig"] == 0.3  # the new value is the run's value; the old one kept
    assert sorted(m.value for m in client.get_metric_history(run_id, "mig")) == [0.25, 0.3]
    assert (run.info.status, run.info.end_time) == (ended.status, ended.end_time)
    entries = run.data.tags[rescore.TAG].split("; ")
    assert len(entries) == 2 and entries[0].endswith(" sap") and entries[1].endswith(" mig (fast)")


def _codes_file(path: Path, rng: np.random.Generator, grid: bool) -> Path:
    sizes = [3, 4, 5]
    table = rng.normal(size=(60, 4))  # one code per grid point
    table[:, :3] += np.stack(np.unravel_index(np.arange(60), sizes), axis=1)
    rows = rng.integers(0, 60, 90)
    factors = np.stack(np.unravel_index(rows, sizes), axis=1)
    extra = {"grid_codes": table, "factor_sizes": np.asarray(sizes)} if grid else {}
    np.savez(
        path, codes=table[rows[:60]], factors=factors[:60], codes_test=table[rows[60:]],
        factors_test=factors[60:], metrics=np.array(["mig"]), metric_mode=np.array("fast"),
        metric_options=np.array("{}"),
        rng_state=np.array(json.dumps(np.random.default_rng(3).bit_generator.state)), **extra,
    )  # fmt: skip
    return path


def test_the_plan_skips_runs_without_codes_and_sampling_metrics_need_grid_codes(
    tmp_mlflow, tmp_path, rng
):
    client = MlflowClient(tmp_mlflow)
    experiment = client.create_experiment("planned", (tmp_path / "artifacts").as_uri())
    grid = _finished_run(client, experiment, "grid", metrics=("mig", "factor_vae"))
    plain = _finished_run(client, experiment, "plain")
    _finished_run(client, experiment, "no codes")
    client.log_artifact(grid, str(_codes_file(tmp_path / "codes.npz", rng, grid=True)))
    (tmp_path / "plain").mkdir()
    client.log_artifact(plain, str(_codes_file(tmp_path / "plain" / "codes.npz", rng, grid=False)))
    planned = rescore.plan(tmp_mlflow, "planned", ["sap", "factor_vae"])
    assert {t.name: t.metrics for t in planned.targets} == {
        "grid": ["sap", "factor_vae"], "plain": ["sap"]
    }  # fmt: skip
    assert planned.skipped == [
        "no codes: no codes.npz artifact",
        "plain: factor_vae (no factor grid)",
    ]
    with pytest.raises(UserError, match="has no finished trial runs"):
        rescore.plan(tmp_mlflow, "Default", ["sap"])
    with pytest.raises(UserError, match="--mode must be one of"):
        rescore.plan(tmp_mlflow, "planned", ["sap"], mode="slow")
    # FactorVAE from the saved grid codes: what `study score` gives on the same file
    result = rescore.score_run(tmp_mlflow, grid, {"": "codes.npz"}, ["factor_vae", "sap"], None)
    direct = score_arrays(load_arrays(tmp_path / "codes.npz"), ["factor_vae"], n_jobs=1)
    assert result["scores"]["factor_vae"]["factor_vae"] == direct["factor_vae"]
    assert set(result["scores"]["sap"]) == {"sap"}
