"""`study reproduce`: every shipped chain loads; a two-step chain of tiny studies runs in order on a
real local Ray into a real MLflow store (the probe picks its upstream runs from step one), writes
the report with a verdict per finding, and skips both steps when run again; a launch cut short is
resumed; bad input is one line and exit 2."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from mlflow.tracking import MlflowClient

from study.errors import SpecError
from study.reproduce import PAPERS, SCALES, chain_path, load_chain, step_state

CONFIGS = Path(__file__).parents[2] / "configs"
VIEW = {"scale": [0, 5], "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"}
SMALL = {"metric_train_points": 200, "metric_test_points": 100, "pictures": False, "epochs": 1}


def _study(cwd: Path, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )  # fmt: skip


@pytest.mark.parametrize("paper", PAPERS)
@pytest.mark.parametrize("scale", SCALES)
def test_every_shipped_chain_loads_with_valid_steps(paper, scale):
    chain, steps = load_chain(chain_path(paper, scale))
    assert chain.paper == paper and chain.scale == scale and steps
    if paper == "multitask":
        roles = [s.role for s in steps]
        assert roles.index("encoders") < roles.index("decoders") < roles.index("heads")
    if scale == "paper" and paper == "multitask":  # Sections 4.1-4.3 on all three datasets
        assert {s.dataset for s in steps} == {"dsprites", "shapes3d", "mpi3d"}


def test_bad_chains_are_one_line(tmp_path):
    bad = tmp_path / "chain.yaml"
    bad.write_text("paper: multitask\nscale: cpu\nsteps: [{role: encoders, config: nope.yaml}]\n")
    with pytest.raises(SpecError, match="steps.0.config: no such file"):
        load_chain(bad)
    bad.write_text("paper: multitask\nscale: huge\nsteps: []\n")
    with pytest.raises(SpecError, match="scale"):
        load_chain(bad)
    for args, message in (
        (["reproduce", "locatello"], "paper: 'locatello' is not one of"),
        (["reproduce", "multitask", "--scale", "huge"], "--scale: 'huge'"),
        (["reproduce", "modular", "--chain", str(bad)], "scale"),
        (["reproduce", "modular", "--report-only"], "no tracking store"),
    ):
        result = _study(tmp_path, *args)
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.returncode == 2 and len(lines) == 1 and message in lines[0], result.stderr
    assert not (tmp_path / "mlruns.db").exists()


def _chain(tmp_path: Path) -> Path:
    encoders = yaml.safe_load((CONFIGS / "multitask" / "chain" / "41_multitask.yaml").read_text())
    encoders.update(name="tiny41", sweep={"variant": ["multi_head", "single_task", "random"],
                                          "seed": [0, 1]})  # fmt: skip
    encoders["dataset"]["subset"] = VIEW
    encoders["fixed"].update(SMALL, n_tasks=2)
    encoders["metrics"] = ["mig", "dci", "spearman_match"]
    decoders = yaml.safe_load((CONFIGS / "multitask" / "chain" / "42_decoders.yaml").read_text())
    decoders.update(name="tiny42")
    decoders["dataset"]["subset"] = VIEW
    decoders["source"]["study"] = "tiny41"
    decoders["fixed"].update(SMALL)
    decoders["metrics"] = ["mig"]
    for name, spec in (("41.yaml", encoders), ("42.yaml", decoders)):
        (tmp_path / name).write_text(yaml.safe_dump(spec))
    chain = {"paper": "multitask", "scale": "cpu", "description": "two tiny steps",
             "steps": [{"role": "encoders", "config": "41.yaml"},
                       {"role": "decoders", "config": "42.yaml"}]}  # fmt: skip
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain))
    return path


@pytest.mark.ray
@pytest.mark.slow
def test_a_chain_runs_in_order_writes_verdicts_and_skips_what_finished(tmp_path):
    chain = _chain(tmp_path)
    out = tmp_path / "report"
    args = ["reproduce", "multitask", "--chain", str(chain), "--num-cpus", "2", "--out", str(out)]
    first = _study(tmp_path, *args)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "[1/2] tiny41 (encoders, dsprites): running" in first.stdout
    assert "[2/2] tiny42 (decoders, dsprites): running" in first.stdout
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name("tiny41")
    encoders = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
    # the single-task baseline is one model per task: (2 + 2 tasks) x 2 seeds
    assert len(encoders) == 8 and {r.info.status for r in encoders} == {"FINISHED"}
    tasks = sorted((r.data.params["seed"], r.data.params["task_index"]) for r in encoders
                   if r.data.params["variant"] == "single_task")  # fmt: skip
    assert tasks == [("0", "0"), ("0", "1"), ("1", "0"), ("1", "1")]
    # the decoders picked step one's runs: multi-head, task-0 single-task and random, per seed
    decoders = client.search_runs(
        [client.get_experiment_by_name("tiny42").experiment_id], "tags.role = 'trial'"
    )
    assert len(decoders) == 6
    assert {d.data.tags["upstream_study"] for d in decoders} == {"tiny41"}
    with open(out / "verdicts.csv") as handle:
        verdicts = {row["id"]: row for row in csv.DictReader(handle)}
    assert set(verdicts) == {"M1", "M2", "M3", "M4", "M5", "M6", "M7", "M9", "M11", "M12", "M13"}
    assert verdicts["M12"]["verdict"] == "not comparable"  # no task-heads step in this chain
    assert verdicts["M4"]["verdict"] == "not comparable"  # no one-head encoders
    assert verdicts["M9"]["verdict"] in ("reproduced", "not reproduced")
    page = (out / "report.html").read_text()
    assert "Table 5 (dsprites)" in page and "Table 4 (dsprites)" in page and "Verdicts" in page
    assert "M1" in first.stdout and "reproduction report:" in first.stdout
    # again: both steps finished, nothing reruns, the report is written again
    (out / "report.html").unlink()
    second = _study(tmp_path, *args)
    assert second.returncode == 0, second.stderr[-2000:]
    assert second.stdout.count("finished earlier, skipped") == 2
    assert (out / "report.html").exists()
    assert len(client.search_runs([experiment.experiment_id], "tags.role = 'trial'")) == 8
    # a launch that did not finish is resumed, not rerun
    launch = client.search_runs([experiment.experiment_id], "tags.role = 'launch'")[0]
    client.set_terminated(launch.info.run_id, "KILLED")
    assert step_state(uri, "tiny41") == "cut" and step_state(uri, "nothing") == "new"
    third = _study(tmp_path, *args)
    assert third.returncode == 0, third.stdout[-2000:] + third.stderr[-2000:]
    assert "[1/2] tiny41 (encoders, dsprites): its latest launch did not finish" in third.stdout
    assert len(client.search_runs([experiment.experiment_id], "tags.role = 'trial'")) == 8
