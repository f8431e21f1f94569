"""Colour, noisy and scream dSprites (Locatello et al. 2019, as disentanglement_lib defines them).

Each variant draws the dSprites sprite (procedural, or the official file with ``path``) into a 3-channel
64x64 image on the same factor grid (shape 3, scale 6, orientation 40, posX 32, posY 32):

- ``color_dsprites``: the white sprite times an RGB colour drawn uniformly from [0.5, 1] per channel,
  on black. The colour is per image noise, not a factor.
- ``noisy_dsprites``: the background is uniform noise in [0, 1] per pixel and channel; sprite pixels
  are white (1).
- ``scream_dsprites``: the background is a random 64x64 crop of the Scream painting, blended as
  ``(crop + c) / 2`` with a uniform random colour ``c`` in [0, 1]^3; sprite pixels are inverted
  (``1 - background``). ``scream_path`` reads the painting (any image PIL opens), reduced to fit
  350 x 274 pixels as disentanglement_lib does. Without it a procedural stand-in (seeded swirling
  bands of orange and red over blue, made of sines) takes its place: the same blending and inversion,
  but a texture that only resembles the painting's palette and swirls, not its content.

The random draws (colour, noise, crop) are deterministic given the image: each image's generator is
seeded by (variant, grid index of its factor classes), so an index gives the same image in every
process, whatever batch it is drawn in. Images are uint8 like every dataset here; the inverted
sprite is ``255 - background`` exactly.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .base import DataError, GroundTruthData
from .dsprites import FACTOR_NAMES, SHAPES, DSprites, DSpritesFile

_SALTS = {"color_dsprites": 0x0C010A, "noisy_dsprites": 0x0A015E, "scream_dsprites": 0x5C4EA3}
_SCREAM_SIZE = (350, 274)  # (width, height) the painting is reduced to fit, as the reference does
_TEXTURE_SEED = 1893  # the procedural stand-in's texture (the painting's year)


class DSpritesVariant(GroundTruthData):
    """dSprites sprites painted into 3 channels by ``_paint``, one seeded generator per image."""

    channels = 3
    factor_names = FACTOR_NAMES
    categories = {"shape": SHAPES}

    def __init__(self, path: str | None = None):
        self.base = DSpritesFile(path) if path else DSprites()
        self.factor_sizes = self.base.factor_sizes
        self.factor_values = self.base.factor_values

    def _render(self, classes: np.ndarray) -> np.ndarray:
        masks = self.base.images(classes)[:, 0] > 0  # (N, 64, 64) sprite pixels
        index = self.base.classes_to_index(classes)
        out = np.empty((len(classes), 3, 64, 64), dtype=np.uint8)
        for i, (mask, row) in enumerate(zip(masks, index, strict=True)):
            rng = np.random.default_rng((_SALTS[self.name], int(row)))
            out[i] = self._paint(mask, rng)
        return out

    def _paint(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One image from its sprite mask (64, 64) bool: uint8 (3, 64, 64)."""
        raise NotImplementedError


def _to_uint8(image: np.ndarray) -> np.ndarray:
    return np.rint(255 * np.clip(image, 0.0, 1.0)).astype(np.uint8)


