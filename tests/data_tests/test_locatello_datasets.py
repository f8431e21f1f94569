"""The five datasets Locatello et al. 2019 add to dSprites, Shapes3D and MPI3D: colour, noisy and scream
dSprites, smallNORB and Cars3D. Official-format loaders read small files written here; the procedural
stand-ins are checked for their grid and for distinct images per factor value."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy.io import savemat

from trainables.data import DATASETS, DataError, GroundTruthData, load, subset

ROOT = Path(__file__).resolve().parents[2]
DSPRITES_NAMES = ("shape", "scale", "orientation", "posX", "posY")
GRIDS = {
    "color_dsprites": (DSPRITES_NAMES, (3, 6, 40, 32, 32), 3),
    "noisy_dsprites": (DSPRITES_NAMES, (3, 6, 40, 32, 32), 3),
    "scream_dsprites": (DSPRITES_NAMES, (3, 6, 40, 32, 32), 3),
    "smallnorb": (
        ("category", "instance", "elevation", "azimuth", "lighting"),
        (5, 10, 9, 18, 6),
        1,
    ),
    "cars3d": (("elevation", "azimuth", "object"), (4, 24, 183), 3),
}


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_registered_with_the_declared_grid(name):
    names, sizes, channels = GRIDS[name]
    ds = load(name)
    assert name in DATASETS and isinstance(ds, GroundTruthData) and ds.name == name
    assert ds.factor_names == names and ds.factor_sizes == sizes and ds.channels == channels
    assert [len(v) for v in ds.factor_values] == list(sizes)


def _write_dsprites(path: Path, sizes=(1, 3, 2, 2, 2, 2)) -> np.ndarray:
    """A tiny official-format dSprites npz whose sprite is a square placed by the factor classes."""
    n = int(np.prod(sizes))
    classes = np.stack(np.unravel_index(np.arange(n), sizes), axis=1)
    imgs = np.zeros((n, 64, 64), np.uint8)
    for i, (_, shape, scale, orient, x, y) in enumerate(classes):
        top, left, side = 8 + 20 * y + orient, 8 + 20 * x + shape, 6 + 4 * scale
        imgs[i, top : top + side, left : left + side] = 1
    np.savez_compressed(path, imgs=imgs, latents_classes=classes, latents_values=classes * 1.0)
    return imgs.astype(bool)


@pytest.fixture
def tiny_dsprites(tmp_path) -> tuple[str, np.ndarray]:
    path = tmp_path / "dsprites.npz"
    return str(path), _write_dsprites(path)


def _all(ds: GroundTruthData) -> np.ndarray:
    return ds.images(ds.index_to_classes(np.arange(ds.num_samples))).astype(int)


def test_color_dsprites_paints_the_sprite_one_colour_in_half_to_one(tiny_dsprites):
    path, masks = tiny_dsprites
    ds = load("color_dsprites", path=path)
    assert ds.factor_sizes == (3, 2, 2, 2, 2)
    images = _all(ds)  # (N, 3, 64, 64)
    colours = []
    for image, mask in zip(images, masks, strict=True):
        assert np.array_equal(image.any(axis=0), mask) and not image[:, ~mask].any()
        sprite = image[:, mask]  # (3, pixels)
        assert (sprite == sprite[:, :1]).all()  # one colour over the sprite
        assert (sprite >= 127.5).all() and (sprite <= 255).all()  # [0.5, 1] in uint8
        colours.append(sprite[:, 0])
    assert len({tuple(c) for c in colours}) == len(colours)  # per-image colour, not a factor


def test_noisy_dsprites_white_sprite_on_uniform_noise(tiny_dsprites):
    path, masks = tiny_dsprites
    images = _all(load("noisy_dsprites", path=path))
    for image, mask in zip(images, masks, strict=True):
        assert (image[:, mask] == 255).all()
        noise = image[:, ~mask]  # (3, pixels)
        assert noise.min() >= 0 and noise.max() <= 255
        assert abs(noise.mean() - 127.5) < 5 and abs(noise.std() - 255 / np.sqrt(12)) < 4
        assert len(np.unique(noise)) > 200  # varies per pixel and channel
        assert not np.array_equal(noise[0], noise[1])
    assert not np.array_equal(images[0, :, ~masks[0]], images[1, :, ~masks[0]])


def _write_painting(path: Path, kind: str) -> None:
    rows, cols = np.mgrid[0:100, 0:120]
    if kind == "ramp":  # red = 2 x column, green = 2 x row, blue constant
        rgb = np.stack([2 * cols, 2 * rows, np.full_like(rows, 128)], axis=-1)
    else:
        rgb = np.stack([np.full_like(rows, v) for v in (200, 40, 90)], axis=-1)
    Image.fromarray(rgb.astype(np.uint8)).save(path)


def test_scream_dsprites_blends_a_crop_and_inverts_it_under_the_sprite(tmp_path, tiny_dsprites):
    path, masks = tiny_dsprites
    _write_painting(tmp_path / "flat.png", "flat")
    _write_painting(tmp_path / "ramp.png", "ramp")
    flat = _all(load("scream_dsprites", path=path, scream_path=str(tmp_path / "flat.png")))
    ramp = _all(load("scream_dsprites", path=path, scream_path=str(tmp_path / "ramp.png")))
    colours = []
    for image, mask in zip(flat, masks, strict=True):
        background = image[:, ~mask]
        assert (background == background[:, :1]).all()  # (flat painting + colour) / 2
        assert (image[:, mask] == 255 - background[:, :1]).all()  # the sprite inverts it
        colour = 2 * background[:, 0] / 255 - np.array([200, 40, 90]) / 255
        assert (colour > -0.01).all() and (colour < 1.01).all()
        colours.append(tuple(colour))
    assert len(set(colours)) == len(colours)
    for image, mask in zip(ramp, masks, strict=True):
        # Undo the inversion: the background is then a 64x64 window of the ramp, halved.
        background = np.where(mask, 255 - image, image)
        assert (np.diff(background[0], axis=1) == 1).all()  # red steps 1 per column
        assert (np.diff(background[1], axis=0) == 1).all()  # green steps 1 per row
        assert (background[2] == background[2, 0, 0]).all()
    offsets = {(int(b[0, 0, 0]), int(b[1, 0, 0])) for b in ramp}
    assert len(offsets) > len(ramp) // 2  # crops (and colours) differ between images


def test_scream_without_a_file_uses_the_procedural_painting(tiny_dsprites):
    path, masks = tiny_dsprites
    images = _all(load("scream_dsprites", path=path))
    background = images[0][:, ~masks[0]]
    assert background.std(axis=1).min() > 3  # a texture, not a flat colour
    assert not np.array_equal(images[0], images[1])
    with pytest.raises(DataError, match="not found"):
        load("scream_dsprites", path=path, scream_path="/nonexistent/scream.jpg")


@pytest.mark.parametrize("name", ["color_dsprites", "noisy_dsprites", "scream_dsprites"])
def test_dsprites_variants_deterministic_per_index(name):
    a, b = load(name), load(name)  # procedural sprites
    classes = np.array([[0, 5, 3, 10, 20], [2, 2, 30, 0, 31], [1, 0, 0, 16, 16]])
    first = a.images(classes)
    assert np.array_equal(first, b.images(classes))  # another loader instance
    assert np.array_equal(first[1], b.images(classes[[2, 1]])[1])  # whatever batch it is in
    assert first.shape == (3, 3, 64, 64) and first.dtype == np.uint8
    mask = load("dsprites").images(classes)[:, 0] > 0
    assert (first.max(axis=1) > 0)[mask].all()  # the sprite shows in every variant


def test_dsprites_variant_same_image_in_another_process(tiny_dsprites):
    path, _ = tiny_dsprites
    code = (
        "import hashlib, numpy as np; from trainables.data import load; "
        f"ds = load('noisy_dsprites', path={path!r}); "
        "print(hashlib.sha256(ds.images(np.array([[1, 1, 0, 1, 0]])).tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    here = load("noisy_dsprites", path=path).images(np.array([[1, 1, 0, 1, 0]]))
    import hashlib

    assert out.stdout.strip() == hashlib.sha256(here.tobytes()).hexdigest()


def test_variant_subset_renders_the_parent_images(tiny_dsprites):
    path, _ = tiny_dsprites
    ds = load("color_dsprites", path=path)
    view = subset(ds, {"shape": 2})
    assert view.factor_names == ("scale", "orientation", "posX", "posY")
    assert np.array_equal(
        view.images(np.array([[1, 0, 1, 1]])), ds.images(np.array([[2, 1, 0, 1, 1]]))
    )


# -- smallNORB --------------------------------------------------------------------------------------

_NORB_MAGIC = {np.uint8: 0x1E3D4C55, np.int32: 0x1E3D4C54}


def _write_norb(path: Path, array: np.ndarray) -> None:
    dims = list(array.shape) + [1] * max(0, 3 - array.ndim)
    header = np.array([_NORB_MAGIC[array.dtype.type], array.ndim, *dims], "<i4")
    path.write_bytes(header.tobytes() + array.astype(array.dtype.newbyteorder("<")).tobytes())


NORB_SIZES = (2, 3, 2, 2, 2)  # category, instance, elevation, azimuth, lighting: 48 images


def _norb_code(classes) -> int:
    return 5 + int(np.ravel_multi_index(tuple(classes), NORB_SIZES)) * 5  # 5..240, one per cell


def _write_smallnorb(folder: Path, drop: int | None = None) -> None:
    """Official-format files: instance 1 in testing, 0 and 2 in training, rows shuffled. Each left
    image is its cell's code on the left half and 255 - code on the right; right images are 0."""
    folder.mkdir(exist_ok=True)
    grid = np.stack(np.unravel_index(np.arange(48), NORB_SIZES), axis=1)
    if drop is not None:
        grid = np.delete(grid, drop, axis=0)
    rng = np.random.default_rng(0)
    for split, keep, tag in [("training", grid[:, 1] != 1, "5x46789"), ("testing", grid[:, 1] == 1, "5x01235")]:  # fmt: skip
        rows = rng.permutation(grid[keep])
        dat = np.zeros((len(rows), 2, 96, 96), np.uint8)
        for i, classes in enumerate(rows):
            dat[i, 0, :, :48] = _norb_code(classes)
            dat[i, 0, :, 48:] = 255 - _norb_code(classes)
        info = np.column_stack([rows[:, 1], rows[:, 2], 2 * rows[:, 3], rows[:, 4]]).astype(
            np.int32
        )
        stem = f"smallnorb-{tag}x9x18x6x2x96x96-{split}"
        _write_norb(folder / f"{stem}-dat.mat", dat)
        _write_norb(folder / f"{stem}-cat.mat", rows[:, 0].astype(np.int32))
        _write_norb(folder / f"{stem}-info.mat", info)


