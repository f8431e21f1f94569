"""dSprites (Matthey et al. 2017): a procedural renderer of the full grid and the official-file loader.

Factors (sizes): shape 3 (square, ellipse, heart), scale 6 (0.5..1), orientation 40 (0..2pi),
posX 32 (0..1), posY 32 (0..1) = 737,280 binary 64x64 images. The constant ``color`` factor of the
official file is dropped, as disentanglement_lib does.

The renderer draws the 3 x 6 x 40 = 720 base sprites once (4x4 supersampled, then thresholded, so
rotation keeps the area to within a few pixels) and assembles any batch by cropping a window out of a
padded canvas: positions are whole-pixel translations (1 pixel per posX/posY step, centres 16..47).
It differs from the original images in exact outlines and in the position step (the original moves
about 1.3 pixels per step); the factor grid, order and value ranges are the same.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .base import DataError, GroundTruthData, require_file
from .cache import cache_key, cached_array

FACTOR_NAMES = ("shape", "scale", "orientation", "posX", "posY")
FACTOR_SIZES = (3, 6, 40, 32, 32)
SHAPES = ("square", "ellipse", "heart")
_IMAGE = 64
_CANVAS = _IMAGE + FACTOR_SIZES[3] - 1  # 95: every crop window of a translated sprite fits
_CENTRE = 47  # sprite centre on the canvas; image centre = _CENTRE - offset = 16 + pos index
_PATCH = 16  # half-width of the patch a sprite is drawn into (largest sprite radius ~14 px)
_SUPERSAMPLE = 4
RENDERER_VERSION = 1  # bump when the drawing changes: it keys the on-disk cache


def _default_values() -> tuple[np.ndarray, ...]:
    return (
        np.arange(1.0, 4.0),  # shape ids 1, 2, 3 as in latents_values
        np.linspace(0.5, 1.0, 6),
        np.linspace(0.0, 2 * np.pi, 40),
        np.linspace(0.0, 1.0, 32),
        np.linspace(0.0, 1.0, 32),
    )


def _inside(shape: str, u: np.ndarray, v: np.ndarray, scale: float) -> np.ndarray:
    """Whether sprite-frame points (pixels from the centre) fall inside the shape."""
    size = 13.0 * scale  # ~half extent at scale 1: largest sprite spans ~26 px of 64
    if shape == "square":
        half = 0.62 * size
        return (np.abs(u) <= half) & (np.abs(v) <= half)
    if shape == "ellipse":
        return (u / size) ** 2 + (v / (0.5 * size)) ** 2 <= 1.0
    # Heart curve (x^2 + y^2 - 1)^3 - x^2 y^3 <= 0, spans x in [-1.14, 1.14], y in [-1, 1.25].
    x = u / (0.72 * size)
    y = -v / (0.72 * size) + 0.12  # image rows grow downwards; recentre the vertical extent
    return (x**2 + y**2 - 1.0) ** 3 - x**2 * y**3 <= 0.0


def render_base_sprites() -> np.ndarray:
    """All 720 base sprites centred on a padded canvas: bool (3, 6, 40, 95, 95)."""
    sizes = FACTOR_SIZES
    values = _default_values()
    canvas = np.zeros((sizes[0], sizes[1], sizes[2], _CANVAS, _CANVAS), dtype=bool)
    # Sub-pixel sample offsets inside each pixel, pixel centres at integer coordinates.
    sub = (np.arange(_SUPERSAMPLE) + 0.5) / _SUPERSAMPLE - 0.5
    grid = np.arange(-_PATCH, _PATCH + 1)
    dy = (grid[:, None] + sub[None, :]).reshape(-1)  # (P * S,)
    dx = dy
    yy, xx = np.meshgrid(dy, dx, indexing="ij")
    n = len(grid)
    for o, theta in enumerate(values[2]):
        c, s = np.cos(theta), np.sin(theta)
        u = c * xx + s * yy
        v = -s * xx + c * yy
        for si, shape in enumerate(SHAPES):
            for ci, scale in enumerate(values[1]):
                inside = _inside(shape, u, v, scale).reshape(n, _SUPERSAMPLE, n, _SUPERSAMPLE)
                coverage = inside.mean(axis=(1, 3))
                lo = _CENTRE - _PATCH
                canvas[si, ci, o, lo : lo + n, lo : lo + n] = coverage >= 0.5
    return canvas


class DSprites(GroundTruthData):
    """Procedural dSprites: renders any batch of the 737,280-image grid on demand."""

    name = "dsprites"
    channels = 1
    factor_names = FACTOR_NAMES
    categories = {"shape": SHAPES}
    factor_sizes = FACTOR_SIZES

    def __init__(self) -> None:
        self.factor_values = _default_values()

    @cached_property
    def _base(self) -> np.ndarray:
        key = cache_key(renderer="dsprites", version=RENDERER_VERSION)
        return cached_array("render", key, render_base_sprites)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        shape, scale, orient, pos_x, pos_y = classes.T
        offset = np.arange(_IMAGE)
        rows = (_CENTRE - 16 - pos_y)[:, None] + offset  # (N, 64) canvas rows of the crop window
        cols = (_CENTRE - 16 - pos_x)[:, None] + offset
        sprites = self._base[shape, scale, orient]  # (N, 95, 95)
        batch = np.arange(len(classes))[:, None, None]
        crops = sprites[batch, rows[:, :, None], cols[:, None, :]]  # (N, 64, 64)
        return (crops.astype(np.uint8) * 255)[:, None]


class DSpritesFile(GroundTruthData):
    """The official ``dsprites_ndarray_co1sh3sc6or40x32y32_64x64.npz`` (keys imgs, latents_*).

    Factor sizes and values are read from the file, so smaller files in the same format also load.
    """

    name = "dsprites"
    channels = 1
    factor_names = FACTOR_NAMES
    categories = {"shape": SHAPES}

    def __init__(self, path: str | Path):
        path, where = require_file(path, "dsprites", "dsprites_ndarray_*.npz")
        try:
            archive = np.load(path, allow_pickle=False)
            missing = {"imgs", "latents_values", "latents_classes"} - set(archive.files)
            if missing:
                raise DataError(f"{where} lacks key(s) {sorted(missing)}; has {archive.files}")
            imgs = archive["imgs"]
            values = archive["latents_values"]
            classes = archive["latents_classes"].astype(np.int64)
        except DataError:
            raise
        except Exception as exc:  # zip/format errors from a truncated or foreign file
            raise DataError(f"{where} is not a readable npz: {exc}") from None
        n = len(imgs)
        if imgs.ndim != 3 or imgs.shape[1:] != (_IMAGE, _IMAGE):
            raise DataError(f"{where}: imgs must have shape (N, 64, 64), got {imgs.shape}")
        if classes.shape != (n, 6) or values.shape != (n, 6):
            raise DataError(
                f"{where}: latents_classes and latents_values must have shape ({n}, 6), "
                f"got {classes.shape} and {values.shape}"
            )
        classes = classes[:, 1:]  # drop the constant colour factor
        self.factor_sizes = tuple(int(c) + 1 for c in classes.max(axis=0))
        self.check_official_order(classes, where)
        strides = self._strides
        self.factor_values = tuple(
            values[np.arange(size) * strides[k], k + 1].astype(np.float64)
            for k, size in enumerate(self.factor_sizes)
        )
        self._imgs = imgs
        # Official images are 0/1; scale them to the 0..255 convention of every dataset here.
        self._gain = 255 if imgs[: min(n, 4096)].max(initial=0) <= 1 else 1

    def _render(self, classes: np.ndarray) -> np.ndarray:
        imgs = self._imgs[self.classes_to_index(classes)]
        return (imgs * self._gain).astype(np.uint8)[:, None]
