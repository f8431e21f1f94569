from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from matplotlib.image import imread

from trainables.core.pictures import (
    embed,
    factor_colours,
    matrix_heatmap,
    reconstructions,
    traversal_values,
    traversals,
    umap_embedding,
)

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _assert_png(path: Path) -> np.ndarray:
    """A readable PNG of sensible size; returns the decoded pixels."""
    path = Path(path)
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE)
    assert len(data) < 1.5 * 1024 * 1024
    pixels = imread(path)
    assert pixels.shape[0] > 100 and pixels.shape[1] > 100
    return pixels


def _two_clusters(rng: np.random.Generator, n: int = 300, dims: int = 5) -> np.ndarray:
    return np.concatenate([rng.normal(0.0, 1.0, (n, dims)), rng.normal(10.0, 1.0, (n, dims))])


@pytest.mark.parametrize("channels", [1, 3])
def test_reconstructions_writes_png(tmp_path, rng, channels):
    x = rng.random((20, channels, 32, 32))  # more than 16: only the first 16 pairs are drawn
    y = np.clip(x + rng.normal(0, 0.1, x.shape), 0, 1)
    out = reconstructions(x, y, tmp_path / "sub" / "recon.png", title="epoch 3")
    assert out == tmp_path / "sub" / "recon.png"
    pixels = _assert_png(out)
    # the images themselves are drawn: not a blank canvas
    assert pixels[..., :3].std() > 0.05


def test_reconstructions_few_images(tmp_path, rng):
    x = rng.random((3, 1, 64, 64))
    _assert_png(reconstructions(x, x, tmp_path / "r.png"))


def test_reconstructions_shape_mismatch_raises(tmp_path, rng):
    with pytest.raises(ValueError):
        reconstructions(rng.random((4, 1, 32, 32)), rng.random((4, 1, 32, 16)), tmp_path / "r.png")
    with pytest.raises(ValueError):
        reconstructions(rng.random((4, 1, 8, 8)), rng.random((5, 1, 8, 8)), tmp_path / "r.png")
    assert not (tmp_path / "r.png").exists()


def test_traversal_values_inclusive_and_exact():
    values = traversal_values(-1, 1, 0.1)
    assert len(values) == 21
    assert values[0] == -1.0 and values[-1] == 1.0
    assert values[10] == 0.0 and not np.signbit(values[10])
    np.testing.assert_allclose(np.diff(values), 0.1, atol=1e-12)
    np.testing.assert_array_equal(traversal_values(0, 2, 0.5), [0.0, 0.5, 1.0, 1.5, 2.0])
    with pytest.raises(ValueError):
        traversal_values(-1, 1, 0)


def test_traversals_writes_png(tmp_path, rng):
    values = traversal_values(-1, 1, 0.1)
    grid = rng.random((3, len(values), 1, 64, 64))
    labels = [f"z{i} (KL {kl:.1f})" for i, kl in enumerate([3.2, 0.4, 0.0])]
    out = traversals(grid, tmp_path / "trav.png", values=values, row_labels=labels, title="t")
    pixels = _assert_png(out)
    assert pixels.shape[1] > pixels.shape[0]  # wide: 21 columns, 3 rows


def test_traversals_large_grid_stays_compact(tmp_path, rng):
    values = traversal_values(-1, 1, 0.1)
    # blurry blobs moving with the value, like a VAE decoder's output
    yy, xx = np.mgrid[0:64, 0:64] / 63.0
    centres = (values + 1) / 2
    blobs = np.exp(-((xx - centres[:, None, None]) ** 2 + (yy - 0.5) ** 2) / 0.02)
    scale = rng.uniform(0.5, 1.0, (10, 1, 3, 1, 1))
    grid = scale * blobs[None, :, None] + rng.normal(0, 0.02, (10, len(values), 3, 64, 64))
    out = traversals(
        grid, tmp_path / "t.png", values=values, row_labels=[f"z{i}" for i in range(10)]
    )
    pixels = _assert_png(out)
    assert pixels.shape[1] <= 14 * 100  # width capped at ~14 inch
    assert out.stat().st_size < 1024 * 1024


def test_traversals_validates_labels(tmp_path, rng):
    grid = rng.random((2, 5, 1, 16, 16))
    with pytest.raises(ValueError):
        traversals(grid, tmp_path / "t.png", values=np.linspace(-1, 1, 4), row_labels=["a", "b"])
    with pytest.raises(ValueError):
        traversals(grid, tmp_path / "t.png", values=np.linspace(-1, 1, 5), row_labels=["a"])


@pytest.fixture(scope="module")
def clusters():
    codes = _two_clusters(np.random.default_rng(1))
    first = embed(codes, max_points=2000, seed=0)
    second = embed(codes, max_points=2000, seed=0)
    return codes, first, second


def test_embed_keeps_clusters_apart(clusters):
    codes, (rows, xy), _ = clusters
    np.testing.assert_array_equal(rows, np.arange(len(codes)))
    assert xy.shape == (len(codes), 2) and np.isfinite(xy).all()
    label = rows >= 300
    a, b = xy[~label], xy[label]
    centroid_distance = np.linalg.norm(a.mean(0) - b.mean(0))
    spread = np.mean(
        [np.linalg.norm(a - a.mean(0), axis=1).mean(), np.linalg.norm(b - b.mean(0), axis=1).mean()]
    )
    assert centroid_distance > spread