def test_smallnorb_files_merge_resize_and_index_by_factors(tmp_path):
    _write_smallnorb(tmp_path / "norb")
    ds = load("smallnorb", path=str(tmp_path / "norb"))
    assert ds.factor_sizes == NORB_SIZES and ds.channels == 1
    assert ds.factor_values[2].tolist() == [30.0, 35.0] and ds.factor_values[3].tolist() == [
        0.0,
        20.0,
    ]
    classes = ds.index_to_classes(np.arange(ds.num_samples))
    images = ds.images(classes).astype(int)
    assert images.shape == (48, 1, 64, 64)
    for image, cell in zip(images[:, 0], classes, strict=True):
        code = _norb_code(cell)
        # Lanczos rings for ~3 pixels either side of the step at column 32.
        assert (image[:, :28] == code).all() and (image[:, 36:] == 255 - code).all()
    # A batch in any order (rows from both files, repeated) reads the same images.
    pick = np.array([47, 3, 3, 20, 0])
    assert np.array_equal(ds.row_images(pick), images[pick].astype(np.uint8))


def test_smallnorb_file_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        load("smallnorb", path=str(tmp_path / "missing"))
    _write_smallnorb(tmp_path / "gap", drop=7)
    with pytest.raises(DataError, match="do not cover the factor grid"):
        load("smallnorb", path=str(tmp_path / "gap"))
    _write_smallnorb(tmp_path / "bad")
    cat = next((tmp_path / "bad").glob("*-testing-cat.mat"))
    cat.write_bytes(b"\x00" * 4 + cat.read_bytes()[4:])
    with pytest.raises(DataError, match="magic"):
        load("smallnorb", path=str(tmp_path / "bad"))
    cat.unlink()
    with pytest.raises(DataError, match="testing-cat"):
        load("smallnorb", path=str(tmp_path / "bad"))
    _write_smallnorb(tmp_path / "short")
    dat = next((tmp_path / "short").glob("*-training-dat.mat"))
    dat.write_bytes(dat.read_bytes()[:1000])
    with pytest.raises(DataError, match="truncated"):
        load("smallnorb", path=str(tmp_path / "short"))


