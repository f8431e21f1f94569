"""Probe studies through `study run` on a real local Ray and MLflow store: an upstream study, then
decoders and task heads on its saved models, chosen by a source selector resolved before Ray starts.

Checks: the selector picks the right runs; every way to get it wrong is one line and exit 2 (or one
SpecError in process) before Ray starts; probe runs carry their provenance; the upstream's saved
weights are bit-identical after the probes; the report groups probes by their upstream's params."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from study.sources import resolve
from study.spec import SpecError, load_spec

CHAIN = Path(__file__).parents[2] / "configs" / "multitask" / "chain"
VIEW = "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:8', posY: '0:32:8'}"
SMALL = ["fixed.metric_train_points=200", "fixed.metric_test_points=100", "fixed.umap_points=60"]

pytestmark = [pytest.mark.ray, pytest.mark.slow]


def _run(cwd: Path, config: Path, *sets: str) -> subprocess.CompletedProcess:
    args = [sys.executable, "-m", "study.cli", "run", str(config), "--num-cpus", "2"]
    for item in sets:
        args += ["--set", item]
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=600)


def _trials(client: MlflowClient, study: str) -> list:
    experiment = client.get_experiment_by_name(study)
    return client.search_runs([experiment.experiment_id], "tags.role = 'trial'")


@pytest.fixture(scope="module")
def chain(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("chain")
    upstream = _run(
        cwd, CHAIN / "41_multitask.yaml", VIEW, *SMALL, "fixed.epochs=2", "fixed.n_tasks=3",
        "fixed.task_index=0",  # one single-task model: the runs below are keyed by variant
        "sweep={variant: [multi_head, single_task, random], seed: [0]}",
    )  # fmt: skip
    assert upstream.returncode == 0, upstream.stdout[-2000:] + upstream.stderr[-2000:]
    uri = f"sqlite:///{cwd / 'mlruns.db'}"
    client = MlflowClient(uri)
    runs = {r.data.params["variant"]: r for r in _trials(client, "chain41_multitask")}
    weights = {
        v: Path(
            client.download_artifacts(r.info.run_id, "model/weights.pt", str(cwd / v))
        ).read_bytes()
        for v, r in runs.items()
    }
    decoders = _run(
        cwd, CHAIN / "42_decoders.yaml", VIEW, *SMALL, "fixed.epochs=2",
        "source.where={variant: [multi_head, random]}",
    )  # fmt: skip
    assert decoders.returncode == 0, decoders.stdout[-2000:] + decoders.stderr[-2000:]
    heads = _run(
        cwd, CHAIN / "43_heads.yaml", VIEW, *SMALL, "fixed.epochs=2", "fixed.n_tasks=3",
        "sweep={seed: [0]}", f"source={{runs: [{runs['multi_head'].info.run_id}], ground_truth: true}}",
    )  # fmt: skip
    assert heads.returncode == 0, heads.stdout[-2000:] + heads.stderr[-2000:]
    return cwd, uri, client, runs, weights


def test_the_selector_picks_the_matching_runs_and_tags_them(chain):
    _, _, client, upstream, _ = chain
    probes = _trials(client, "chain42_decoders")
    assert len(probes) == 2 and all(p.info.status == "FINISHED" for p in probes)
    by_upstream = {p.data.tags["upstream_run_id"]: p for p in probes}
    assert set(by_upstream) == {upstream["multi_head"].info.run_id, upstream["random"].info.run_id}
    for run_id, probe in by_upstream.items():
        assert probe.data.params["upstream"] == run_id
        assert probe.data.tags["upstream_study"] == "chain41_multitask"
        assert probe.data.tags["upstream_family"] == "multitask"
        selector = json.loads(probe.data.tags["upstream_selector"])
        assert selector["study"] == "chain41_multitask"
        assert probe.data.metrics["reconstruction_mse"] > 0
        names = {a.path for a in client.list_artifacts(probe.info.run_id)}
        assert {"traversals.png", "reconstructions.png", "model"} <= names


def test_the_upstream_weights_are_untouched(chain):
    # The probes read the upstream runs' artifacts: nothing of theirs may be written back.
    cwd, _, client, upstream, before = chain
    for variant, run in upstream.items():
        path = client.download_artifacts(
            run.info.run_id, "model/weights.pt", str(cwd / f"after_{variant}")
        )
        assert Path(path).read_bytes() == before[variant], variant


def test_heads_on_explicit_runs_and_the_true_factors(chain):
    _, _, client, upstream, _ = chain
    probes = {p.data.tags["upstream_run_id"]: p for p in _trials(client, "chain43_heads")}
    assert set(probes) == {upstream["multi_head"].info.run_id, "ground_truth"}
    truth = probes["ground_truth"]
    assert truth.data.tags["upstream_family"] == "ground_truth"
    for key in ("rmse", "rmse_raw", "rmse_task_0", "rmse_raw_task_2"):
        assert np.isfinite(truth.data.metrics[key]), key


def test_status_names_upstreams_and_ranks_by_the_probes_own_error(chain):
    """`study status` of a probe study: each trial by its upstream's family and point (not a run
    id), ranked by the probe's own headline (reconstruction error, lower is better)."""
    cwd, _, client, _, _ = chain
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "status", "chain42_decoders", "--json"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    state = json.loads(result.stdout)
    assert state["metric"] == "reconstruction_mse"
    errors = {p.data.tags["upstream_run_id"]: p.data.metrics["reconstruction_mse"]
              for p in _trials(client, "chain42_decoders")}  # fmt: skip
    assert state["best"]["metric"] == pytest.approx(min(errors.values()))
    assert {t["upstream"] for t in state["trials"]} == {
        "multitask/variant=multi_head, seed=0", "multitask/variant=random, seed=0"
    }
    shown = subprocess.run(
        [sys.executable, "-m", "study.cli", "status", "chain42_decoders"],
        cwd=cwd, capture_output=True, text=True, timeout=120,
    ).stdout  # fmt: skip
    head = " ".join(shown.split("┏")[0].split())  # the lines above the table
    assert "best reconstruction_mse: " in head and ": upstream=multitask/variant=" in head
    # The probes' MLflow runs are named the same way.
    names = sorted(p.info.run_name.rsplit(" (", 1)[0] for p in _trials(client, "chain42_decoders"))
    assert names == [
        "upstream=multitask/variant=multi_head, seed=0",
        "upstream=multitask/variant=random, seed=0",
    ]


