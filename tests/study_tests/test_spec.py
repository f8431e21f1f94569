from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from study.space import swept_axes, to_param_space
from study.spec import SpecError, apply_overrides, load_spec, parse_spec

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"


def _raw(**changes):
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw.update(changes)
    return raw


def test_quickstart_is_valid_and_maps_to_a_grid():
    spec = load_spec(QUICKSTART)
    n_tasks, seeds = spec.fixed["n_tasks"], spec.sweep["seed"]
    # the single-task baseline is one model per task (the paper's Table 5), the rest one each
    assert spec.n_trials == (3 + n_tasks) * len(seeds) and len(spec.grid()) == spec.n_trials
    space = to_param_space(spec)["params"]
    combos = space["__grid__"]["grid_search"]
    assert "variant" not in space and len(combos) == spec.n_trials
    single = [c for c in combos if c["variant"] == "single_task"]
    assert sorted((c["seed"], c["task_index"]) for c in single) == [
        (s, t) for s in seeds for t in range(n_tasks)
    ]
    assert all("task_index" not in c for c in combos if c["variant"] != "single_task")
    assert space["epochs"] == spec.fixed["epochs"] and space["metrics"] == ["mig", "dci"]
    assert swept_axes(spec) == ["variant", "seed", "task_index"]


def test_a_pinned_task_index_trains_one_single_task_model():
    spec = parse_spec(_raw(fixed={**_raw()["fixed"], "task_index": 1}))
    assert spec.n_trials == 4 * len(spec.sweep["seed"]) and not spec.expanded
    assert to_param_space(spec)["params"]["variant"]["grid_search"][2] == "single_task"


def test_single_task_expands_over_each_swept_task_count():
    raw = _raw(sweep={"variant": ["multi_head", "single_task"], "n_tasks": [2, 3], "seed": [0]})
    spec = parse_spec(raw)
    got = [(c["variant"], c["n_tasks"], c.get("task_index")) for c in spec.grid_combinations()]
    assert got == [
        ("multi_head", 2, None), ("multi_head", 3, None),
        ("single_task", 2, 0), ("single_task", 2, 1),
        ("single_task", 3, 0), ("single_task", 3, 1), ("single_task", 3, 2),
    ]  # fmt: skip
    assert spec.n_trials == 7 and spec.expanded_keys == ["task_index"]


def test_a_family_without_expansion_keeps_the_product_grid():
    spec = load_spec(QUICKSTART.parent / "smoke" / "vae.yaml")
    assert not spec.expanded and spec.n_grid == len(spec.grid())


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


@pytest.mark.parametrize(
    "path",
    sorted(p for p in QUICKSTART.parent.rglob("*.yaml") if "reproduce" not in p.parts),  # chains
    ids=str,
)
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
    from study.records import latest_experiment

    for name in ("a_20260101-000000", "a_20260102-000000", "a_b_20260103-000000", "a_notes"):
        (tmp_path / name).mkdir()
    assert latest_experiment(tmp_path, "a").name == "a_20260102-000000"
    assert latest_experiment(tmp_path, "a_b").name == "a_b_20260103-000000"
    assert latest_experiment(tmp_path, "c") is None


@pytest.mark.parametrize(
    ("text", "words"),
    [("!!timestamp nope", "malformed type"), ("[" * 10_000, "nested too deeply"),
     ("!!int x", "malformed type")],  # fmt: skip
)
def test_a_malformed_override_is_named_in_words_not_python_names(text, words):
    with pytest.raises(SpecError) as err:
        apply_overrides({"fixed": {}}, [f"fixed.epochs={text}"], "x.yaml")
    message = str(err.value)
    assert "--set fixed.epochs" in message and words in message and "\n" not in message
    assert not any(name in message for name in ("RecursionError", "AttributeError", "ValueError"))
