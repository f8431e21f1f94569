from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study.space import swept_axes, to_param_space
from study.spec import SpecError, load_spec, parse_spec

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"


def _raw(**changes):
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw.update(changes)
    return raw


def test_quickstart_is_valid_and_maps_to_a_grid():
    spec = load_spec(QUICKSTART)
    assert spec.n_trials == 8 and len(spec.grid()) == 8
    space = to_param_space(spec)["params"]
    assert space["variant"] == {"grid_search": ["multi_head", "one_head", "single_task", "random"]}
    assert space["epochs"] == spec.fixed["epochs"] and space["metrics"] == ["mig", "dci"]
    assert swept_axes(spec) == ["variant", "seed"]


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"colour": 1}, "colour: Extra inputs are not permitted"),
        ({"family": "nope"}, "family: unknown family 'nope'"),
        ({"fixed": {"epochs": "ten"}}, "fixed.epochs: Input should be a valid integer"),
        ({"fixed": {"bogus": 1}}, "fixed.bogus: not a parameter of family 'multitask'"),
        ({"sweep": {"seed": []}}, "sweep axis 'seed' is empty"),
        ({"sweep": {"latent_dim": [4, "x"]}}, "sweep.latent_dim: Input should be a valid integer"),
        ({"sweep": {"variant": ["multi_head", "two_heads"]}}, "sweep.variant"),
        ({"metrics": ["mig", "sapp"]}, "unknown metric 'sapp'"),
        ({"fixed": {"n_tasks": 2, "task_index": 3}}, "task_index=3 must be < n_tasks=2"),
        ({"dataset": {"name": "dsprites", "colour": 1}}, "dataset.colour"),
        ({"resources": {"gpu": -1}}, "resources.gpu"),
        ({"name": "has space"}, "name"),
        ({"fixed": {"lr": float("inf")}}, "fixed.lr"),
        (
            {"dataset": {"name": "dsprites", "split": [0.9, 0.9, 0.9]}},
            "dataset.split: split fractions must sum to 1",
        ),
        ({"dataset": {"name": "dsprites", "split": [1.0, 0.0, 0.0]}}, "must be > 0"),
        # Sampling metrics fix one factor and vary the rest: refused on a binned / sampled view.
        (
            {
                "metrics": ["mig", "factor_vae"],
                "dataset": {"name": "dsprites", "subset": {"posX": {"bins": 3}}},
            },
            "metrics: ['factor_vae'] need the plain factor grid",
        ),
        (
            {"metrics": ["beta_vae"], "dataset": {"name": "dsprites", "n_samples": 500}},
            "unset dataset.n_samples",
        ),
        ({"fixed": {"metric_options": {"sap": {"n": 1}}}}, "'sap' is not in metrics"),
        (
            {"metrics": ["factor_vae"], "fixed": {"metric_options": {"factor_vae": {"votes": 1}}}},
            "metric_options.factor_vae.votes: unknown option",
        ),
        ({"fixed": {"metrics": ["sap"]}}, "metrics: given both at the top level"),
    ],
)
def test_spec_errors_are_one_line_naming_the_key(changes, message):
    with pytest.raises(SpecError) as info:
        parse_spec(_raw(**changes), "x.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("x.yaml: ")
    assert message in text


def test_overrides_replace_keys_and_unknown_fail():
    spec = load_spec(QUICKSTART, ["fixed.epochs=1", "sweep.seed=[3]"])
    assert spec.fixed["epochs"] == 1 and spec.sweep["seed"] == [3]
    with pytest.raises(SpecError, match="fixed.nope"):
        load_spec(QUICKSTART, ["fixed.nope=1"])
    with pytest.raises(SpecError, match="KEY=VALUE"):
        load_spec(QUICKSTART, ["fixed.epochs"])


def test_missing_and_invalid_yaml(tmp_path):
    with pytest.raises(SpecError, match="not found"):
        load_spec(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="invalid YAML"):
        load_spec(bad)


@pytest.mark.parametrize(
    "override",
    [
        "fixed.latent_dim=ten",
        "family=nope",
        "sweep.seed=[]",
        "dataset.subset.posZ=1",
        "dataset.options.path=/nonexistent/dsprites.npz",
        "dataset.name=mnist",
    ],
)
def test_cli_exits_2_with_one_line_and_writes_nothing(override, tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(QUICKSTART), "--set", override],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert not (tmp_path / "mlruns.db").exists() and not (tmp_path / "ray_results").exists()


@pytest.mark.parametrize("path", sorted((QUICKSTART.parent).rglob("*.yaml")), ids=str)
def test_every_shipped_config_is_valid(path):
    spec = load_spec(path)
    assert spec.n_trials >= 1


def test_show_data_writes_a_png(tmp_path):
    out = tmp_path / "shapes.png"
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "show-data", "shapes3d", "--out", str(out),
         "--columns", "4"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.stat().st_size > 5000
    bad = subprocess.run(
        [sys.executable, "-m", "study.cli", "show-data", "mpi3d", "--path", str(tmp_path / "x.npz")],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert bad.returncode == 2 and "not found" in bad.stderr and "x.npz" in bad.stderr


def test_resume_finds_only_this_studys_launches(tmp_path):
    from study.launch import latest_experiment

    for name in ("a_20260101-000000", "a_20260102-000000", "a_b_20260103-000000", "a_notes"):
        (tmp_path / name).mkdir()
    assert latest_experiment(tmp_path, "a").name == "a_20260102-000000"
    assert latest_experiment(tmp_path, "a_b").name == "a_b_20260103-000000"
    assert latest_experiment(tmp_path, "c") is None
