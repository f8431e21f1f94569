"""Search spaces, Optuna + ASHA, data axes and storage URIs: the spec rules without Ray, then real
studies on a local Ray (and on a three-node ``ray.cluster_utils`` cluster) into real MLflow stores."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml
from mlflow.tracking import MlflowClient

from study import space
from study.journal import Journal, trial_folders
from study.spec import SpecError, parse_spec
from study.storage import storage_path

CONFIGS = Path(__file__).parents[2] / "configs"
TINY_SUBSET = {"scale": [0, 5], "orientation": 0, "posX": "0:32:8", "posY": "0:32:8"}  # 96 images


def _tiny(**changes) -> dict:
    raw = {
        "name": "search_case",
        "family": "multitask",
        "dataset": {"name": "dsprites", "subset": dict(TINY_SUBSET)},
        "fixed": {
            "variant": "multi_head",
            "n_tasks": 2,
            "latent_dim": 4,
            "epochs": 3,
            "batch_size": 16,
            "metric_train_points": 60,
            "metric_test_points": 20,
            "umap_points": 20,
            "pictures": False,
        },  # fmt: skip
        "metrics": ["mig"],
        "sweep": {"seed": [0, 1]},
        "resources": {"cpu": 1, "gpu": 0},
    }
    raw.update(changes)
    return raw


# -- the spec, without Ray -------------------------------------------------------------------------
def test_every_axis_kind_parses_and_draws_within_its_bounds():
    spec = parse_spec(
        _tiny(
            sweep={
                "lr": {"loguniform": [1e-4, 1e-2]},
                "latent_dim": {"randint": [3, 7]},
                "batch_size": {"choice": [8, 16]},
                "n_tasks": {"grid": [1, 2]},
                "seed": [0, 1, 2],
            },
            search={"num_samples": 40, "seed": 3},
        )
    )
    assert [a.name for a in spec.grid_axes] == ["n_tasks", "seed"]
    assert spec.n_trials == 40 * 2 * 3 and len(spec.grid()) == spec.n_trials
    points = spec.sampled_points()
    assert points == spec.sampled_points()  # seeded: a resume draws the same points
    lrs = np.array([p["lr"] for p in points])
    assert lrs.min() >= 1e-4 and lrs.max() <= 1e-2
    # log-uniform: about as many draws below the geometric middle (1e-3) as above it
    assert 10 <= int((lrs < 1e-3).sum()) <= 30
    assert {p["latent_dim"] for p in points} <= {3, 4, 5, 6} and {
        p["batch_size"] for p in points
    } == {8, 16}
    # each drawn point is crossed with every grid combination (seeds above all)
    seeds_per_point = defaultdict(set)
    for params in spec.grid():
        seeds_per_point[params["lr"]].add((params["n_tasks"], params["seed"]))
    assert all(len(s) == 6 for s in seeds_per_point.values()) and len(seeds_per_point) == 40
    # an extension draws new points, continuing the same stream
    assert spec.sampled_points(offset=40)[0] not in points
    param_space = space.to_param_space(spec)["params"]
    assert len(param_space[space.SAMPLED_KEY]["grid_search"]) == 40
    assert param_space["seed"] == {"grid_search": [0, 1, 2]}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"sweep": {"lr": {"normal": [0, 1]}}}, "sweep axis 'lr': expected a list"),
        ({"sweep": {"lr": {"uniform": [1e-2, 1e-4]}}}, "needs finite low < high"),
        ({"sweep": {"lr": {"loguniform": [0, 1e-2]}}}, "needs 0 < low"),
        ({"sweep": {"latent_dim": {"randint": [2.5, 6]}}}, "randint: needs integer"),
        ({"sweep": {"lr": {"uniform": [1e-4, 1e-2]}}}, "set search.num_samples"),
        ({"sweep": {"seed": {"choice": [0, 1]}}}, "seeds are crossed with every point"),
        (
            {"search": {"algorithm": "optuna", "metric": "rmse", "mode": "min", "num_samples": 2}},
            "needs a sampled axis",
        ),
        ({"search": {"num_samples": 4}}, "every axis is a grid"),
        (
            {"sweep": {"lr": {"uniform": [1e-4, 1e-2]}}, "search": {"algorithm": "optuna"}},
            "needs search.metric",
        ),
        (
            {
                "sweep": {"lr": {"uniform": [1e-4, 1e-2]}},
                "search": {"algorithm": "optuna", "metric": "gaussian_total_correlation"},
            },
            "search.mode: set min or max",
        ),  # fmt: skip
        ({"sweep": {"dataset.n_samples": {"randint": [50, 90]}}}, "data axes are categorical"),
        ({"sweep": {"dataset.colour": ["red"]}}, "sweep.dataset.colour: not a dataset key"),
        ({"sweep": {"dataset.subset": ["v9"]}}, "unknown named subset 'v9'"),
        ({"sweep": {"dataset.subset": [{"hue": 1}]}}, "unknown factor 'hue'"),
        ({"sweep": {"lr": {"uniform": [-1.0, 1e-2]}}, "search": {"num_samples": 2}}, "sweep.lr"),
        # found in review: each of these passed and failed only after Ray started
        (
            {
                "sweep": {"lr": {"uniform": [1e-4, 1e-2]}},
                "search": {"algorithm": "optuna", "metric": "rmse"},
            },
            "needs search.num_samples",
        ),  # fmt: skip
        (
            {"sweep": {"latent_dim": {"uniform": [2, 8]}}, "search": {"num_samples": 2}},
            "use randint",
        ),
        (
            {"sweep": {"latent_dim": {"choice": [4, 8]}}, "search": {"num_samples": 3}},
            "with replacement",
        ),
        ({"search": {"metric": "val/rmse"}}, "reported during training"),
        ({"search": {"seed": -1}}, "search.seed"),
        (
            {
                "sweep": {"lr": {"uniform": [1e-4, 1e-2]}},
                "search": {"num_samples": 2, "scheduler": {"metric": "rmse", "mode": "min"}},
            },
            "ASHA compares a metric every report holds",
        ),  # fmt: skip
        (
            {
                "sweep": {"lr": {"uniform": [1e-4, 1e-2]}},
                "search": {
                    "algorithm": "optuna",
                    "metric": "rmse",
                    "num_samples": 2,
                    "storage": "not a url",
                },
            },
            "not a database URL",
        ),  # fmt: skip
        ({"search": {"metric": "dci_disentanglement"}}, "which the trials do not compute"),
        ({"fixed": {**_tiny()["fixed"], "device": "auto", "precision": "fp16"}}, "needs a GPU"),
    ],
)
def test_a_bad_search_is_refused_in_one_line_naming_the_key(changes, message):
    with pytest.raises(SpecError) as err:
        parse_spec(_tiny(**changes), "cfg.yaml")
    assert message in str(err.value) and "\n" not in str(err.value)


def test_the_cli_refuses_a_bad_search_with_exit_2_before_ray(tmp_path):
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump(_tiny(sweep={"lr": {"uniform": [1e-4, 1e-2]}})))
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 2
    assert (
        "set search.num_samples" in result.stderr and len(result.stderr.strip().splitlines()) == 1
    )
    assert not (tmp_path / "mlruns.db").exists()  # nothing recorded


def test_optuna_space_sends_mappings_by_index():
    spec = parse_spec(
        _tiny(
            sweep={
                "dataset.subset": {"choice": [dict(TINY_SUBSET), "quickstart"]},
                "lr": {"loguniform": [1e-4, 1e-2]},
                "seed": [0, 1],
            },
            search={"algorithm": "optuna", "metric": "rmse", "mode": "min", "num_samples": 2},
        )
    )
    domains, by_index = space.tune_domains(spec.sampled_axes)
    assert by_index == {"dataset.subset": [TINY_SUBSET, "quickstart"]}
    assert domains["dataset.subset"].categories == [0, 1]
    assert len(spec.views()) == 2 and spec.n_trials == 4


@pytest.mark.parametrize(
    ("storage", "message"),
    [
        ("file:///etc/hostname/results", "not a writable folder"),
        ("nosuchscheme://bucket/x", "not a storage URI pyarrow can open"),
    ],
)
def test_a_storage_that_cannot_be_written_is_refused(storage, message):
    with pytest.raises(SpecError, match=message):
        storage_path(storage).check_writable()


def test_a_file_uri_is_the_local_folder_it_names(tmp_path):
    as_uri = storage_path(f"file://{tmp_path}/results")
    as_path = storage_path(tmp_path / "results")
    assert as_uri == as_path and as_uri.is_local and as_uri.uri == str(tmp_path / "results")
    (as_uri / "a_20260101-000000").mkdir()
    (as_uri / "a_20260101-000000" / "x.json").write_text("{}")
    assert [p.name for p in as_path.glob("a_*")] == ["a_20260101-000000"]
    assert (as_path / "a_20260101-000000" / "x.json").read_text() == "{}"


# -- real studies ----------------------------------------------------------------------------------
def _study(cwd: Path, *args: str, code: int = 0) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", *args],
        cwd=cwd, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert result.returncode == code, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _trial_runs(client: MlflowClient, study: str) -> list:
    experiment = client.get_experiment_by_name(study)
    return client.search_runs([experiment.experiment_id], filter_string="tags.role = 'trial'")


OPTUNA = _tiny(
    name="optuna_case",
    fixed={**_tiny()["fixed"], "epochs": 4},
    sweep={"lr": {"loguniform": [1e-4, 3e-2]}, "seed": [0, 1]},
    search={
        "algorithm": "optuna",
        "metric": "rmse",
        "mode": "min",
        "num_samples": 3,
        "startup_points": 2,
        "scheduler": {
            "metric": "val/rmse",
            "mode": "min",
            "grace_period": 1,
            "reduction_factor": 2,
        },
    },  # fmt: skip
    max_concurrent_trials=2,
)


@pytest.fixture(scope="module")
def optuna_study(tmp_path_factory) -> Path:
    cwd = tmp_path_factory.mktemp("optuna")
    (cwd / "optuna.yaml").write_text(yaml.safe_dump(OPTUNA))
    _study(cwd, "run", "optuna.yaml", "--num-cpus", "2")
    return cwd


@pytest.mark.ray
@pytest.mark.slow
def test_optuna_asha_crosses_seeds_and_records_stopped_trials(optuna_study):
    client = MlflowClient(f"sqlite:///{optuna_study / 'mlruns.db'}")
    runs = _trial_runs(client, "optuna_case")
    assert len(runs) == 3 * 2
    seeds_by_lr = defaultdict(set)
    for run in runs:
        seeds_by_lr[run.data.params["lr"]].add(run.data.params["seed"])
    assert len(seeds_by_lr) == 3 and all(s == {"0", "1"} for s in seeds_by_lr.values())
    for run in runs:
        assert 1e-4 <= float(run.data.params["lr"]) <= 3e-2
        if run.data.tags.get("stopped"):  # stopped by ASHA: KILLED, tagged, and said so
            assert run.info.status == "KILLED" and run.data.tags["stopped"] == "asha"
            assert "stopped early by the scheduler" in run.data.tags["end_reason"]
            assert "rmse" not in run.data.metrics
        else:
            assert run.info.status == "FINISHED" and math.isfinite(run.data.metrics["rmse"])
    # 3 points x 2 seeds over 5 reports at grace 1, factor 2: ASHA stops at least one trial
    stopped = [r for r in runs if r.data.tags.get("stopped")]
    assert 1 <= len(stopped) < len(runs)
    # final tables leave stopped trials out by default
    from analysis.results import load_runs

    table = load_runs(f"sqlite:///{optuna_study / 'mlruns.db'}", "optuna_case")
    assert len(table) == len(runs) - len(stopped)
    status = json.loads(
        _study(optuna_study, "status", "optuna_case", "--json").stdout
    )  # the study's own metric and direction
    assert status["counts"]["STOPPED"] == len(stopped) and status["metric"] == "rmse"
    finished = [r.data.metrics["rmse"] for r in runs if not r.data.tags.get("stopped")]
    assert status["best"]["metric"] == pytest.approx(min(finished))
    # each trial is named by its id and its point, as its MLflow run has them
    lr_by_id = {r.data.tags["trial_id"]: float(r.data.params["lr"]) for r in runs}
    assert {t["trial_id"]: t["point"]["lr"] for t in status["trials"]} == lr_by_id
    shown = "".join(_study(optuna_study, "status", "optuna_case").stdout.split())  # rich wraps
    best = status["best"]
    assert f"({best['trial_id']}:lr={best['point']['lr']:.3g}," in shown


@pytest.mark.ray
@pytest.mark.slow
def test_extend_adds_new_points_warm_started_from_the_measured_ones(optuna_study):
    from study.records import launches
    from study.search import _measured_points

    storage = storage_path(optuna_study / "ray_results")
    first = launches(storage, "optuna_case")
    spec = parse_spec(OPTUNA)
    points, rewards = _measured_points(spec, first, {})
    client = MlflowClient(f"sqlite:///{optuna_study / 'mlruns.db'}")
    by_lr = defaultdict(list)
    for run in _trial_runs(client, "optuna_case"):
        if run.info.status == "FINISHED":
            by_lr[float(run.data.params["lr"])].append(run.data.metrics["rmse"])
    # what Optuna is told: each finished point once, with the mean over its finished seeds
    assert sorted(p["params/lr"] for p in points) == pytest.approx(sorted(by_lr))
    for point, reward in zip(points, rewards, strict=True):
        assert reward == pytest.approx(
            np.mean(by_lr[min(by_lr, key=lambda v: abs(v - point["params/lr"]))])
        )

    changed = yaml.safe_load((optuna_study / "optuna.yaml").read_text())
    changed["fixed"]["epochs"] = 5
    (optuna_study / "changed.yaml").write_text(yaml.safe_dump(changed))
    refused = _study(optuna_study, "run", "changed.yaml", "--extend", code=2)
    assert "fixed.epochs differs" in refused.stderr

    _study(
        optuna_study, "run", "optuna.yaml", "--extend", "--num-cpus", "2",
        "--set", "search.num_samples=1",
    )  # fmt: skip
    runs = _trial_runs(client, "optuna_case")
    assert len(runs) == 3 * 2 + 1 * 2  # one more point, both seeds; nothing rerun
    assert len(launches(storage, "optuna_case")) == 2
    assert len({r.data.params["lr"] for r in runs}) == 4
    # status of the extension: its own trials, and the best over the whole study
    status = json.loads(_study(optuna_study, "status", "optuna_case", "--json").stdout)
    assert status["extends"] == [first[0].name] and status["n_trials"] == 2
    finished = [r.data.metrics["rmse"] for r in runs if r.info.status == "FINISHED"]
    assert status["best_overall"]["metric"] == pytest.approx(min(finished))


@pytest.mark.ray
@pytest.mark.slow
def test_an_interrupted_optuna_launch_resumes_its_points_and_asks_the_rest(optuna_study):
    """Ctrl-C in an extension of two points, then `study resume`: each point ends with both
    seeds, nothing is run twice, and no Tune state is read (``study.resume``)."""
    import signal
    import time

    from study.records import launches

    client = MlflowClient(f"sqlite:///{optuna_study / 'mlruns.db'}")
    before = {r.info.run_id for r in _trial_runs(client, "optuna_case")}
    process = subprocess.Popen(
        [sys.executable, "-m", "study.cli", "run", "optuna.yaml", "--extend", "--num-cpus", "2",
         "--set", "search.num_samples=2"],
        cwd=optuna_study, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and process.poll() is None:
        runs = [r for r in _trial_runs(client, "optuna_case") if r.info.run_id not in before]
        if any(client.get_metric_history(r.info.run_id, "train/loss") for r in runs):
            process.send_signal(signal.SIGINT)
            break
        time.sleep(0.2)
    out, err = process.communicate(timeout=300)
    assert process.returncode == 130, out[-2000:] + err[-2000:]
    results = optuna_study / "ray_results"
    extension = launches(storage_path(results), "optuna_case")[-1]
    status = json.loads(_study(optuna_study, "status", "optuna_case", "--json").stdout)
    assert status["launch_status"] == "KILLED"

    _study(optuna_study, "resume", "optuna_case", "--num-cpus", "2")
    new = [r for r in _trial_runs(client, "optuna_case") if r.info.run_id not in before]
    assert len(new) == 2 * 2 and len({r.data.tags["trial_id"] for r in new}) == 4
    seeds_by_lr = defaultdict(list)
    for run in new:
        seeds_by_lr[run.data.params["lr"]].append(run.data.params["seed"])
        stopped = run.data.tags.get("stopped") == "asha"
        assert run.info.status == ("KILLED" if stopped else "FINISHED"), run.data.tags
    assert sorted(map(sorted, seeds_by_lr.values())) == [["0", "1"], ["0", "1"]]
    assert launches(storage_path(results), "optuna_case")[-1] == extension  # resumed, not new
    status = json.loads(_study(optuna_study, "status", "optuna_case", "--json").stdout)
    assert status["launch_status"] == "FINISHED" and status["n_trials"] == 4


@pytest.mark.ray
@pytest.mark.slow
def test_data_axes_prepare_each_view_once_and_trials_train_on_theirs(
    tmp_path, tmp_mlflow, monkeypatch
):
    import ray

    from study.launch import run_study
    from trainables.families.multitask import MultiTask

    prepared = []
    original = MultiTask.prepare_data  # bound to the class

    def counting(cls, dataset, configs):
        prepared.append(json.dumps(dataset.subset, sort_keys=True))
        return original(dataset, configs)

    monkeypatch.setattr(MultiTask, "prepare_data", classmethod(counting))
    views = [dict(TINY_SUBSET), {**TINY_SUBSET, "shape": 0}]
    spec = parse_spec(_tiny(name="views_case", sweep={"dataset.subset": views, "seed": [0, 1]}))
    storage = f"file://{tmp_path}/results"
    try:
        result = run_study(
            spec, config_text="", tracking_uri=tmp_mlflow, storage=storage, num_cpus=2, verbose=0
        )
    finally:
        ray.shutdown()
    assert result.n_finished == 4 and not result.interrupted
    assert sorted(prepared) == sorted(json.dumps(v, sort_keys=True) for v in views)
    runs = _trial_runs(MlflowClient(tmp_mlflow), "views_case")
    shapes = sorted(r.data.params.get("dataset.subset.shape", "all") for r in runs)
    assert shapes == ["0", "0", "all", "all"]  # each trial logs its own view
    assert all(r.data.tags["data_mapped"] == "true" for r in runs)
    # the folder the URI names holds the launch; status reads it through the URI
    assert len(list((tmp_path / "results").glob("views_case_*"))) == 1
    from study.status import study_status

    assert study_status(storage, "views_case").counts["FINISHED"] == 4


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_on_a_three_node_cluster_spreads_trials_and_maps_data_per_node(
    tmp_path, tmp_mlflow
):
    import ray
    from ray.cluster_utils import Cluster

    from study.launch import run_study

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    workers = [cluster.add_node(num_cpus=1) for _ in range(2)]
    try:
        cluster.wait_for_nodes()
        spec = parse_spec(_tiny(name="cluster_case", sweep={"seed": [0, 1]}))
        result = run_study(
            spec, config_text="", tracking_uri=tmp_mlflow, storage=f"file://{tmp_path}/results",
            address=cluster.address, verbose=0,
        )  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert result.n_finished == 2
    runs = _trial_runs(MlflowClient(tmp_mlflow), "cluster_case")
    nodes = {r.data.tags["ray_node"] for r in runs}
    # one CPU per worker and none on the head: the two trials ran on the two workers at once
    assert nodes == {w.node_id for w in workers}
    assert all(r.data.tags["data_mapped"] == "true" for r in runs)
    experiment = storage_path(tmp_path / "results")
    launch = experiment.glob("cluster_case_*")[0]
    assert len(trial_folders(launch.fs, launch.path)) == 2
    for folder in trial_folders(launch.fs, launch.path):
        assert Journal(launch.fs, folder).records()[-1]["op"] == "end"


def test_an_optuna_study_with_storage_is_kept_there(tmp_path):
    import optuna

    from study.search import search_setup

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    spec = parse_spec(
        _tiny(
            sweep={"lr": {"loguniform": [1e-4, 1e-2]}, "seed": [0, 1]},
            search={"algorithm": "optuna", "metric": "rmse", "num_samples": 3, "storage": url},
        )
    )
    setup = search_setup(spec, [])
    assert setup.num_samples == 3 * 2 and setup.grid == ({"seed": 0}, {"seed": 1})
    # Tune hands the searcher its space at the start; the Optuna study then lives in the storage
    setup.algorithm.set_search_properties(None, None, setup.param_space)
    suggested = setup.algorithm.suggest("trial_1")
    assert 1e-4 <= suggested["params"]["lr"] <= 1e-2 and suggested["__trial_index__"] == 0
    stored = optuna.load_study(study_name="search_case", storage=url)
    assert stored.direction == optuna.study.StudyDirection.MINIMIZE and len(stored.trials) == 1


def test_an_optuna_point_without_grid_axes_ignores_the_per_epoch_reports():
    from study.search import search_setup

    spec = parse_spec(
        _tiny(
            sweep={"lr": {"loguniform": [1e-4, 1e-2]}},
            search={"algorithm": "optuna", "metric": "rmse", "num_samples": 2},
        )
    )
    setup = search_setup(spec, [])
    setup.algorithm.set_search_properties(None, None, setup.param_space)
    setup.algorithm.suggest("t1")
    # an epoch report holds val/rmse, not the final rmse: the bare OptunaSearch raised KeyError
    setup.algorithm.on_trial_result("t1", {"val/rmse": 0.9, "progress": 1})
    setup.algorithm.on_trial_complete("t1", {"rmse": 0.8})
    assert setup.num_samples == 2 and setup.grid == ({},)