# -- Cars3D -----------------------------------------------------------------------------------------


def _car_code(elevation: int, azimuth: int, obj: int) -> int:
    return 10 + 80 * obj + 20 * elevation + 5 * azimuth


def _write_cars(folder: Path, objects=2, azimuths=3, elevations=2, size=16) -> None:
    """One .mat per car, 'im' (H, W, 3, azimuths, elevations); each view a planted colour."""
    folder.mkdir(exist_ok=True)
    for obj in range(objects):
        im = np.zeros((size, size, 3, azimuths, elevations), np.uint8)
        for a in range(azimuths):
            for e in range(elevations):
                im[:, :, 0, a, e] = _car_code(e, a, obj)
                im[:, :, 1, a, e] = 7 * a
                im[:, :, 2, a, e] = 9 * e
        savemat(folder / f"car_{obj:03d}_mesh.mat", {"im": im})


def test_cars3d_files_read_each_view_at_its_factors(tmp_path):
    _write_cars(tmp_path / "cars")
    ds = load("cars3d", path=str(tmp_path / "cars"))
    assert ds.factor_sizes == (2, 3, 2) and ds.channels == 3
    classes = ds.index_to_classes(np.arange(ds.num_samples))
    images = ds.images(classes).astype(int)
    assert images.shape == (12, 3, 64, 64)
    for image, (e, a, obj) in zip(images, classes, strict=True):
        assert (image[0] == _car_code(e, a, obj)).all()
        assert (image[1] == 7 * a).all() and (image[2] == 9 * e).all()
    again = load("cars3d", path=str(tmp_path / "cars"))  # the cached conversion
    assert np.array_equal(again.images(classes[::-1]), images[::-1].astype(np.uint8))


