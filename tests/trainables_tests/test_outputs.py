"""Families declare what they report (``Trainer.outputs`` / ``pictures``): every family reports
only what it declares, directions resolve from the declarations (exact, prefix, metric prefix,
sampled) and the metric registry knows no family's outputs, and the declarations travel with a
run (tag, launch plan) into analysis, ``study status`` and the spec's defaults."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from mlflow.utils.validation import MAX_TAG_VAL_LENGTH

from analysis.report import ordered
from analysis.results import declared_outputs, load_runs, main_metrics
from study.records import launch_plan
from study.spec import SpecError, parse_spec
from study.tracking import TrackingInfo, run_record
from trainables import FAMILIES, LocalContext, Trainer, get_family
from trainables.core.outputs import TAG_LIMIT, Declared, Output, declarations, direction
from trainables.metrics import METRICS, higher_is_better
from trainables.testing import TINY_VIEW, check_outputs, tiny_config, tiny_data

ROOT = Path(__file__).resolve().parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """The tiny data and a saved tiny upstream for the probes, made once."""
    return tiny_data("task_probe", tmp_path_factory.mktemp("shared"))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_every_family_reports_only_what_it_declares(name, shared, tmp_path):
    torch.set_num_threads(1)
    family = get_family(name)
    data, upstream = shared
    if not family.trainer.is_probe:
        upstream = None
        data = family.prepare_data(TINY_VIEW, [tiny_config(family)])
    cfg = tiny_config(family, upstream, metrics=["mig"])  # the family's own outputs, one metric
    ctx = LocalContext(tmp_path)
    final = family.fit(cfg, data, ctx)
    check_outputs(family, final, ctx.reports)
    assert len(family.declared.to_tag()) <= TAG_LIMIT


def test_check_outputs_refuses_undeclared_and_never_reported_outputs():
    class Declaring(Trainer):
        name = "declaring"
        outputs = (Output("error", False), Output("part_*", True, detail=True),
                   Output("val/error", False, curve=True))  # fmt: skip

    final = {"epoch": 1.0, "mig": 0.1, "mig_sampled": 0.1, "metric_seconds_mig": 2.0,
             "error": 0.3, "part_a": 0.5}  # fmt: skip
    check_outputs(Declaring, final, [{"val/error": 1.0}])
    with pytest.raises(AssertionError, match=r"reports \['surprise'\]"):
        check_outputs(Declaring, {**final, "surprise": 1.0}, [{"val/error": 1.0}])
    with pytest.raises(AssertionError, match="declares 'part_\\*' but never reports it"):
        check_outputs(Declaring, {"error": 0.3}, [{"val/error": 1.0}])
    with pytest.raises(AssertionError, match="declares 'val/error'"):
        check_outputs(Declaring, final, [])


def test_directions_exact_then_longest_prefix_then_metric_prefix_then_registry():
    declared = Declared((
        Output("score", True), Output("loss", False), Output("reference", None),
        Output("part_*", True), Output("part_error_*", False),
        Output.metric_prefix("converted_"), Output("converted_accuracy_*", True),
    ))  # fmt: skip
    assert declared.direction("loss") is False and declared.direction("reference") is None
    assert declared.direction("part_x") is True and declared.direction("part_error_x") is False
    assert declared.direction("converted_mig") is True  # the metric's own direction
    assert declared.direction("converted_factor_vae_active_dims") is None  # a count, as the metric
    assert declared.direction("converted_accuracy_shape") is True  # the longer prefix wins
    assert declared.direction("converted_nothing") is None
    assert declared.direction("loss_sampled") is False  # a sample's score: its mean's direction
    assert declared.direction("dci_disentanglement") is True  # not declared: the registry's
    assert declared.direction("unknown") is None
    assert direction("loss", declared.outputs) is False and direction("mig") is True
    with pytest.raises(ValueError):
        Output("a*b", True)
    with pytest.raises(ValueError):
        Output("exact", None, of_metrics=True)


def test_the_metric_registry_knows_no_family_output():
    multitask, modular = get_family("multitask").declared, get_family("modular_ae").declared
    for name in ("rmse", "rmse_task_0", "reconstruction_mse", "relation_accuracy",
                 "converted_mig", "prior_self_accuracy"):  # fmt: skip
        assert higher_is_better(name) is None, name
    assert direction("rmse", multitask) is False and direction("rmse_task_2", multitask) is False
    assert modular.direction("relation_accuracy_shape_plus1") is True
    assert modular.direction("converted_dci_completeness") is True
    assert modular.direction("relation_chance") is None  # a reference, not a score
    assert modular.is_detail("relation_threshold") and modular.is_detail("converted_accuracy_scale")
    assert not modular.is_detail("converted_accuracy")


def _string_constants(path: Path) -> set[str]:
    return {
        node.value
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }


# The papers' findings and reproductions name the metrics their claims are about; nothing else does.
PAPERS = {"findings.py", "findings_modular.py", "findings_locatello.py", "reproduction.py",
          "reproduction_locatello.py", "paper_values.py"}  # fmt: skip


def test_metrics_and_analysis_name_no_family_output():
    metric_outputs = {o for spec in METRICS.values() for o in spec.outputs}
    declared = Declared.merge(get_family(name).declared for name in sorted(FAMILIES))
    # final outputs (a validation loss, ``val/loss``, is the report's generic learning curve)
    own = [o for o in declared.outputs if o.name not in metric_outputs and not o.curve]
    paths = [
        ROOT / "trainables" / "metrics" / "__init__.py",
        ROOT / "trainables" / "metrics" / "selection.py",
    ]
    paths += [p for p in sorted((ROOT / "analysis").glob("*.py")) if p.name not in PAPERS]
    for path in paths:
        named = {c for c in _string_constants(path) for o in own if o.matches(c) or c == o.prefix}
        assert not named, f"{path.relative_to(ROOT)} names family outputs {sorted(named)}"


def test_pictures_merge_keeps_each_familys_order():
    vae, modular = get_family("vae").declared, get_family("modular_ae").declared
    merged = Declared.merge([vae, get_family("multitask").declared, modular])
    assert merged.pictures == ("relations.png", "traversals.png", "reconstructions.png", "umap.png")
    assert Declared.merge([modular, vae]).pictures == merged.pictures


def test_the_tag_fits_mlflow_and_round_trips():
    assert TAG_LIMIT == MAX_TAG_VAL_LENGTH
    declared = get_family("modular_ae").declared
    assert Declared.from_tag(declared.to_tag()) == declared
    assert Declared.from_dict(declarations(declared.outputs, declared.pictures)) == declared
    assert Declared.from_tag("not json") == Declared() == Declared.from_dict({"outputs": [1]})
    later = {"outputs": [{"name": "rmse", "higher_is_better": False, "unit": "px"}]}
    assert Declared.from_dict(later).direction("rmse") is False  # a later version's extra keys
    many = Declared(tuple(Output(f"o{i}_*", True, description="x" * 80) for i in range(80)))
    assert len(many.to_tag()) <= TAG_LIMIT and "description" not in many.to_tag()


def test_a_tag_with_the_metrics_directions_answers_without_the_registry():
    """A launch records every registered metric output's direction in the runs' tag: a reader
    (``study best``) ranks by it without importing the metric registry (seconds of imports)."""
    import subprocess
    import sys

    from trainables.metrics import metric_directions

    recorded = metric_directions()
    assert recorded["mig"] is True and recorded["factor_vae_active_dims"] is None
    assert set(recorded) == {o for spec in METRICS.values() for o in spec.outputs}
    tag = get_family("vae").declared.with_metric_directions(recorded).to_tag()
    assert len(tag) <= TAG_LIMIT
    code = (
        "import sys, json\n"
        "from trainables.core.outputs import Declared\n"
        "d = Declared.from_tag(sys.stdin.read())\n"
        "names = ['mig', 'mig_sampled', 'dci_disentanglement', 'gaussian_total_correlation',"
        " 'reconstruction_loss']\n"
        "print(json.dumps([d.direction(n) for n in names]))\n"
        "print('catalog' if 'trainables.metrics.catalog' in sys.modules else 'no registry')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], input=tag, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    answers, loaded = out.stdout.strip().splitlines()
    assert json.loads(answers) == [True, True, True, None, False]
    assert loaded == "no registry"
    merged = Declared.merge([Declared.from_tag(tag), get_family("multitask").declared])
    assert dict(merged.metric_directions) == recorded


def _trial_run(client, experiment, info, family, metrics, tagged=True):
    tags = run_record(info, f"t-{len(metrics)}-{tagged}", "trial", {"seed": 0})["tags"]
    if not tagged:
        del tags["outputs"]
    tags["family"] = family
    run = client.create_run(experiment, tags=tags)
    for key, value in metrics.items():
        client.log_metric(run.info.run_id, key, value)
    client.set_terminated(run.info.run_id, "FINISHED")


def test_a_runs_tag_round_trips_into_analysis(tmp_mlflow):
    client = MlflowClient(tmp_mlflow)
    experiment = client.create_experiment("toy")
    # A family unknown to this process: only its runs' tag says what rmse is.
    mine = Declared(
        (Output("rmse", False, primary=True), Output("rmse_task_*", False, detail=True))
    )
    info = TrackingInfo(tmp_mlflow, experiment, "p", "toy", "mine", {}, outputs=mine.to_tag())
    _trial_run(
        client, experiment, info, "not.a:family", {"rmse": 0.2, "rmse_task_0": 0.3, "mig": 0.1}
    )
    # Logged before the tag: the family registered under its name declares for it.
    _trial_run(client, experiment, info, "modular_ae", {"relation_accuracy": 0.8}, tagged=False)
    runs = load_runs(tmp_mlflow, "toy")
    declared = declared_outputs(runs)
    assert declared.direction("rmse") is False and declared.direction("relation_accuracy") is True
    assert main_metrics(runs) == ["mig", "relation_accuracy", "rmse"]  # rmse_task_0: a detail
    assert ordered(main_metrics(runs), declared)[:2] == ["relation_accuracy", "rmse"]
    assert declared_outputs(pd.DataFrame({"metrics.mig": [0.1]})) == Declared()


def test_status_plan_and_spec_defaults_take_the_familys_directions():
    raw = yaml.safe_load(QUICKSTART.read_text())  # family: multitask
    raw["question"] = {"metrics": ["rmse", "mig"]}
    raw["search"] = {"metric": "rmse"}
    spec = parse_spec(raw)
    assert spec.search.mode == "min"  # the family declares rmse lower-is-better
    plan = json.loads(json.dumps(launch_plan(spec, get_family(spec.family).declared)))
    assert Declared.from_dict(plan["outputs"]).direction("rmse") is False
    raw["family"] = "vae"  # declares no rmse: the question has no direction
    raw.pop("search"), raw["fixed"].clear()
    with pytest.raises(SpecError, match="question: metrics: 'rmse' is not a final metric"):
        parse_spec(raw)
