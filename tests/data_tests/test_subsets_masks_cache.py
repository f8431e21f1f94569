from __future__ import annotations

import multiprocessing

import numpy as np
import pytest

from trainables import DatasetConfig
from trainables.core.view import prepare_view
from trainables.data import DataError, load, subset
from trainables.data.cache import cache_dir, cache_key, cached_array
from trainables.data.tasks import task_mask, task_targets


def test_weak_disentanglement_subset_has_27_classes_with_nuisance():
    view = subset(load("dsprites"), "weak_disentanglement")
    assert view.label_names == ("shape", "posX_bin", "posY_bin") and view.label_sizes == (3, 3, 3)
    assert view.factor_names == ("shape", "scale", "orientation", "posX", "posY")
    assert view.num_samples == 3 * 3 * 6 * 15 * 15
    labels = view.labels(view.index_to_classes(np.arange(view.num_samples)))
    assert len({tuple(r) for r in labels}) == 27
    # posX class 13 (first of the centre bin) has label 1; nuisance scale is not scored.
    parent = view.to_parent(np.array([[0, 0, 0, 5, 0]]))
    assert parent[0, 3] == 13 and view.labels(np.array([[0, 0, 0, 5, 0]]))[0].tolist() == [0, 1, 0]
    assert not view.is_plain and view.relevant == [0, 3, 4]


def test_range_by_value_and_equal_bins():
    ds = load("dsprites")
    view = subset(ds, {"scale": {"range": [0.6, 0.85]}, "posX": {"bins": 4}, "orientation": 0})
    assert view.allowed[1].tolist() == [1, 2, 3]  # scales 0.6, 0.7, 0.8
    assert view.label_sizes == (3, 3, 4, 32)
    labels = view.labels(np.array([[0, 0, c, 0] for c in (0, 7, 8, 31)]))
    assert labels[:, 2].tolist() == [0, 0, 1, 3]


@pytest.mark.parametrize(("spec", "message"), [
    ("nope", "unknown named subset 'nope'"),
    ({"posZ": 1}, "dataset.subset.posZ: unknown factor"),
    ({"posX": {"bins": 40}}, "dataset.subset.posX.bins"),
    ({"posX": {"colour": 1}}, "unknown key 'colour'"),
    ({"posX": {"role": "extra"}}, "role"),
    ({"scale": {"range": [5, 6]}}, "no scale value"),
    ({"shape": 0, "scale": 0, "orientation": 0, "posX": 0, "posY": {"role": "nuisance"}}, "scores no factor"),
])  # fmt: skip
def test_subset_errors_name_the_key(spec, message):
    with pytest.raises(DataError, match=message):
        subset(load("dsprites"), spec)


def test_prepared_view_scores_labels_and_tasks_see_relevant_factors():
    view = prepare_view(DatasetConfig(subset="weak_disentanglement", n_samples=500))
    assert view["factor_names"] == ["shape", "posX_bin", "posY_bin"]
    assert view["factors"].max(axis=0).tolist() == [2, 2, 2] and view["inputs"].shape == (500, 3)
    assert not view["full_grid"]


def test_task_masks():
    assert task_mask("all", 3, 5).all()
    assert [task_mask("grow", i, 3).sum() for i in range(5)] == [1, 2, 3, 1, 2]
    groups = [np.flatnonzero(task_mask("independent", i, 5, group=2)).tolist() for i in range(4)]
    assert groups == [[0, 1], [2, 3], [4], [0, 1]]
    random = [task_mask("random", i, 6, task_seed=1, p=0.5) for i in range(20)]
    assert all(m.any() for m in random) and len({m.tobytes() for m in random}) > 5
    assert np.array_equal(random[3], task_mask("random", 3, 6, task_seed=1, p=0.5))
    with pytest.raises(ValueError, match="unknown task mask"):
        task_mask("half", 0, 3)


def test_masked_task_ignores_unseen_factors(rng):
    inputs = rng.uniform(-1, 1, (50, 4))
    changed = inputs.copy()
    changed[:, 3] = rng.uniform(-1, 1, 50)  # factor 3: unseen by the first group of size 2
    a = task_targets(inputs, n_tasks=1, task_seed=0, mask="independent", mask_group=2, cache=False)
    b = task_targets(changed, n_tasks=1, task_seed=0, mask="independent", mask_group=2, cache=False)
    assert np.array_equal(a, b)
    c = task_targets(changed, n_tasks=1, task_seed=0, mask="all", cache=False)
    assert not np.allclose(a, c)


def _write_entry(args):
    directory, value = args
    import os

    os.environ["DISENTANGLE_CACHE"] = directory
    return cached_array("race", "k", lambda: np.full(200_000, value, dtype=np.float64)).sum()


def test_concurrent_writers_leave_one_valid_entry(tmp_path):
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        sums = pool.map(_write_entry, [(str(tmp_path), 1.0)] * 8)
    assert sums == [200_000.0] * 8
    files = list((tmp_path / "race").iterdir())
    assert [f.name for f in files] == ["k.npy"]


def test_interrupted_compute_leaves_no_entry():
    def boom():
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cached_array("boom", "k", boom)
    assert not (cache_dir() / "boom" / "k.npy").exists()
    assert cache_key(a=1, b=np.arange(3)) != cache_key(a=1, b=np.arange(4))


@pytest.mark.parametrize(
    ("name", "version", "combinations", "scored"),
    [
        ("dsprites", "v2", 27, ("shape", "posX_bin", "posY_bin")),
        ("dsprites", "v3", 135, ("shape", "scale", "posX_bin", "posY_bin")),
        ("dsprites", "v4", 1080, ("shape", "scale", "orientation_bin", "posX_bin", "posY_bin")),
        ("shapes3d", "v2", 40, ("object_hue", "shape")),
        ("shapes3d", "v3", 120, ("object_hue", "scale_bin", "shape")),
        ("shapes3d", "v5", 12_000, ("floor_hue", "wall_hue", "object_hue", "scale_bin", "shape")),
    ],
)
def test_modular_paper_versions_have_its_factor_combination_counts(
    name, version, combinations, scored
):
    # The modular paper states only the counts of each version (Tables 1-2): ours must match.
    view = subset(load(name), version)
    assert view.label_names == scored
    assert int(np.prod(view.label_sizes)) == combinations
    # every combination of the scored factors occurs in the view's rows
    rows = view.labels(view.index_to_classes(np.arange(view.num_samples)))
    assert len({tuple(r) for r in rows}) == combinations
