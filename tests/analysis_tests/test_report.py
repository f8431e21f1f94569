"""The report on hand-built runs in a real MLflow store with known values: every table's numbers
against direct pandas / scipy computations, the sections and skipped list, a self-contained HTML;
`study best` filters and `--config` reruns; read-only commands never create a store; the runs
cache refreshes incrementally."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
import yaml
from mlflow.tracking import MlflowClient
from scipy import stats as scipy_stats

from analysis.report import write_report
from analysis.results import ResultsError, load_studies, study_design

BETAS = (1, 4)
SEEDS = (0, 1, 2)


def _mig(beta: int, seed: int) -> float:
    return 0.1 * beta + 0.01 * seed  # beta 4 leads by far more than the seed spread


def _artifacts(tmp_path, name: str) -> str:
    # not the default ./mlruns of the working directory: the test must write only under tmp_path
    return (tmp_path / "artifacts" / name).as_uri()


def _store(tmp_path, study="toy", family="vae", description="Does beta raise MIG?"):
    uri = f"sqlite:///{tmp_path / 'mlruns.db'}"
    client = MlflowClient(uri)
    experiment = client.create_experiment(study, artifact_location=_artifacts(tmp_path, study))
    spec = {"name": study, "family": family, "description": description,
            "sweep": {"beta": list(BETAS), "seed": list(SEEDS)}}  # fmt: skip
    parent = client.create_run(experiment, tags={"role": "launch", "study": study, "family": family})
    client.log_text(parent.info.run_id, yaml.safe_dump(spec), "config.yaml")
    client.set_terminated(parent.info.run_id, "FINISHED")
    for beta in BETAS:
        for seed in SEEDS:
            run = client.create_run(
                experiment,
                tags={"role": "trial", "study": study, "family": family,
                      "mlflow.parentRunId": parent.info.run_id, "trial_id": f"{beta}-{seed}"},
            )  # fmt: skip
            run_id = run.info.run_id
            for key, value in {"beta": beta, "seed": seed, "latent_dim": 6, "lr": 0.001,
                               "dataset.name": "dsprites"}.items():  # fmt: skip
                client.log_param(run_id, key, str(value) if not isinstance(value, str) else value)
            client.log_metric(run_id, "mig", _mig(beta, seed))
            client.log_metric(run_id, "dci_disentanglement", 0.5 - 0.05 * beta + 0.02 * seed)
            client.log_metric(run_id, "reconstruction_mse", 0.01 * beta + 0.001 * seed)
            for step in (1, 2, 3):
                client.log_metric(run_id, "val/loss", 1.0 / step + beta, step=step)
            client.set_terminated(run_id, "FINISHED")
    return uri, client


def test_report_numbers_sections_and_a_self_contained_page(tmp_path):
    uri, _ = _store(tmp_path)
    write_report(uri, "toy", tmp_path / "out")
    page = (tmp_path / "out" / "report.html").read_text()
    # self-contained: no stylesheet, script or image from anywhere else
    assert not re.search(r'(src|href)="(?!data:)', page)
    assert "<link" not in page and "<script" not in page
    for section in ("The question", "Does beta raise MIG?", "The answer", "Scores",
                    "Do the metrics agree?", "hyperparameter explain", "transfer", "Figures",
                    "Skipped"):  # fmt: skip
        assert section in page, section
    assert page.count("data:image/png;base64,") >= 4  # bars, heatmap, violins, curves
    # the answer: beta 4 ahead of beta 1 on MIG by 0.3 on every seed (paired: no spread, p = 0)
    assert "mig (higher is better): 4 &gt; 1 (p=0); every step significant at 0.05" in page
    # the scores table: mean ± std over seeds, as pandas computes it
    frame = pd.DataFrame([(b, s, _mig(b, s)) for b in BETAS for s in SEEDS], columns=["b", "s", "m"])
    expected = frame.groupby("b")["m"].agg(["mean", "std"])
    markdown = (tmp_path / "out" / "scores.md").read_text()
    for beta in BETAS:
        cell = f"{expected.loc[beta, 'mean']:.3f} ± {expected.loc[beta, 'std']:.3f}"
        assert cell in markdown, cell
    assert "**0.410 ± 0.010**" in markdown  # the best, in bold
    assert "\\textbf{" in (tmp_path / "out" / "scores.tex").read_text()
    # the 95% t-interval half-width: t(0.975, 2 dof) * std / sqrt(3), std of {0, .01, .02} = .01
    scores = pd.read_csv(tmp_path / "out" / "scores.csv", index_col=0)
    half = scipy_stats.t.ppf(0.975, 2) * 0.01 / np.sqrt(3)
    assert scores.loc[4, "mig_ci"] == pytest.approx(half) and scores.loc[4, "mig_n"] == 3


def test_the_answer_tests_the_questions_contrasts_against_scipy(tmp_path):
    uri, client = _store(tmp_path)
    # a noisy metric the question asks about: beta 4 ahead by 0.05, seed noise shared by both
    noise = {0: 0.0, 1: 0.03, 2: -0.01}
    extra = {(1, 0): 0.004, (1, 1): -0.01, (1, 2): 0.012, (4, 0): -0.006, (4, 1): 0.008, (4, 2): 0.0}
    experiment = client.get_experiment_by_name("toy").experiment_id
    for run in client.search_runs([experiment], "tags.role = 'trial'"):
        beta, seed = int(run.data.params["beta"]), int(run.data.params["seed"])
        value = 0.2 + (0.05 if beta == 4 else 0.0) + noise[seed] + extra[(beta, seed)]
        client.log_metric(run.info.run_id, "sap", value)
    launch = client.search_runs([experiment], "tags.role = 'launch'")[0]
    spec = {"name": "toy", "family": "vae", "sweep": {"beta": list(BETAS), "seed": list(SEEDS)},
            "question": {"metrics": ["sap", "mig"], "contrasts": [["4", "1"]], "alpha": 0.05}}
    client.log_text(launch.info.run_id, yaml.safe_dump(spec), "config.yaml")
    write_report(uri, "toy", tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    answer = md.split("## The answer", 1)[1].split("## Scores", 1)[0]
    sap = {b: [0.2 + (0.05 if b == 4 else 0) + noise[s] + extra[(b, s)] for s in SEEDS] for b in BETAS}
    p_sap = scipy_stats.ttest_rel(sap[4], sap[1], alternative="greater").pvalue
    # Holm over the question's two cells (sap, mig): mig's p is 0 (a constant 0.3 lead), so
    # sap's is the larger, multiplied by 1
    line = next(x for x in answer.splitlines() if x.startswith("- asked: sap: "))
    assert f"4 > 1: {np.mean(sap[4]) - np.mean(sap[1]):+.3g}" in line and "paired t(2)" in line
    assert f"p_holm = {p_sap:.2g}" in line and "significant at 0.05" in line
    # the question's metrics lead the answer, the others follow
    bullets = [line for line in answer.splitlines() if line.startswith("- ")]
    assert bullets[0].startswith("- asked: sap") and bullets[1].startswith("- asked: mig")
    assert bullets[2].startswith("- asked: sap (higher is better)")


def test_report_correlation_and_variance_against_scipy(tmp_path):
    uri, _ = _store(tmp_path)
    report = tmp_path / "out"
    write_report(uri, "toy", report)
    md = (report / "report.md").read_text()
    mig = [_mig(b, s) for b in BETAS for s in SEEDS]
    dci = [0.5 - 0.05 * b + 0.02 * s for b in BETAS for s in SEEDS]
    rho = scipy_stats.spearmanr(mig, dci).statistic
    assert f"{rho:.2f}" in md
    # eta squared of mig on beta: between-group over total sum of squares
    values = np.array(mig)
    groups = [values[:3], values[3:]]
    between = sum(len(g) * (g.mean() - values.mean()) ** 2 for g in groups)
    eta = between / ((values - values.mean()) ** 2).sum()
    assert f"{eta:.3f}" in md


def test_one_group_is_said_and_skipped(tmp_path):
    uri, client = _store(tmp_path)
    # a second study of one setting, two seeds: nothing to compare, no hyperparameter
    experiment = client.create_experiment("flat", artifact_location=_artifacts(tmp_path, "flat"))
    for seed in (0, 1):
        run = client.create_run(experiment, tags={"role": "trial", "study": "flat", "family": "ae"})
        client.log_param(run.info.run_id, "seed", str(seed))
        client.log_metric(run.info.run_id, "mig", 0.1 + seed)
        client.set_terminated(run.info.run_id, "FINISHED")
    write_report(uri, "flat", tmp_path / "out")
    md = (tmp_path / "out" / "report.md").read_text()
    assert "One group only" in md
    skipped = md.split("## Skipped", 1)[1]
    assert "metric agreement" in skipped and "hyperparameter vs seed" in skipped


def test_two_studies_side_by_side(tmp_path):
    uri, client = _store(tmp_path)
    _store_second = client.create_experiment("other", artifact_location=_artifacts(tmp_path, "o"))
    for seed in (0, 1):
        run = client.create_run(_store_second, tags={"role": "trial", "study": "other", "family": "ae"})
        client.log_param(run.info.run_id, "seed", str(seed))
        client.log_metric(run.info.run_id, "mig", 0.9)
        client.set_terminated(run.info.run_id, "FINISHED")
    write_report(uri, ["toy", "other"], tmp_path / "out")
    md = (tmp_path / "out" / "scores.md").read_text()
    assert "| other |" in md.replace("**", "") and "| toy | 4 |" in md.replace("**", "")


def test_design_comes_from_the_launch_config(tmp_path):
    uri, client = _store(tmp_path)
    design = study_design(client, "toy")
    assert design.swept == ("beta", "seed") and design.factors == ("beta",)
    assert design.description == "Does beta raise MIG?" and design.family == "vae"


def test_the_cache_fetches_only_new_runs(tmp_path):
    uri, client = _store(tmp_path)
    cache = tmp_path / "cache"
    first = load_studies(uri, ["toy"], cache=cache)
    assert len(first) == 6 and len(list(cache.iterdir())) == 1
    experiment = client.get_experiment_by_name("toy").experiment_id
    run = client.create_run(experiment, tags={"role": "trial", "study": "toy", "family": "vae"})
    client.log_metric(run.info.run_id, "mig", 0.5)
    client.set_terminated(run.info.run_id, "FINISHED")
    again = load_studies(uri, ["toy"], cache=cache)
    assert len(again) == 7 and again["run_id"].is_unique


def _cli(tmp_path, *args):
    return subprocess.run(
        [sys.executable, "-m", "study.cli", *args], cwd=tmp_path, capture_output=True, text=True,
        timeout=300,
    )  # fmt: skip


def test_read_only_commands_never_create_a_store(tmp_path):
    with pytest.raises(ResultsError, match="no tracking store"):
        write_report(f"sqlite:///{tmp_path / 'none.db'}", "toy", tmp_path / "out")
    for args in (["best", "--study", "toy", "--metric", "mig"], ["report", "--study", "toy"]):
        result = _cli(tmp_path, *args)
        assert result.returncode == 2 and "no tracking store" in result.stderr, result.stderr
    assert not (tmp_path / "mlruns.db").exists()


def test_best_filters_and_prints_a_rerun_config(tmp_path):
    uri, _ = _store(tmp_path)
    result = _cli(tmp_path, "best", "--study", "toy", "--metric", "mig", "--where", "beta=1",
                  "--json", "--tracking-uri", uri)  # fmt: skip
    rows = json.loads(result.stdout)
    assert rows[0]["mig"] == pytest.approx(_mig(1, 2)) and len(rows) == 3
    bad = _cli(tmp_path, "best", "--study", "toy", "--metric", "mig", "--where", "colour=red",
               "--tracking-uri", uri)  # fmt: skip
    assert bad.returncode == 2 and "colour" in bad.stderr
    config = _cli(tmp_path, "best", "--study", "toy", "--metric", "mig", "--config",
                  "--tracking-uri", uri)  # fmt: skip
    spec = yaml.safe_load(config.stdout)
    assert spec["family"] == "vae" and spec["fixed"]["beta"] == 4 and spec["fixed"]["seed"] == 2
    assert spec["dataset"] == {"name": "dsprites"} and "sweep" not in spec
