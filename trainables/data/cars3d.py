"""Cars3D (Reed et al. 2015): the official ``*.mat`` files and a procedural stand-in.

Factors (sizes), as disentanglement_lib uses them: elevation 4, azimuth 24, object 183 = 17,568 RGB
images, 64x64. Factor values are class indices (the files do not state the angles).

The official data are a folder of ``*.mat`` files, one car each (sorted file names give the object
ids), read with ``scipy.io.loadmat``: key ``im`` of shape (128, 128, 3, 24, 4) = (height, width, RGB,
azimuth, elevation). On first use every file is read once, each view resized to 64x64 with PIL's
Lanczos filter (disentanglement_lib's ``ANTIALIAS``) and the grid stored in the on-disk cache, which
later processes memory-map. Other image sizes and view counts in the same layout load too (the
factor sizes are then read from the files).

The procedural stand-in (no ``path``) ray-casts each image on demand: 183 seeded car-like shapes (a
box or rounded body, a box or rounded cabin with a band of dark windows, four wheels, sometimes a spoiler) in
seeded colours on white, seen at elevations 0, 10, 20 and 30 degrees and azimuths every 15 degrees,
under one fixed light. It differs from the real renders of CAD models in geometry, detail and
shading; the grid and order are the same.
"""

from __future__ import annotations

from functools import cache, cached_property
from pathlib import Path

import numpy as np

from .base import DataError, GroundTruthData
from .cache import atomic_save, cache_dir, cache_key
from .raycast import BOX, ELLIPSOID, cast, fit, lambert, primitives
from .shapes3d import hue_to_rgb
from .smallnorb import resize

FACTOR_NAMES = ("elevation", "azimuth", "object")
FACTOR_SIZES = (4, 24, 183)
_SALT = 0xCA53D
_LIGHT = np.array([0.4, 1.0, -0.5])
_WINDOWS, _WHEELS = np.array([0.22, 0.27, 0.35]), np.array([0.12, 0.12, 0.12])


