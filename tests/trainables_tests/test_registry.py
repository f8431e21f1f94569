"""Open registries: a family, dataset or metric from a user's own package, by dotted path, entry
point or decorator; bad paths, wrong kinds and name clashes are one ``RegistryError`` line."""

from __future__ import annotations

import importlib
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from trainables import FAMILIES, LocalContext, RegistryError, get_family, load_model
from trainables.data import DATASETS, DataError, load
from trainables.metrics import METRICS, MetricInput, get_metric, run_metrics
from trainables.registry import Registry, import_path, listed_names
from trainables.testing import TINY_VIEW, tiny_config

REPO = Path(__file__).parents[2]

USER_MODULE = '''
from trainables.families.ae import AE
from trainables.metrics import MetricSpec
from trainables.data.dsprites import DSprites


class MyAE(AE):
    """A user's family: the plain auto-encoder under another name."""
    name = "my_ae"
    description = "a user's auto-encoder"


class NotAFamily:
    pass


def code_spread(x):
    return {"code_spread": float(x.codes_train.std())}


SPREAD = MetricSpec(code_spread, ("code_spread",), higher_is_better=None, bounds=(0.0, float("inf")),
                    draws=False)


def small_dsprites(**options):
    return DSprites()


def not_data(**options):
    return 42
'''


@pytest.fixture
def user_package(tmp_path, monkeypatch):
    """``userpkg.models`` importable from tmp_path, and forgotten after the test."""
    package = tmp_path / "userpkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "models.py").write_text(textwrap.dedent(USER_MODULE))
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield "userpkg.models"
    for name in [m for m in sys.modules if m.startswith("userpkg")]:
        del sys.modules[name]


def _dist_info(directory: Path, group: str, lines: list[str], name: str = "plugin") -> None:
    """An installed distribution as importlib.metadata finds it: NAME.dist-info on sys.path."""
    info = directory / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{group}]\n" + "\n".join(lines) + "\n")


# -- the mechanism ------------------------------------------------------------------------------
def test_dotted_path_forms_and_their_one_line_errors():
    assert import_path("trainables.families.vae:VAE").name == "vae"
    assert import_path("os.path:join.__name__") == "join"  # a dotted attribute
    with pytest.raises(RegistryError, match="not a dotted path"):
        import_path("trainables.families.vae.VAE")
    with pytest.raises(RegistryError, match="cannot import module 'no_such_pkg'"):
        import_path("no_such_pkg:X")
    with pytest.raises(RegistryError, match="has no 'Nope'"):
        import_path("trainables.families.vae:Nope")


def test_builtins_resolve_and_decorators_register():
    registry = Registry("thing", {"two": "operator:add"}, group="test.things")
    assert sorted(registry) == ["two"]
    assert registry.get("two")(1, 1) == 2

    @registry.register("mine")
    def mine():
        return 3

    assert registry.get("mine")() == 3 and "mine" in registry
    with pytest.raises(RegistryError, match="'two' is already a built-in"):
        registry.register("two")(mine)
    with pytest.raises(RegistryError, match="already registered by"):
        registry.register("mine")(lambda: 4)
    with pytest.raises(RegistryError, match="unknown thing 'zzz'; known: \\['mine', 'two'\\]"):
        registry.get("zzz")


def test_a_check_refuses_the_wrong_kind():
    registry = Registry("number", {}, group="test.numbers",
                        check=lambda o: None if isinstance(o, int) else "not an int")  # fmt: skip
    assert registry.get("errno:ENOENT") == 2
    with pytest.raises(RegistryError, match="number 'math:pi': not an int"):
        registry.get("math:pi")


def test_entry_points_of_installed_packages(tmp_path, monkeypatch, user_package):
    _dist_info(tmp_path, "disentangle_study.families", [f"my_ae = {user_package}:MyAE"])
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("family", {"vae": "trainables.families.vae:VAE"},
                        group="disentangle_study.families")  # fmt: skip
    assert sorted(registry) == ["my_ae", "vae"]
    assert registry.get("my_ae").name == "my_ae"


