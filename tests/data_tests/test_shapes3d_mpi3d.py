from __future__ import annotations

import h5py
import numpy as np
import pytest

from trainables.data import DataError, load
from trainables.data.cache import cache_dir
from trainables.data.mpi3d import MPI3DFile


@pytest.fixture(scope="module")
def shapes():
    return load("shapes3d")


def _shapes_image(ds, **factors):
    base = dict(floor_hue=0, wall_hue=3, object_hue=6, scale=4, shape=0, orientation=7)
    base.update(factors)
    return ds.images(np.array([[base[n] for n in ds.factor_names]]))[0].astype(int)


def test_shapes3d_grid(shapes):
    assert shapes.factor_sizes == (10, 10, 10, 8, 4, 15) and shapes.num_samples == 480_000
    assert shapes.images(np.zeros((2, 6), int)).shape == (2, 3, 64, 64)


@pytest.mark.parametrize(("factor", "region"), [
    ("floor_hue", (slice(56, 64), slice(0, 8))),  # bottom-left corner: floor
    ("wall_hue", (slice(0, 8), slice(0, 8))),  # top-left corner: wall
    ("object_hue", (slice(28, 36), slice(28, 36))),  # centre: object
])  # fmt: skip
def test_shapes3d_hue_recolours_only_its_surface(shapes, factor, region):
    a, b = _shapes_image(shapes), _shapes_image(shapes, **{factor: 5})
    changed = np.abs(a - b).sum(axis=0) > 0
    assert changed[region].all()
    others = [r for f, r in [("floor_hue", (slice(56, 64), slice(0, 8))),
                             ("wall_hue", (slice(0, 8), slice(0, 8))),
                             ("object_hue", (slice(28, 36), slice(28, 36)))] if f != factor]  # fmt: skip
    for other in others:
        assert not changed[other].any()


def _object_mask(ds, **factors):
    a, b = _shapes_image(ds, **factors), _shapes_image(ds, object_hue=1, **factors)
    return np.abs(a - b).sum(axis=0) > 0


def test_shapes3d_scale_grows_object_and_shapes_differ(shapes):
    areas = [_object_mask(shapes, scale=s).sum() for s in range(8)]
    assert all(x < y for x, y in zip(areas, areas[1:], strict=False))
    masks = [_object_mask(shapes, shape=s) for s in range(4)]
    for i in range(4):
        for j in range(i + 1, 4):
            assert (masks[i] ^ masks[j]).sum() > 20


def test_shapes3d_orientation_turns_the_camera(shapes):
    # The floor/wall boundary tilts one way for -30 degrees and the other way for +30.
    def wall_rows(image_wall):
        return [int((image_wall[:, c]).sum()) for c in (2, 61)]

    def wall(o):
        a, b = (
            _shapes_image(shapes, orientation=o),
            _shapes_image(shapes, orientation=o, wall_hue=8),
        )
        return np.abs(a - b).sum(axis=0) > 0

    left, right = wall_rows(wall(0))
    assert (left - right) * (wall_rows(wall(14))[0] - wall_rows(wall(14))[1]) < 0
    assert wall_rows(wall(7))[0] == pytest.approx(wall_rows(wall(7))[1], abs=1)


def _write_h5(path, sizes=(2, 2, 2, 2, 2, 3), order="official"):
    n = int(np.prod(sizes))
    grid = np.stack(np.unravel_index(np.arange(n), sizes), axis=1).astype(float)
    if order != "official":
        grid = grid[::-1]
    images = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    with h5py.File(path, "w") as f:
        f["images"] = images
        f["labels"] = grid / 10.0
    return images


def test_shapes3d_h5_loads_lazily_in_any_index_order(tmp_path):
    path = tmp_path / "3dshapes.h5"
    images = _write_h5(path)
    ds = load("shapes3d", path=str(path))
    assert ds.factor_sizes == (2, 2, 2, 2, 2, 3)
    index = np.array([5, 1, 5, 40, 0])
    got = ds.images(ds.index_to_classes(index))
    assert np.array_equal(got, images[index].transpose(0, 3, 1, 2))