def test_cars3d_official_view_layout_resizes_128_to_64(tmp_path):
    _write_cars(tmp_path / "cars", objects=1, azimuths=24, elevations=4, size=128)
    ds = load("cars3d", path=str(tmp_path / "cars"))
    assert ds.factor_sizes == (4, 24, 1)
    image = ds.images(np.array([[3, 17, 0]]))[0].astype(int)
    assert (image[0] == _car_code(3, 17, 0)).all() and (image[1] == 7 * 17).all()


def test_cars3d_file_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no \\*.mat"):
        load("cars3d", path=str(tmp_path / "empty"))
    (tmp_path / "bad").mkdir()
    savemat(tmp_path / "bad" / "a.mat", {"images": np.zeros((4, 4, 3, 2, 2), np.uint8)})
    with pytest.raises(DataError, match="lacks key 'im'"):
        load("cars3d", path=str(tmp_path / "bad"))
    (tmp_path / "odd").mkdir()
    savemat(tmp_path / "odd" / "a.mat", {"im": np.zeros((4, 4, 3, 2, 2), np.uint8)})
    savemat(tmp_path / "odd" / "b.mat", {"im": np.zeros((4, 4, 3, 3, 2), np.uint8)})
    with pytest.raises(DataError, match="has shape"):
        load("cars3d", path=str(tmp_path / "odd")).images(np.zeros((1, 3), int))


# -- procedural stand-ins ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "base"), [("smallnorb", [2, 4, 3, 5, 1]), ("cars3d", [1, 5, 90])]
)  # fmt: skip
def test_stand_in_distinct_images_per_factor_value(name, base):
    ds = load(name)
    for k, size in enumerate(ds.factor_sizes):
        classes = np.tile(base, (size, 1))
        classes[:, k] = np.arange(size)
        images = ds.images(classes).reshape(size, -1)
        assert len(np.unique(images, axis=0)) == size, ds.factor_names[k]
    assert np.array_equal(load(name).images(np.array([base])), ds.images(np.array([base])))


def test_smallnorb_stand_in_objects_fit_the_frame():
    ds = load("smallnorb")
    classes = np.array([[c, i, e, a, 0] for c in range(5) for i in range(10)
                        for e in (0, 8) for a in (0, 4, 13)])  # fmt: skip
    images = ds.images(classes)[:, 0].astype(int)
    background = images[0, 0, 0]
    border = np.concatenate([images[:, 0], images[:, -1], images[:, :, 0], images[:, :, -1]], 1)
    assert (border == background).all()
    assert ((images != background).sum(axis=(1, 2)) > 60).all()  # the object shows


def test_cars3d_stand_in_cars_fit_the_frame_on_white():
    ds = load("cars3d")
    classes = np.array([[e, a, o] for o in range(0, 183, 4) for e, a in [(0, 0), (3, 6), (2, 15)]])
    images = ds.images(classes).astype(int)
    border = np.concatenate(
        [images[..., 0, :], images[..., -1, :], images[..., :, 0], images[..., :, -1]], -1
    )
    assert (border == 255).all()
    assert ((images < 250).any(axis=1).sum(axis=(1, 2)) > 150).all()
    car = images[::3].min(axis=1) < 250  # (objects, 64, 64): not white
    colours = {
        tuple(np.round(im[:, m].mean(axis=1))) for im, m in zip(images[::3], car, strict=True)
    }
    assert len(colours) > 30  # seeded colours