def test_describe_reads_a_literal_without_importing_and_falls_back_to_the_object(
    tmp_path, monkeypatch, user_package
):
    from trainables.families.ae import AE

    class Inherited(AE):  # no description of its own: only the object knows it
        name = "inherited"

    _dist_info(tmp_path, "ds_test.families", [f"my_ae = {user_package}:MyAE"])
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("family", {"vae": "trainables.families.vae:VAE"}, group="ds_test.families")
    registry.register("inherited")(Inherited)
    assert registry.describe("my_ae") == "a user's auto-encoder"
    assert user_package not in sys.modules  # read from the source, not imported
    assert registry.describe("vae") == get_family("vae").description
    assert registry.describe("inherited") == AE.description
    assert listed_names(["vae"], "ds_test.families") == ["my_ae", "vae"]


def test_an_entry_point_clashing_with_a_builtin_is_refused(tmp_path, monkeypatch, user_package):
    _dist_info(tmp_path, "disentangle_study.families", [f"vae = {user_package}:MyAE"])
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("family", {"vae": "trainables.families.vae:VAE"},
                        group="disentangle_study.families")  # fmt: skip
    with pytest.raises(RegistryError, match="clashes with the built-in"):
        list(registry)


def test_a_broken_entry_point_names_itself(tmp_path, monkeypatch):
    _dist_info(tmp_path, "disentangle_study.metrics", ["broken = no_such_pkg.x:Y"])
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("metric", {}, group="disentangle_study.metrics")
    with pytest.raises(RegistryError, match="entry point 'no_such_pkg.x:Y' .* failed to load"):
        registry.get("broken")


# -- the three registries -------------------------------------------------------------------------
def test_a_user_family_by_dotted_path_trains_saves_and_reloads(user_package, tmp_path):
    key = f"{user_package}:MyAE"
    family = get_family(key)
    assert family.key == key and family.trainer.name == "my_ae"
    cfg = tiny_config(family, metrics=["mig"])
    data = family.prepare_data(TINY_VIEW, [cfg])
    family.fit(cfg, data, LocalContext(tmp_path))
    saved = (tmp_path / "artifacts" / "model" / "config.json").read_text()
    assert f'"family": "{key}"' in saved  # the name that finds it again in any process
    model = load_model(tmp_path / "artifacts")
    assert type(model.trainer) is family.trainer
    codes = model.encode(data["images"][:5])
    assert codes.shape == (5, 4) and np.isfinite(codes).all()


def test_a_user_family_that_is_not_a_trainer_is_refused(user_package):
    with pytest.raises(RegistryError, match="is not a subclass of trainables.Trainer"):
        get_family(f"{user_package}:NotAFamily")
    with pytest.raises(RegistryError, match="unknown family 'nope'"):
        get_family("nope")


def test_a_decorated_family_clashing_with_a_builtin_is_refused(user_package):
    module = importlib.import_module(user_package)
    with pytest.raises(RegistryError, match="family 'vae' is already a built-in"):
        FAMILIES.register("vae")(module.MyAE)


def test_a_user_dataset_and_metric_by_dotted_path(user_package):
    assert load(f"{user_package}:small_dsprites").num_samples == 737280
    with pytest.raises(DataError, match="returned int, not a GroundTruthData"):
        load(f"{user_package}:not_data")
    with pytest.raises(DataError, match="unknown dataset 'nope'"):
        load("nope")
    assert "dsprites" in DATASETS
    spec = get_metric(f"{user_package}:SPREAD")
    codes = np.arange(20.0).reshape(10, 2)
    factors = np.repeat(np.arange(2), 5)[:, None]
    x = MetricInput(codes, factors, codes, factors, np.random.default_rng(0))
    scores, _ = run_metrics([f"{user_package}:SPREAD"], x)
    assert scores == {"code_spread": pytest.approx(codes.std())} and spec.outputs == (
        "code_spread",
    )
    with pytest.raises(RegistryError, match="is not a trainables.metrics.MetricSpec"):
        get_metric(f"{user_package}:code_spread")
    assert len(METRICS) >= 15


def test_the_cli_refuses_a_bad_family_path_in_one_line_before_ray(tmp_path):
    config = tmp_path / "x.yaml"
    config.write_text("name: x\nfamily: no_such_pkg.models:MyVAE\n")
    done = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", str(config)],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PYTHONPATH": str(REPO), "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "cannot import module 'no_such_pkg.models'" in lines[0], lines
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlruns.db").exists()
