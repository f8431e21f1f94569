from __future__ import annotations

import numpy as np
import pytest

from trainables.data import DataError, load, subset
from trainables.data.dsprites import FACTOR_SIZES


@pytest.fixture(scope="module")
def dsprites():
    return load("dsprites")


def _image(ds, shape=0, scale=5, orientation=0, pos_x=16, pos_y=16):
    return ds.images(np.array([[shape, scale, orientation, pos_x, pos_y]]))[0, 0] > 0


def test_grid_size_and_names(dsprites):
    assert dsprites.factor_sizes == (3, 6, 40, 32, 32)
    assert dsprites.num_samples == 737_280
    assert dsprites.factor_names == ("shape", "scale", "orientation", "posX", "posY")


def test_index_round_trip_last_factor_fastest(dsprites, rng):
    index = rng.integers(0, dsprites.num_samples, 1000)
    assert np.array_equal(dsprites.classes_to_index(dsprites.index_to_classes(index)), index)
    assert dsprites.index_to_classes([1])[0].tolist() == [0, 0, 0, 0, 1]
    assert dsprites.index_to_classes([32])[0].tolist() == [0, 0, 0, 1, 0]


def test_images_shape_dtype_and_binary(dsprites, rng):
    images = dsprites.images(dsprites.sample_factors(64, rng))
    assert images.shape == (64, 1, 64, 64) and images.dtype == np.uint8
    assert set(np.unique(images)) <= {0, 255}


@pytest.mark.parametrize("shape", range(3))
def test_area_grows_with_scale(dsprites, shape):
    areas = [_image(dsprites, shape=shape, scale=s).sum() for s in range(6)]
    assert all(a < b for a, b in zip(areas, areas[1:], strict=False))
    # Area scales with the square of scale (0.5 -> 1.0 is x4), up to pixelation.
    assert areas[-1] / areas[0] == pytest.approx(4.0, rel=0.2)


@pytest.mark.parametrize("shape", range(3))
def test_rotation_keeps_area(dsprites, shape):
    areas = np.array([_image(dsprites, shape=shape, orientation=o).sum() for o in range(40)])
    assert areas.max() / areas.min() < 1.15


def test_centroid_follows_position(dsprites):
    for pos_x in (0, 10, 31):
        for pos_y in (0, 20, 31):
            ys, xs = np.nonzero(_image(dsprites, shape=1, pos_x=pos_x, pos_y=pos_y))
            assert xs.mean() == pytest.approx(16 + pos_x, abs=0.6)
            assert ys.mean() == pytest.approx(16 + pos_y, abs=0.6)


def test_translation_is_exact(dsprites):
    a = _image(dsprites, shape=2, pos_x=3, pos_y=5)
    b = _image(dsprites, shape=2, pos_x=7, pos_y=6)
    assert np.array_equal(np.roll(a, (1, 4), axis=(0, 1)), b)


def test_three_shapes_differ(dsprites):
    images = [_image(dsprites, shape=s) for s in range(3)]
    for i in range(3):
        for j in range(i + 1, 3):
            assert (images[i] ^ images[j]).sum() > 20


def test_sprite_stays_inside_image(dsprites):
    corners = np.array([[2, 5, 5, x, y] for x in (0, 31) for y in (0, 31)])
    images = dsprites.images(corners)[:, 0]
    assert not images[:, 0, :].any() and not images[:, -1, :].any()
    assert not images[:, :, 0].any() and not images[:, :, -1].any()


def test_subset_fixes_and_restricts(dsprites):
    view = subset(dsprites, {"orientation": 0, "posX": "0:32:2", "posY": [0, 31]})
    assert view.factor_names == ("shape", "scale", "posX", "posY")
    assert view.factor_sizes == (3, 6, 16, 2)
    parent = view.to_parent(np.array([[1, 2, 3, 1]]))
    assert parent.tolist() == [[1, 2, 0, 6, 31]]
    assert np.array_equal(view.images(np.array([[1, 2, 3, 1]])), dsprites.images(parent))


def test_a_subset_keeps_the_names_of_the_classes_it_keeps(dsprites):
    """Classes are renumbered from 0 in a subset; their names follow them (pictures show names)."""
    assert dsprites.categories == {"shape": ("square", "ellipse", "heart")}
    view = subset(dsprites, {"shape": [0, 2], "orientation": 0})
    assert view.categories == {"shape": ("square", "heart")}
    assert subset(dsprites, {"shape": 1, "orientation": 0}).categories == {}  # shape fixed


@pytest.mark.parametrize(
    ("keep", "message"),
    [({"posZ": 1}, "posZ"), ({"posX": 40}, "posX"), ({"posX": "a:b"}, "posX")],
)
def test_subset_errors_name_the_factor(dsprites, keep, message):
    with pytest.raises(DataError, match=message):
        subset(dsprites, keep)


def _write_official(path, sizes=(1, 3, 2, 2, 2, 2), imgs=None):
    n = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(n), sizes), axis=1).astype(np.int64)
    values = classes.astype(np.float64) / np.maximum(np.array(sizes) - 1, 1)
    values[:, 0] = 1.0
    if imgs is None:
        imgs = (np.random.default_rng(1).random((n, 64, 64)) > 0.5).astype(np.uint8)
    np.savez_compressed(path, imgs=imgs, latents_values=values, latents_classes=classes)
    return imgs, values


def test_official_npz_loads(tmp_path):
    path = tmp_path / "dsprites.npz"
    imgs, values = _write_official(path)
    ds = load("dsprites", path=str(path))
    assert ds.factor_sizes == (3, 2, 2, 2, 2)
    classes = ds.index_to_classes(np.arange(ds.num_samples))
    assert np.array_equal(ds.images(classes)[:, 0], imgs * 255)
    assert np.allclose(ds.factor_values[1], [0.0, 1.0])


def test_official_npz_errors(tmp_path):
    with pytest.raises(DataError, match="not found.*dataset.options.path"):
        load("dsprites", path=str(tmp_path / "missing.npz"))
    bad_keys = tmp_path / "bad_keys.npz"
    np.savez(bad_keys, images=np.zeros((2, 64, 64)))
    with pytest.raises(DataError, match="lacks key"):
        load("dsprites", path=str(bad_keys))
    truncated = tmp_path / "truncated.npz"
    _write_official(truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(DataError, match="not a readable npz"):
        load("dsprites", path=str(truncated))
    shuffled = tmp_path / "shuffled.npz"
    sizes = (1, 3, 2, 2, 2, 2)
    n = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(n)[::-1], sizes), axis=1)
    np.savez(
        shuffled,
        imgs=np.zeros((n, 64, 64), np.uint8),
        latents_values=classes * 1.0,
        latents_classes=classes,
    )
    with pytest.raises(DataError, match="official order"):
        load("dsprites", path=str(shuffled))


def test_unknown_dataset():
    with pytest.raises(DataError, match="unknown dataset 'mnist'"):
        load("mnist")


def test_factor_sizes_constant():
    assert FACTOR_SIZES == (3, 6, 40, 32, 32)