def test_the_report_groups_probes_by_their_upstream(chain, tmp_path):
    _, uri, _, _, _ = chain
    from analysis.results import load_runs, varying_params

    runs = load_runs(uri, "chain42_decoders")
    assert sorted(runs["params.upstream.variant"]) == ["multi_head", "random"]
    assert varying_params(runs) == ["upstream.variant"]
    heads = load_runs(uri, "chain43_heads")
    assert sorted(heads["params.upstream.family"]) == ["ground_truth", "multitask"]
    assert varying_params(heads) == ["upstream.family"]
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "report", "--study", "chain42_decoders",
         "--tracking-uri", uri, "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    table = (tmp_path / "summary.md").read_text()
    assert "upstream.variant" in table and "reconstruction_mse" in table
    assert "multi_head" in table and "random" in table
    import html

    page = html.unescape((tmp_path / "report.html").read_text())
    # The upstream's scores are said to be the upstream's, and skipped analyses say why truly.
    assert "Their own results: reconstruction_sse, reconstruction_mse." in page
    assert "(mig, dci_disentanglement, dci_completeness, dci_informativeness) are the upstream's" in page
    assert "needs a swept hyperparameter (only the upstream is swept)" in page


def _spec(*sets: str, config: str = "42_decoders.yaml"):
    return load_spec(CHAIN / config, [VIEW, *sets])


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["source.study=nope"], "source.study: no study 'nope'"),
        (["source.where={colour: red}"], "'colour' is not a param of study"),
        (["source.where={variant: one_head}"], "source.where: no finished run"),
        (
            ["source={study: chain41_multitask, pick: best, metric: nope}"],
            "source.metric: 'nope' is not logged",
        ),
        (
            ["dataset.split_seed=1"],
            "was trained on dataset.split_seed=0, this study has dataset.split_seed=1",
        ),
        (["source={runs: [0123456789abcdef0123456789abcdef]}"], "source.runs: no run"),
    ],
)
def test_bad_selectors_are_one_line(chain, sets, message):
    _, uri, _, _, _ = chain
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace("[", r"\[")) as err:
        resolve(_spec(*sets), uri)
    assert "\n" not in str(err.value)


