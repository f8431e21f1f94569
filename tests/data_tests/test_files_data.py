"""A user's own data (``dataset: {name: files, options: {path: ...}}``) and the row path every
dataset renders through; the documented custom dataset of examples/byo_package/byo/data.py."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import yaml

from study.spec import SpecError, parse_spec
from trainables import DatasetConfig
from trainables.core.view import prepare_view, sampling_metrics_refusal
from trainables.data import DataError, load, subset

REPO = Path(__file__).parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
SIZES = (2, 3, 4)


def _grid() -> np.ndarray:
    """Every class combination of SIZES in official order (last factor fastest): (24, 3)."""
    return np.stack(np.unravel_index(np.arange(int(np.prod(SIZES))), SIZES), axis=1)


def _write(path: Path, **arrays) -> Path:
    if path.suffix == ".npz":
        np.savez(path, **arrays)
    else:
        with h5py.File(path, "w") as f:
            for key, value in arrays.items():
                f[key] = value.astype("S") if value.dtype.kind == "U" else value  # h5: bytes
    return path


def _images(rng, n: int) -> np.ndarray:
    return rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)  # (N, H, W, C)


@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_a_shuffled_grid_file_is_a_grid_in_official_order(suffix, tmp_path, rng):
    perm = rng.permutation(24)
    classes = _grid()[perm]  # file row r holds grid point perm[r]
    images = _images(rng, 24)
    values = np.stack([c * (k + 1) * 0.5 for k, c in enumerate(classes.T)], axis=1)
    path = _write(tmp_path / f"g{suffix}", images=images, classes=classes, values=values,
                  factor_names=np.array(["shape", "size", "hue"]))  # fmt: skip
    ds = load("files", path=str(path), display_name="mine")
    assert ds.is_grid and ds.factor_sizes == SIZES and ds.num_samples == 24
    assert ds.name == "mine" and ds.channels == 3 and ds.factor_names == ("shape", "size", "hue")
    row_of = np.argsort(perm)  # grid index -> file row
    index = np.array([23, 0, 7, 7, 12])
    assert np.array_equal(ds.index_to_classes(index), _grid()[index])
    assert np.array_equal(ds.base_rows(index), row_of[index])
    expected = images[row_of[index]].transpose(0, 3, 1, 2)
    assert np.array_equal(ds.row_images(index), expected)
    assert np.array_equal(ds.images(_grid()[index]), expected)  # by class, as metrics sample
    assert np.allclose(ds.values(_grid()[[23]]), [[0.5, 2.0, 4.5]])
    view = prepare_view(DatasetConfig(name="files", options={"path": str(path)}))
    assert view["full_grid"] and view["factor_sizes"] == list(SIZES)
    assert np.array_equal(view["images"], images[view["rows"]].transpose(0, 3, 1, 2))
    assert np.array_equal(view["factors"], classes[view["rows"]])


@pytest.mark.parametrize("suffix", [".npz", ".hdf5"])
def test_a_file_of_arbitrary_rows_is_a_view_but_not_a_grid(suffix, tmp_path, rng):
    classes = rng.integers(0, [4, 5, 6], (500, 3))
    values = np.stack([classes[:, 0] * 0.1, classes[:, 1] + 10.0, classes[:, 2] ** 2], axis=1)
    images = rng.integers(0, 256, (500, 1, 64, 64), dtype=np.uint8)  # (N, C, H, W)
    path = _write(tmp_path / f"rows{suffix}", images=images, classes=classes, values=values,
                  factor_sizes=np.array([4, 5, 6]))  # fmt: skip
    ds = load("files", path=str(path))
    assert not ds.is_grid and ds.num_samples == 500 and ds.factor_names[2] == "factor_2"
    assert np.array_equal(ds.index_to_classes([499, 3]), classes[[499, 3]])
    rows = [5, 1, 5, 0]  # unsorted, repeated: h5py reads sorted unique rows
    assert np.array_equal(ds.row_images(rows), images[rows])
    view = prepare_view(DatasetConfig(name="files", options={"path": str(path)}))
    assert not view["full_grid"] and view["factor_names"] == ["factor_0", "factor_1", "factor_2"]
    assert np.array_equal(view["rows"], np.arange(500)) and view["rows"].dtype == np.int64
    assert np.array_equal(view["images"], images) and np.array_equal(view["factors"], classes)
    parts = np.concatenate([view["train"], view["val"], view["test"]])
    assert sorted(parts.tolist()) == list(range(500)) and len(view["train"]) == 375
    # Inputs: each factor's value rescaled to [-1, 1] over its classes' values.
    assert np.allclose(view["inputs"][:, 2], 2 * classes[:, 2] ** 2 / 25.0 - 1)
    sampled = prepare_view(DatasetConfig(name="files", options={"path": str(path)}, n_samples=60))
    assert np.array_equal(sampled["images"], images[sampled["rows"]])
    assert np.array_equal(sampled["factors"], classes[sampled["rows"]])
    with pytest.raises(DataError, match="holds 500 images, not the 4x5x6=120-point grid.*by class"):
        ds.images(classes[:2])
    with pytest.raises(DataError, match="^dataset.subset: .* not a full factor grid"):
        subset(ds, {"factor_0": [0, 1]})


def test_as_many_rows_as_the_grid_with_repeats_is_not_a_grid(tmp_path, rng):
    classes = _grid()
    classes[5] = classes[6]  # grid point 5 missing, 6 twice
    path = _write(tmp_path / "r.npz", images=_images(rng, 24), classes=classes)
    ds = load("files", path=str(path))
    assert not ds.is_grid and "1 class combination(s) repeat" in ds.why_not_grid


def test_the_view_refuses_grid_metrics_on_rows_and_runs_the_others(tmp_path, rng):
    path = _write(tmp_path / "x.npz", images=_images(rng, 500),
                  classes=rng.integers(0, [4, 5, 6], (500, 3)))  # fmt: skip
    cfg = DatasetConfig(name="files", options={"path": str(path)})
    why = sampling_metrics_refusal(cfg, ["mig", "factor_vae"])
    assert why is not None and why.startswith("['factor_vae'] need the whole factor grid: ")
    assert f"dataset file {str(path)!r} holds 500 images, not the 4x5x6=120-point grid" in why
    sampled = cfg.model_copy(update={"n_samples": 100})  # the grid message, not "unset n_samples"
    assert "120-point grid" in sampling_metrics_refusal(sampled, ["beta_vae"])
    assert sampling_metrics_refusal(cfg, ["mig", "dci", "sap"]) is None
    grid = _write(tmp_path / "g.npz", images=_images(rng, 24), classes=_grid()[::-1])
    assert sampling_metrics_refusal(DatasetConfig(name="files", options={"path": str(grid)}),
                                    ["factor_vae", "beta_vae"]) is None  # fmt: skip


def _spec(path: Path, metrics: list[str]) -> dict:
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["dataset"] = {"name": "files", "options": {"path": str(path)}}
    raw["metrics"] = metrics
    return raw


def test_the_spec_refuses_factor_vae_on_rows_at_load_and_accepts_mig_dci(tmp_path, rng):
    path = _write(tmp_path / "x.h5", images=_images(rng, 50),
                  classes=rng.integers(0, [2, 5], (50, 2)))  # fmt: skip
    with pytest.raises(SpecError) as info:
        parse_spec(_spec(path, ["mig", "factor_vae"]), "s.yaml")
    text = str(info.value)
    assert "\n" not in text and text.startswith("s.yaml: metrics: ['factor_vae'] need the whole")
    assert "holds 50 images, not the 2x5=10-point grid" in text
    assert parse_spec(_spec(path, ["mig", "dci"]), "s.yaml").dataset.name == "files"


@pytest.mark.slow
def test_study_run_exits_2_before_ray_on_factor_vae_over_rows(tmp_path, rng):
    path = _write(tmp_path / "x.npz", images=_images(rng, 50),
                  classes=rng.integers(0, [2, 5], (50, 2)))  # fmt: skip
    (tmp_path / "spec.yaml").write_text(yaml.safe_dump(_spec(path, ["factor_vae"])))
    result = subprocess.run(
        [sys.executable, "-m", "study.cli", "run", "spec.yaml"],
        cwd=tmp_path, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr
    assert len(lines) == 1 and "need the whole factor grid" in lines[0], result.stderr
    assert not (tmp_path / "ray_results").exists() and not (tmp_path / "mlruns.db").exists()


def test_float_images_become_rounded_uint8(tmp_path, rng):
    floats = rng.random((24, 64, 64))  # (N, H, W): one channel
    for suffix in (".npz", ".h5"):
        path = _write(tmp_path / f"f{suffix}", images=floats, classes=_grid())
        ds = load("files", path=str(path))
        got = ds.row_images(np.arange(24))
        assert got.dtype == np.uint8 and got.shape == (24, 1, 64, 64)
        assert np.array_equal(got[:, 0], np.rint(floats * 255).astype(np.uint8))
    _write(tmp_path / "bad.npz", images=floats * 2, classes=_grid())
    with pytest.raises(DataError, match="'images' holds floats outside"):
        load("files", path=str(tmp_path / "bad.npz"))
    _write(tmp_path / "bad.h5", images=floats * 2, classes=_grid())
    with pytest.raises(DataError, match="'images' holds floats outside"):  # checked as read
        load("files", path=str(tmp_path / "bad.h5")).row_images([0])


def test_values_must_be_one_per_class(tmp_path, rng):
    classes = _grid()
    values = classes.astype(float)
    values[7, 1] += 0.5  # one row of class 1 of 'size' disagrees
    names = np.array(["shape", "size", "hue"])
    _write(tmp_path / "v.npz", images=_images(rng, 24), classes=classes, values=values,
           factor_names=names)  # fmt: skip
    with pytest.raises(DataError, match="'values': factor 'size' class 1 has differing values"):
        load("files", path=str(tmp_path / "v.npz"))
    sizes = np.array([2, 3, 5])  # class 4 of 'hue' is in no row: no value to give it
    _write(tmp_path / "a.npz", images=_images(rng, 24), classes=classes,
           values=classes.astype(float), factor_sizes=sizes, factor_names=names)  # fmt: skip
    with pytest.raises(DataError, match="factor 'hue' class 4 is in no row"):
        load("files", path=str(tmp_path / "a.npz"))


_GOOD = {"images": np.zeros((6, 64, 64), np.uint8), "classes": np.arange(12).reshape(6, 2) % 3}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"images": None}, "lacks key 'images'"),
        ({"classes": None}, "lacks key 'classes'"),
        ({"images": np.zeros((6, 32, 32), np.uint8)}, r"'images' has shape \(6, 32, 32\).*64x64"),
        ({"images": np.zeros((6, 64, 64, 3), np.int64)}, "'images' has dtype int64"),
        ({"classes": np.zeros((5, 2), int)}, r"'classes' has shape \(5, 2\); expected \(6, K\)"),
        ({"classes": np.full((6, 2), -1)}, "'classes' holds a negative class"),
        ({"classes": np.zeros((6, 2))}, "'classes' has dtype float64"),
        ({"classes": np.zeros((6, 2), int)}, "factor 'factor_0' has a single class"),
        ({"factor_sizes": np.array([2, 3])}, "'classes' has class 2 of factor 'factor_0'.*size 2"),
        ({"factor_sizes": np.array([3, 3, 3])}, "'factor_sizes' must be 2 integers"),
        ({"factor_names": np.array(["a"])}, "'factor_names' must be 2 strings"),
        ({"factor_names": np.array(["a", "a"])}, "'factor_names' must be distinct"),
        ({"values": np.zeros((6, 3))}, r"'values' must be numbers of shape \(6, 2\)"),
        ({"values": np.array(["x"] * 12).reshape(6, 2)}, "'values' must be numbers"),
    ],
)
@pytest.mark.parametrize("suffix", [".npz", ".h5"])
def test_a_malformed_file_is_one_line_naming_the_file_and_key(changes, message, suffix, tmp_path):
    arrays = {k: v for k, v in {**_GOOD, **changes}.items() if v is not None}
    path = _write(tmp_path / f"m{suffix}", **arrays)
    with pytest.raises(DataError, match=message) as info:
        load("files", path=str(path))
    text = str(info.value)
    assert "\n" not in text and text.startswith(f"dataset file {str(path)!r}")


def test_an_object_array_is_refused_not_unpickled(tmp_path):
    path = tmp_path / "p.npz"
    np.savez(path, images=_GOOD["images"], classes=np.array([[0], [1]] * 3, dtype=object))
    with pytest.raises(DataError, match="key 'classes' cannot be read"):
        load("files", path=str(path))


def test_path_format_and_options_are_checked(tmp_path):
    with pytest.raises(DataError, match="needs options.path"):
        load("files")
    with pytest.raises(DataError, match="not found"):
        load("files", path=str(tmp_path / "none.npz"))
    (tmp_path / "x.pt").write_bytes(b"\0")
    with pytest.raises(DataError, match="unknown format '.pt'"):
        load("files", path=str(tmp_path / "x.pt"))
    (tmp_path / "x.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable npz"):
        load("files", path=str(tmp_path / "x.npz"))
    with pytest.raises(DataError, match="bad option"):
        load("files", path=str(tmp_path / "x.npz"), colour=1)


def test_a_subset_of_a_grid_file_maps_rows_back_to_the_file(tmp_path, rng):
    perm = rng.permutation(24)
    images = _images(rng, 24)
    path = _write(tmp_path / "g.npz", images=images, classes=_grid()[perm])
    cfg = DatasetConfig(name="files", options={"path": str(path)}, subset={"factor_2": [1, 3]})
    view = prepare_view(cfg)
    assert len(view["rows"]) == 2 * 3 * 2
    assert np.array_equal(view["images"], images[view["rows"]].transpose(0, 3, 1, 2))
    assert set(_grid()[perm][view["rows"], 2]) == {1, 3}


@pytest.mark.parametrize("n_samples", [None, 150])
def test_the_row_path_renders_builtin_views_exactly_as_by_class(n_samples):
    cfg = DatasetConfig(
        subset={"orientation": 0, "scale": [0, 5], "posX": "0:32:4", "posY": "0:32:4"},
        n_samples=n_samples, split_seed=3,
    )  # fmt: skip
    view = prepare_view(cfg)
    parent = load("dsprites")
    dataset = subset(parent, cfg.subset)
    # The old path: the same seeded rows, rendered from their class vectors.
    rng = np.random.default_rng(cfg.split_seed)
    index = np.arange(dataset.num_samples)
    if n_samples is not None:
        index = np.sort(rng.choice(dataset.num_samples, n_samples, replace=False))
    classes = dataset.index_to_classes(index)
    assert np.array_equal(view["images"], dataset.images(classes))
    assert view["full_grid"] == (n_samples is None)
    assert np.array_equal(view["rows"], parent.classes_to_index(dataset.to_parent(classes)))
    assert np.array_equal(parent.images(parent.index_to_classes(view["rows"])), view["images"])


def test_the_documented_custom_dataset_loads_by_dotted_path(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "examples" / "byo_package"))
    name = "byo.data:Squares"
    ds = load(name, positions=4, levels=3)
    assert ds.factor_sizes == (4, 4, 3) and ds.is_grid and ds.num_samples == 48
    image = ds.images(np.array([[3, 0, 2]]))[0, 0]  # right edge, top row, brightest
    assert image[:12, 52:].min() == 255 and image.sum() == 255 * 12 * 12
    dim = ds.images(np.array([[0, 3, 0]]))[0, 0]
    assert dim[52:, :12].min() == 64 and dim.sum() == 64 * 144
    view = prepare_view(DatasetConfig(name=name, options={"positions": 4, "levels": 3}))
    assert view["full_grid"] and view["images"].shape == (48, 1, 64, 64)
    with pytest.raises(DataError, match="squares: positions"):
        load(name, positions=1)
