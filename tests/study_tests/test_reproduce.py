"""`study reproduce`: every shipped chain loads; a two-step chain of tiny studies runs in order on a
real local Ray into a real MLflow store (the probe picks its upstream runs from step one), writes
the report with a verdict per finding, and skips both steps when run again; a launch cut short is
resumed; bad input is one line and exit 2. Locatello et al.'s chain: its report written from runs
built to give each answer (every finding with a verdict word, the paper's numbers beside ours), and
a tiny two-method chain over two datasets end to end."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient

from analysis import reproduction
from study.errors import SpecError
from study.reproduce import PAPERS, SCALES, chain_path, load_chain, step_state

CONFIGS = Path(__file__).parents[2] / "configs"
LOCATELLO_DATASETS = (
    "dsprites, color_dsprites, noisy_dsprites, scream_dsprites, smallnorb, cars3d, shapes3d"
)
LOCATELLO = ["L2", "L3", "L4", "L5", "L6", "L7", "L8", "L9", "L10"]
VERDICT_WORDS = {"reproduced", "not reproduced", "not comparable"}
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
    if paper == "locatello":  # one study per method, each sweeping its datasets (a data axis)
        datasets = LOCATELLO_DATASETS if scale == "paper" else "dsprites, color_dsprites"
        assert {s.dataset for s in steps} == {datasets} and {s.role for s in steps} == {"models"}
        assert len(steps) == (6 if scale == "paper" else 2)


def test_bad_chains_are_one_line(tmp_path):
    bad = tmp_path / "chain.yaml"
    bad.write_text("paper: multitask\nscale: cpu\nsteps: [{role: encoders, config: nope.yaml}]\n")
    with pytest.raises(SpecError, match="steps.0.config: no such file"):
        load_chain(bad)
    bad.write_text("paper: multitask\nscale: huge\nsteps: []\n")
    with pytest.raises(SpecError, match="scale"):
        load_chain(bad)
    for args, message in (
        (["reproduce", "nonsense"], "paper: 'nonsense' is not one of"),
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


# -- Locatello et al. 2019 (seed 002) ----------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "family", "param", "values"),
    [("beta_vae", "vae", "beta", [1, 2, 4, 6, 8, 16]),
     ("beta_tc_vae", "beta_tc_vae", "beta", [1, 2, 4, 6, 8, 10]),
     ("factor_vae", "factor_vae", "gamma", [10, 20, 30, 40, 50, 100]),
     ("dip_vae_i", "dip_vae", "lambda_od", [1, 2, 5, 10, 20, 50]),
     ("dip_vae_ii", "dip_vae", "lambda_od", [1, 2, 5, 10, 20, 50]),
     ("annealed_vae", "annealed_vae", "c_max", [5, 10, 25, 50, 75, 100])],
)  # fmt: skip
def test_locatello_paper_configs_are_disentanglement_libs_on_every_dataset(
    name, family, param, values
):
    from study.spec import load_spec

    spec = load_spec(CONFIGS / "locatello" / f"{name}.yaml")
    assert spec.family == family and spec.n_trials == 7 * 6 * 50
    assert ", ".join(spec.sweep["dataset.name"]) == LOCATELLO_DATASETS
    assert spec.sweep[param] == values and spec.sweep["seed"] == list(range(50))
    fixed = spec.fixed
    assert (fixed["steps"], fixed["latent_dim"], fixed["batch_size"]) == (300_000, 10, 64)
    wanted = {"downstream_logistic_regression", "downstream_boosted_trees", "mig", "dci", "sap",
              "modularity", "factor_vae", "beta_vae", "irs", "unsupervised"}  # fmt: skip
    assert wanted <= set(spec.metrics)


def _locatello_runs(rng: np.random.Generator, score=None, seeds: int = 3) -> pd.DataFrame:
    """Two methods x 3 strengths x ``seeds`` seeds on dSprites and Color-dSprites, as load_runs
    gives them: total correlation of the mean code grows with beta, of the sampled one falls; the
    paper's metrics follow ``score(dataset, family, strength, seed)`` (default: one random quality
    per run) plus noise, modularity does not; no downstream metrics."""
    score = score or (lambda *_: rng.normal())
    rows = []
    for dataset in ("dsprites", "color_dsprites"):
        for family, betas in (("vae", (1, 4, 16)), ("beta_tc_vae", (1, 4, 10))):
            for strength, beta in enumerate(betas):
                for seed in range(seeds):
                    quality = score(dataset, family, strength, seed)
                    metrics = {m: quality + 0.01 * rng.normal()
                               for m in ("mig", "dci_disentanglement", "sap", "factor_vae",
                                         "beta_vae")}  # fmt: skip
                    metrics |= {
                        "modularity": rng.normal(), "reconstruction_loss": rng.normal(),
                        "gaussian_total_correlation": strength + 0.2 * rng.random(),
                        "gaussian_total_correlation_sampled": -strength + 0.2 * rng.random(),
                    }  # fmt: skip
                    rows.append({
                        "tags.family": family, "params.dataset.name": dataset,
                        "params.beta": str(beta), "params.seed": str(seed),
                        **{f"metrics.{k}": v for k, v in metrics.items()},
                    })  # fmt: skip
    return pd.DataFrame(rows).assign(run_id=lambda f: [f"run-{i}" for i in range(len(f))])


def test_locatello_report_has_every_finding_with_a_verdict_and_the_papers_numbers(
    tmp_path, monkeypatch, rng
):
    chain, steps = load_chain(chain_path("locatello", "cpu"))
    runs = _locatello_runs(rng)
    by_study = {"locatello_cpu_beta_vae": "vae", "locatello_cpu_beta_tc_vae": "beta_tc_vae"}

    def load_roles(steps, tracking_uri):  # as reproduction.load_roles: by the steps' datasets
        return {s.dataset: {s.role: runs[runs["tags.family"] == by_study[s.study]]}
                for s in steps}  # fmt: skip

    monkeypatch.setattr(reproduction, "load_roles", load_roles)
    written, verdicts = reproduction.write_reproduction(
        chain, steps, f"sqlite:///{tmp_path / 'mlruns.db'}", tmp_path / "report"
    )
    assert [v.id for v in verdicts] == LOCATELLO  # once each: the two steps judged together
    with open(tmp_path / "report" / "verdicts.csv") as handle:
        table = {row["id"]: row for row in csv.DictReader(handle)}
    assert list(table) == LOCATELLO and {r["verdict"] for r in table.values()} <= VERDICT_WORDS
    assert table["L2"]["verdict"] == "reproduced"  # built so
    assert table["L2"]["dataset"] == "color_dsprites, dsprites"
    assert table["L10"]["verdict"] == "not comparable"  # no downstream metrics
    assert table["L8"]["dataset"] == "dsprites -> color_dsprites"
    assert table["L8"]["verdict"] in ("reproduced", "not reproduced")
    page = (tmp_path / "report" / "report.md").read_text()
    assert "Reproduction of Locatello et al. 2019 (seed 002), cpu scale" in page
    for heading in ("Scores by dataset and method", "Where the spread comes from",
                    "Model selection beats random how often?", "procedurally"):  # fmt: skip
        assert heading in page, heading
    transfer = next(line for line in page.splitlines() if line.startswith("| same metric and"))
    assert "0.81" in transfer  # the paper's number beside ours
    for finding in LOCATELLO:
        assert f"### {finding} (" in page


def test_locatello_verdicts_without_a_second_dataset_say_why(rng):
    from analysis import reproduction_locatello as rl

    runs = _locatello_runs(rng)
    one = runs[runs["params.dataset.name"] == "dsprites"]
    verdicts = {v.id: v for v in rl.locatello_verdicts({"models": one}, "dsprites")}
    for finding in ("L6", "L8", "L9"):
        assert verdicts[finding].verdict == "not comparable", finding
    assert "color_dsprites" in verdicts["L8"].evidence and "two datasets" in verdicts["L6"].evidence
    assert verdicts["L2"].verdict == "reproduced"


def test_locatello_l6_and_l8_verdicts_follow_their_rules(rng):
    from analysis.reproduction_locatello import l6_no_recipe, l8_color_transfer

    def recipe(dataset, family, strength, seed):  # beta-VAE, strongest: best everywhere
        return 10.0 * (family == "vae") + strength + 0.01 * rng.normal()

    def no_recipe(dataset, family, strength, seed):  # each dataset its own best method and beta
        flip = dataset == "color_dsprites"
        return 10.0 * ((family == "vae") != flip) + (2 - strength if flip else strength)

    def lucky(dataset, family, strength, seed):  # the settings carry over; seeds matter more
        return strength + 1.5 * rng.normal()

    assert l6_no_recipe(_locatello_runs(rng, recipe)).verdict == "not reproduced"
    result = l6_no_recipe(_locatello_runs(rng, no_recipe))
    assert result.verdict == "reproduced", result.evidence
    assert "mig: best method color_dsprites beta_tc_vae, dsprites vae" in result.evidence
    result = l8_color_transfer(_locatello_runs(rng, lucky, seeds=8))
    assert result.verdict == "reproduced", result.evidence
    result = l8_color_transfer(_locatello_runs(rng, recipe))  # transfers, but seeds barely matter
    assert result.verdict == "not reproduced" and "mig: probability 1.00" in result.evidence


def _tiny_locatello_chain(tmp_path: Path) -> Path:
    """One step (the synthetic test pools steps): beta-VAE, 2 datasets x 2 betas x 2 seeds."""
    spec = yaml.safe_load((CONFIGS / "locatello" / "cpu" / "beta_vae.yaml").read_text())
    spec["name"] = "tiny_beta_vae"
    spec["dataset"]["subset"] = VIEW
    spec["fixed"].update(steps=4, report_every=2, batch_size=8, metric_train_points=120,
                         metric_test_points=60)  # fmt: skip
    spec["sweep"].update(beta=[1, 4], seed=[0, 1])
    (tmp_path / "beta_vae.yaml").write_text(yaml.safe_dump(spec))
    steps = [{"role": "models", "config": "beta_vae.yaml"}]
    chain = {"paper": "locatello", "scale": "cpu", "description": "tiny", "steps": steps}
    path = tmp_path / "chain.yaml"
    path.write_text(yaml.safe_dump(chain))
    return path


@pytest.mark.ray
@pytest.mark.slow
def test_a_tiny_locatello_chain_runs_and_judges_every_finding(tmp_path):
    chain = _tiny_locatello_chain(tmp_path)
    out = tmp_path / "report"
    args = ["reproduce", "locatello", "--chain", str(chain), "--num-cpus", "2", "--out", str(out)]
    result = _study(tmp_path, *args)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "[1/1] tiny_beta_vae (models, dsprites, color_dsprites): running" in result.stdout
    with open(out / "verdicts.csv") as handle:
        verdicts = {row["id"]: row for row in csv.DictReader(handle)}
    assert list(verdicts) == LOCATELLO
    assert {v["verdict"] for v in verdicts.values()} <= VERDICT_WORDS
    # what real runs carry: the strength, the datasets, the total correlations, the selectors
    for finding in ("L2", "L3", "L5", "L7", "L8", "L9"):
        assert verdicts[finding]["verdict"] != "not comparable", verdicts[finding]["evidence"]
    assert verdicts["L4"]["evidence"] == "one method: no objective share"
    assert "two methods" in verdicts["L6"]["evidence"]
    assert verdicts["L10"]["verdict"] == "not comparable"
    assert "L9 (color_dsprites, dsprites)" in result.stdout