def test_best_per_group_and_per_seed(chain):
    _, uri, _, upstream, _ = chain
    spec = resolve(
        _spec("source={study: chain41_multitask, pick: best, metric: rmse, group_by: [variant]}"),
        uri,
    )
    assert {u.run_id for u in spec.resolved_source} == {r.info.run_id for r in upstream.values()}
    spec = resolve(_spec("source={study: chain41_multitask, pick: best, metric: rmse}"), uri)
    best = min(upstream.values(), key=lambda r: r.data.metrics["rmse"])
    assert [u.run_id for u in spec.resolved_source] == [best.info.run_id]
    spec = resolve(_spec("source={study: chain41_multitask, pick: per_seed, metric: mig}"), uri)
    best = max(upstream.values(), key=lambda r: r.data.metrics["mig"])
    assert [u.run_id for u in spec.resolved_source] == [best.info.run_id]  # one seed: one run
    assert spec.n_trials == 1 and spec.grid()[0]["upstream"] == best.info.run_id


def test_a_run_without_a_saved_model_a_deleted_run_and_a_probe_are_refused(chain):
    _, uri, client, _, _ = chain
    experiment = client.get_experiment_by_name("chain41_multitask")
    bare = client.create_run(experiment.experiment_id, tags={"role": "trial"})
    try:
        client.set_terminated(bare.info.run_id, "FINISHED")
        with pytest.raises(SpecError, match="has no saved model"):
            resolve(_spec(f"source={{runs: [{bare.info.run_id}]}}"), uri)
    finally:
        client.delete_run(bare.info.run_id)  # other tests select from this study
    with pytest.raises(SpecError, match="is deleted"):
        resolve(_spec(f"source={{runs: [{bare.info.run_id}]}}"), uri)
    probe = _trials(client, "chain42_decoders")[0]
    with pytest.raises(SpecError, match="is itself a probe"):
        resolve(_spec(f"source={{runs: [{probe.info.run_id}]}}"), uri)


def test_where_matches_numbers_and_list_params(chain):
    _, uri, _, upstream, _ = chain
    spec = resolve(
        _spec("source={study: chain41_multitask, where: {lr: 1e-3, head_hidden: [300, 300, 300]}}"),
        uri,
    )
    assert {u.run_id for u in spec.resolved_source} == {r.info.run_id for r in upstream.values()}


def test_a_missing_store_is_not_created(tmp_path):
    uri = f"sqlite:///{tmp_path / 'none.db'}"
    with pytest.raises(SpecError, match="no tracking store"):
        resolve(_spec(), uri)
    assert not (tmp_path / "none.db").exists()


def test_the_cli_refuses_a_bad_source_before_ray_starts(chain):
    cwd, _, _, _, _ = chain
    result = _run(cwd, CHAIN / "42_decoders.yaml", VIEW, "source.where={variant: [one_head]}")
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and "source.where" in result.stderr
    assert "Ray" not in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("sets", "message"),
    [
        (["source=null"], "source: family 'decoder_probe' trains on an upstream"),
        (["fixed.upstream=abc"], "fixed.upstream: set by source"),
        (["source={study: x, pick: best}"], "set source.metric"),
        (["source={study: x, runs: [a]}"], "not both"),
        (["source={}"], "give a study"),
    ],
)
def test_spec_level_source_errors(sets, message):
    with pytest.raises(SpecError, match=message):
        _spec(*sets)


def test_a_hand_written_resolution_is_refused(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(CHAIN / "42_decoders.yaml"),
         "--set", "resolved_source=[{run_id: abc}]"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 2 and "resolved_source" in result.stderr


def test_a_non_probe_family_refuses_a_source():
    with pytest.raises(SpecError, match="takes no upstream"):
        load_spec(CHAIN / "41_multitask.yaml", ["source={ground_truth: true}"])