def _values(sizes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    return tuple(np.arange(float(s)) for s in sizes)


@cache
def car(obj: int) -> tuple[np.ndarray, np.ndarray]:
    """One seeded car: primitives (K, 8) and the RGB colour of each part (body, windows, wheels)."""
    rng = np.random.default_rng((_SALT, obj))
    length, width = rng.uniform(0.7, 0.95), rng.uniform(0.3, 0.4)  # half extents
    body_h, wheel_r = rng.uniform(0.09, 0.18), rng.uniform(0.11, 0.17)
    cabin_l, cabin_h = length * rng.uniform(0.35, 0.6), rng.uniform(0.1, 0.2)
    cabin_x, cabin_w = length * rng.uniform(-0.3, 0.15), width * rng.uniform(0.75, 0.95)
    body_kind, cabin_kind = (BOX if rng.random() < 0.6 else ELLIPSOID), rng.integers(0, 2)
    ground = -0.3
    body_y = ground + 0.9 * wheel_r + body_h
    cabin_y = body_y + body_h + 0.6 * cabin_h
    cabin = (cabin_x, cabin_y, 0)
    rows = [
        (body_kind, 0, (0, body_y, 0), (length, body_h, width)),
        (cabin_kind, 0, cabin, (cabin_l, cabin_h, cabin_w)),  # roof, in the body colour
        (cabin_kind, 1, cabin, (1.04 * cabin_l, 0.75 * cabin_h, 1.04 * cabin_w)),  # windows
    ]
    if body_kind == ELLIPSOID:  # a rounded body needs a flat floor to sit the wheels on
        rows.append((BOX, 0, (0, body_y - 0.4 * body_h, 0), (0.8 * length, 0.6 * body_h, width)))
    elif rng.random() < 0.3:  # rear spoiler
        rows.append(
            (BOX, 0, (-0.9 * length, body_y + body_h + 0.02, 0), (0.07, 0.02, 0.85 * width))
        )
    rows += [(ELLIPSOID, 2, (x * 0.62 * length, ground + wheel_r, z * width), (wheel_r, wheel_r, 0.06))
             for x in (-1, 1) for z in (-1, 1)]  # fmt: skip
    hue, saturation, value = rng.uniform(0, 1), rng.uniform(0.2, 0.9), rng.uniform(0.35, 0.95)
    body = value * hue_to_rgb(np.array(hue), saturation)
    return fit(primitives(*rows), 1.0), np.stack([body, _WINDOWS, _WHEELS])


class Cars3D(GroundTruthData):
    """Procedural Cars3D stand-in: 183 ray-cast cars at 4 elevations x 24 azimuths, drawn on demand."""

    name = "cars3d"
    channels = 3
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES

    def __init__(self) -> None:
        self.factor_values = _values(FACTOR_SIZES)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        out = np.empty((len(classes), 3, 64, 64), dtype=np.uint8)
        for i, (elevation, azimuth, obj) in enumerate(classes):
            prims, palette = car(int(obj))
            part, normal = cast(prims, 10.0 * elevation, 15.0 * azimuth, extent=1.05)
            shade = (0.4 + 0.6 * lambert(normal, _LIGHT))[..., None]  # (64, 64, 1)
            image = np.where(part[..., None] >= 0, palette[part] * shade, 1.0)  # white background
            out[i] = np.rint(255 * np.clip(image, 0.0, 1.0)).transpose(2, 0, 1)
        return out


def _read_mat(path: Path) -> np.ndarray:
    """The ``im`` array of one car, uint8 (H, W, 3, azimuths, elevations)."""
    from scipy.io import loadmat

    where = f"cars3d file {str(path)!r}"
    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises several types for a foreign or truncated file
        raise DataError(f"{where} is not a readable .mat file: {exc}") from None
    if "im" not in content:
        keys = sorted(k for k in content if not k.startswith("__"))
        raise DataError(f"{where} lacks key 'im'; has {keys}")
    im = np.asarray(content["im"])
    if im.ndim != 5 or im.shape[2] != 3:
        raise DataError(
            f"{where}: 'im' must have shape (H, W, 3, azimuths, elevations), got {im.shape}"
        )
    if im.dtype != np.uint8:  # float images in [0, 1] or [0, 255]
        im = im * (255.0 if im.max(initial=0) <= 1 else 1.0)
        im = np.rint(np.clip(im, 0, 255)).astype(np.uint8)
    return im


class Cars3DFile(GroundTruthData):
    """The official Cars3D folder of ``*.mat`` files, converted once into the cache."""

    name = "cars3d"
    channels = 3
    factor_names = FACTOR_NAMES

    def __init__(self, path: str | Path):
        self.folder = Path(path)
        self.files = sorted(self.folder.glob("*.mat")) if self.folder.is_dir() else []
        if not self.files:
            raise DataError(
                f"cars3d folder {str(self.folder)!r} not found or holds no *.mat file; expected "
                "the official folder of one .mat file per car (set dataset.options.path)"
            )
        first = _read_mat(self.files[0])
        self._view_shape = first.shape
        self.factor_sizes = (first.shape[4], first.shape[3], len(self.files))
        self.factor_values = _values(self.factor_sizes)

    @cached_property
    def _images(self) -> np.ndarray:
        """Every image in grid order, uint8 (N, 64, 64, 3), memory-mapped from the cache."""
        stats = [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in self.files]
        key = cache_key(folder=str(self.folder.resolve()), files=stats, version=1)
        target = cache_dir() / "cars3d" / f"{key}.npy"
        if not target.is_file():
            elevations, azimuths, objects = self.factor_sizes
            grid = np.empty((elevations, azimuths, objects, 64, 64, 3), dtype=np.uint8)
            for o, path in enumerate(self.files):
                im = _read_mat(path)
                if im.shape != self._view_shape:
                    raise DataError(
                        f"cars3d file {str(path)!r}: 'im' has shape {im.shape}, but "
                        f"{self.files[0].name} has {self._view_shape}"
                    )
                views = im.transpose(4, 3, 0, 1, 2)  # (elevation, azimuth, H, W, 3)
                flat = resize(views.reshape(-1, *views.shape[2:]))
                grid[:, :, o] = flat.reshape(elevations, azimuths, 64, 64, 3)
            atomic_save(target, grid.reshape(-1, 64, 64, 3))
        return np.load(target, mmap_mode="r")

    def _render(self, classes: np.ndarray) -> np.ndarray:
        return np.asarray(self._images[self.classes_to_index(classes)]).transpose(0, 3, 1, 2)