def test_shapes3d_h5_errors(tmp_path):
    with pytest.raises(DataError, match="not found.*dataset.options.path"):
        load("shapes3d", path=str(tmp_path / "none.h5"))
    bad = tmp_path / "bad.h5"
    with h5py.File(bad, "w") as f:
        f["imgs"] = np.zeros((2, 64, 64, 3), np.uint8)
    with pytest.raises(DataError, match="lacks dataset"):
        load("shapes3d", path=str(bad))
    shuffled = tmp_path / "shuffled.h5"
    _write_h5(shuffled, order="reversed")
    with pytest.raises(DataError, match="official order"):
        load("shapes3d", path=str(shuffled))
    truncated = tmp_path / "truncated.h5"
    _write_h5(truncated)
    truncated.write_bytes(truncated.read_bytes()[:4000])
    with pytest.raises(DataError, match="shapes3d file"):
        load("shapes3d", path=str(truncated))


@pytest.fixture(scope="module")
def mpi():
    return load("mpi3d")


def _mpi(ds, **factors):
    base = dict(object_color=0, object_shape=1, object_size=1, camera_height=1,
                background_color=0, horizontal_axis=20, vertical_axis=20)  # fmt: skip
    base.update(factors)
    return ds.images(np.array([[base[n] for n in ds.factor_names]]))[0].astype(int)


def _object_pixels(ds, **factors):
    a = _mpi(ds, **factors)
    b = _mpi(ds, **{**factors, "object_color": 3})
    return np.abs(a - b).sum(axis=0) > 0


def test_mpi3d_grid_and_variants(mpi):
    assert mpi.factor_sizes == (6, 6, 2, 3, 3, 40, 40) and mpi.num_samples == 1_036_800
    with pytest.raises(DataError, match="unknown mpi3d variant 'fake'"):
        load("mpi3d", variant="fake")
    with pytest.raises(DataError, match="needs the official file"):
        load("mpi3d", variant="real")


def test_mpi3d_factors_act_as_named(mpi):
    ys, xs = np.nonzero(_object_pixels(mpi))
    assert len(xs) > 10
    centroids_x = [
        np.nonzero(_object_pixels(mpi, horizontal_axis=h))[1].mean() for h in (0, 20, 39)
    ]
    assert centroids_x[0] < centroids_x[1] < centroids_x[2]
    centroids_y = [np.nonzero(_object_pixels(mpi, vertical_axis=v))[0].mean() for v in (0, 20, 39)]
    assert centroids_y[0] > centroids_y[1] > centroids_y[2]  # higher axis value: higher in image
    assert _object_pixels(mpi, object_size=1).sum() > _object_pixels(mpi, object_size=0).sum()
    corner = [_mpi(mpi, background_color=b)[:, 2, 2].tolist() for b in range(3)]
    assert len({tuple(c) for c in corner}) == 3
    shapes = [_object_pixels(mpi, object_shape=s) for s in range(6)]
    assert len({m.tobytes() for m in shapes}) == 6
    assert not np.array_equal(_mpi(mpi, camera_height=0), _mpi(mpi, camera_height=2))


@pytest.mark.parametrize("compressed", [False, True])
def test_mpi3d_npz_is_memory_mapped(tmp_path, compressed):
    sizes = [2, 1, 2, 1, 1, 3, 2]
    n = int(np.prod(sizes))
    images = np.random.default_rng(0).integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    path = tmp_path / "mpi3d_toy.npz"
    (np.savez_compressed if compressed else np.savez)(path, images=images)
    ds = load("mpi3d", path=str(path), factor_sizes=sizes)
    assert isinstance(ds._images, np.memmap)
    extracted = list((cache_dir() / "extracted").glob("*.npy")) if compressed else []
    assert len(extracted) == int(compressed)
    index = np.array([3, 0, 23])
    assert np.array_equal(
        ds.images(ds.index_to_classes(index)), images[index].transpose(0, 3, 1, 2)
    )


def test_mpi3d_npz_errors(tmp_path):
    with pytest.raises(DataError, match="not found.*mpi3d_toy.npz"):
        load("mpi3d", path=str(tmp_path / "none.npz"))
    wrong_key = tmp_path / "a.npz"
    np.savez(wrong_key, imgs=np.zeros((1, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match="lacks key 'images'"):
        load("mpi3d", path=str(wrong_key))
    small = tmp_path / "b.npz"
    np.savez(small, images=np.zeros((4, 64, 64, 3), np.uint8))
    with pytest.raises(DataError, match=r"images must have shape \(1036800, 64, 64, 3\)"):
        load("mpi3d", path=str(small))
    truncated = tmp_path / "c.npz"
    np.savez(truncated, images=np.zeros((12, 64, 64, 3), np.uint8))
    truncated.write_bytes(truncated.read_bytes()[: 64 * 64 * 3 * 5])
    with pytest.raises(DataError, match="mpi3d file"):
        MPI3DFile(truncated, factor_sizes=[2, 1, 2, 1, 1, 3, 1])