def test_embed_is_deterministic_for_a_seed(clusters):
    _, (rows1, xy1), (rows2, xy2) = clusters
    np.testing.assert_array_equal(rows1, rows2)
    np.testing.assert_array_equal(xy1, xy2)


def test_embed_subsamples_reproducibly(rng):
    codes = rng.normal(size=(200, 4))
    codes[:, 2] = 1.5  # a constant column must not break anything
    rows, xy = embed(codes, max_points=50, seed=3, n_neighbors=10)
    assert len(rows) == 50 and len(np.unique(rows)) == 50
    assert np.all(np.diff(rows) > 0) and rows.min() >= 0 and rows.max() < 200
    assert xy.shape == (50, 2)
    rows_again, _ = embed(codes, max_points=50, seed=3, n_neighbors=10)
    np.testing.assert_array_equal(rows, rows_again)


def test_embed_rejects_degenerate_codes():
    with pytest.raises(ValueError, match="not enough distinct codes"):
        embed(np.zeros((100, 6)))
    with pytest.raises(ValueError, match="not enough distinct codes"):
        embed(np.arange(8.0).reshape(4, 2))


def test_umap_embedding_writes_png(tmp_path, rng):
    codes = _two_clusters(rng, n=60, dims=4)
    codes[:, 1] = 0.0  # partly collapsed code
    factors = np.stack([np.repeat([0, 1], 60), rng.random(120), rng.integers(0, 3, 120)], axis=1)
    out = umap_embedding(
        codes, factors, ["cluster", "noise", "shape"], tmp_path / "umap.png", max_points=100
    )
    _assert_png(out)


def test_factor_colours_name_nominal_classes_and_order_few_ordered_ones():
    import matplotlib

    shape = np.array([2, 0, 1, 0, 2])
    legend = factor_colours(shape, ["square", "ellipse", "heart"])
    cycle = matplotlib.colormaps["tab10"]
    assert legend == [("square", cycle(0)), ("ellipse", cycle(1)), ("heart", cycle(2))]
    # An ordered factor of few classes: its classes in order, colours from dark to light.
    scale = np.array([0.0, 5.0, 2.0, 5.0])
    legend = factor_colours(scale)
    assert [label for label, _ in legend] == ["0", "2", "5"]
    viridis = matplotlib.colormaps["viridis"]
    assert [colour for _, colour in legend] == [viridis(0.0), viridis(0.5), viridis(1.0)]
    # Names that do not fit the classes (another variant): by index, ordered colours.
    assert [label for label, _ in factor_colours(np.array([0, 7]), ["a", "b"])] == ["0", "7"]
    assert factor_colours(np.arange(40.0)) == []  # many classes: a colour bar
    assert factor_colours(np.array([0.5, 1.5])) == []  # not classes: a colour bar


def test_umap_names_the_classes_of_a_nominal_factor(tmp_path, rng, monkeypatch):
    """The figure's shape panel has a legend of the shape names, its 40-class panel a colour bar."""
    from matplotlib.figure import Figure

    from trainables.core import pictures

    drawn = []
    monkeypatch.setattr(pictures, "save_png", lambda fig, path: drawn.append(fig) or Path(path))
    codes = _two_clusters(rng, n=60, dims=4)
    factors = np.stack([rng.integers(0, 3, 120), rng.integers(0, 40, 120)], axis=1)
    umap_embedding(codes, factors, ["shape", "orientation"], tmp_path / "u.png",
                   categories={"shape": ["square", "ellipse", "heart"]})  # fmt: skip
    (fig,) = drawn
    assert isinstance(fig, Figure)
    shape_ax, orientation_ax, colourbar = fig.axes[:3]
    legend = [t.get_text() for t in shape_ax.get_legend().get_texts()]
    assert legend == ["square", "ellipse", "heart"]
    assert orientation_ax.get_legend() is None and len(fig.axes) == 3  # one colour bar


@pytest.mark.parametrize("codes", [np.zeros((50, 6)), np.ones((3, 6))])
def test_umap_embedding_degenerate_codes_still_write_png(tmp_path, codes):
    factors = np.arange(len(codes) * 2.0).reshape(len(codes), 2)
    out = umap_embedding(codes, factors, ["a", "b"], tmp_path / "degenerate.png")
    _assert_png(out)


def test_matrix_heatmap_writes_png(tmp_path, rng):
    m = rng.random((10, 5))
    out = matrix_heatmap(
        m,
        tmp_path / "dci.png",
        row_labels=[f"z{i}" for i in range(10)],
        col_labels=["shape", "scale", "orientation", "posX", "posY"],
        title="DCI importance",
    )
    _assert_png(out)
    with pytest.raises(ValueError):
        matrix_heatmap(m, tmp_path / "x.png", row_labels=["a"], col_labels=list("abcde"), title="")


def test_reconstructions_show_images_from_across_the_test_split():
    from trainables.core.artifacts import picture_rows
    from trainables.core.view import prepare_view
    from trainables.testing import TINY_VIEW

    view = prepare_view(TINY_VIEW)  # 3 shapes x 2 scales x 16 positions
    rows = picture_rows(view["test"], 8)
    assert len(rows) == 8 and set(rows) <= set(view["test"])
    factors = view["factors"][rows]
    names = list(view["factor_names"])
    assert len(set(factors[:, names.index("shape")])) == 3  # the first 8 rows miss the last shape