class ColorDSprites(DSpritesVariant):
    """dSprites in a random colour per image, each channel uniform in [0.5, 1], on black."""

    name = "color_dsprites"

    def _paint(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        colour = _to_uint8(rng.uniform(0.5, 1.0, 3))  # (3,)
        return colour[:, None, None] * mask[None]  # (3, 64, 64)


class NoisyDSprites(DSpritesVariant):
    """dSprites as white sprites on uniform [0, 1] noise, per pixel and channel."""

    name = "noisy_dsprites"

    def _paint(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noise = _to_uint8(rng.uniform(0.0, 1.0, (3, 64, 64)))
        return np.where(mask[None], np.uint8(255), noise)


def scream_texture(seed: int = _TEXTURE_SEED) -> np.ndarray:
    """A procedural stand-in for the Scream: float (274, 220, 3) in [0, 1], swirling bands of
    orange, red and yellow above blue and dark violet, with a diagonal brown band (the bridge)."""
    height, width = _SCREAM_SIZE[1], 220
    rng = np.random.default_rng(seed)
    phase = rng.uniform(0, 2 * np.pi, 6)
    y, x = np.mgrid[0:height, 0:width] / np.array([height, width])[:, None, None]
    swirl = np.sin(2.5 * x + 1.5 * np.sin(3.0 * y + phase[0]) + phase[1])  # (H, W) in [-1, 1]
    bands = np.sin(26 * y + 5 * swirl + 2 * np.sin(7 * x + phase[2]))
    eddies = np.sin(19 * np.hypot(x - 0.3, y - 0.62) + 4 * swirl + phase[3])
    sky = np.clip(1.0 - (y - 0.42) / 0.08, 0.0, 1.0)[..., None]  # 1 above the horizon, 0 below
    warm_a, warm_b = np.array([0.95, 0.55, 0.15]), np.array([0.8, 0.2, 0.12])
    cool_a, cool_b = np.array([0.2, 0.35, 0.65]), np.array([0.12, 0.1, 0.3])
    t = (0.5 + 0.5 * bands)[..., None]
    s = (0.5 + 0.5 * eddies)[..., None]
    image = sky * (t * warm_a + (1 - t) * warm_b) + (1 - sky) * (s * cool_a + (1 - s) * cool_b)
    highlight = np.clip(np.sin(9 * y + 3 * swirl + phase[4]) - 0.7, 0.0, 0.3)[..., None]
    image = image + highlight * np.array([1.0, 0.9, 0.3])  # yellow streaks
    bridge = np.abs((y - 0.55) - 0.55 * (1 - x)) < 0.05 + 0.01 * np.sin(40 * x + phase[5])
    image[bridge & (x < 0.85)] = [0.45, 0.28, 0.15]
    return np.clip(image, 0.0, 1.0)


def read_scream(path: str | Path) -> np.ndarray:
    """The painting from an image file, reduced to fit 350 x 274: float (H, W, 3) in [0, 1]."""
    from PIL import Image, UnidentifiedImageError

    path, where = Path(path), f"scream_dsprites painting {str(path)!r}"
    if not path.is_file():
        raise DataError(
            f"{where} not found; set dataset.options.scream_path to an image of the Scream"
        )
    try:
        with Image.open(path) as picture:
            picture = picture.convert("RGB")
            picture.thumbnail(_SCREAM_SIZE)
            image = np.asarray(picture, dtype=np.float64) / 255.0
    except (UnidentifiedImageError, OSError) as exc:
        raise DataError(f"{where} is not a readable image: {exc}") from None
    if image.shape[0] < 64 or image.shape[1] < 64:
        raise DataError(f"{where}: the painting must be at least 64x64, got {image.shape[:2]}")
    return image


class ScreamDSprites(DSpritesVariant):
    """dSprites on a random crop of the Scream, blended with a random colour; the sprite inverts it."""

    name = "scream_dsprites"

    def __init__(self, path: str | None = None, scream_path: str | None = None):
        super().__init__(path)
        self._painting = read_scream(scream_path) if scream_path else None

    @cached_property
    def scream(self) -> np.ndarray:
        """The background picture, float (H, W, 3) in [0, 1]."""
        return scream_texture() if self._painting is None else self._painting

    def _paint(self, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        height, width = self.scream.shape[:2]
        top = rng.integers(0, height - 64 + 1)
        left = rng.integers(0, width - 64 + 1)
        colour = rng.uniform(0.0, 1.0, 3)
        patch = self.scream[top : top + 64, left : left + 64]  # (64, 64, 3)
        background = _to_uint8((patch + colour) / 2).transpose(2, 0, 1)  # (3, 64, 64)
        return np.where(mask[None], 255 - background, background)
