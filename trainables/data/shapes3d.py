"""Shapes3D (Burgess & Kim 2018): a procedural ray-cast renderer of the full grid and the official h5.

Factors (sizes): floor_hue 10, wall_hue 10, object_hue 10 (hues 0, 0.1, .., 0.9), scale 8 (0.75..1.25),
shape 4 (cube, cylinder, sphere, capsule), orientation 15 (-30..30 degrees) = 480,000 images 64x64x3.

The scene is a floor plane, a back wall and an object standing on the floor, seen by a camera that
orbits the object by ``orientation`` degrees under a fixed light. Colour factors only recolour a
geometry, so the 4 x 8 x 15 = 480 geometries (per-pixel surface id and Lambert shade) are ray-cast once,
cached on disk, and every batch is coloured on the fly. It differs from the original images in
lighting, camera distance and object proportions; the grid, order and value ranges are the same.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path

import numpy as np

from .base import DataError, GroundTruthData, require_file
from .cache import cache_key, cached_array

FACTOR_NAMES = ("floor_hue", "wall_hue", "object_hue", "scale", "shape", "orientation")
FACTOR_SIZES = (10, 10, 10, 8, 4, 15)
SHAPES = ("cube", "cylinder", "sphere", "capsule")
RENDERER_VERSION = 1
_SIZE = 64
_FLOOR, _WALL, _OBJECT = 0, 1, 2
_LIGHT = np.array([-0.4, 0.8, -0.9]) / np.linalg.norm([-0.4, 0.8, -0.9])
_WALL_Z = 2.2  # the back wall plane, behind the object seen from the default camera


def _default_values() -> tuple[np.ndarray, ...]:
    hues = np.linspace(0.0, 1.0, 10, endpoint=False)
    return (
        hues,
        hues,
        hues,
        np.linspace(0.75, 1.25, 8),
        np.arange(4.0),
        np.linspace(-30.0, 30.0, 15),
    )


def _camera_rays(orientation_deg: float) -> tuple[np.ndarray, np.ndarray]:
    """Ray origin (3,) and unit directions (64*64, 3) of a camera orbiting the object."""
    angle = np.deg2rad(orientation_deg)
    distance, height = 3.0, 1.3
    origin = np.array([distance * np.sin(angle), height, -distance * np.cos(angle)])
    target = np.array([0.0, 0.55, 0.0])
    forward = (target - origin) / np.linalg.norm(target - origin)
    right = np.cross([0.0, 1.0, 0.0], forward)
    right /= np.linalg.norm(right)
    up = np.cross(forward, right)
    pixels = (np.arange(_SIZE) + 0.5) / _SIZE * 2 - 1  # [-1, 1]
    v, u = np.meshgrid(-pixels, pixels, indexing="ij")  # rows top to bottom
    fov = np.tan(np.deg2rad(21))
    directions = forward + fov * (u.reshape(-1, 1) * right + v.reshape(-1, 1) * up)
    return origin, directions / np.linalg.norm(directions, axis=1, keepdims=True)


def _sphere(o, d, centre, radius):
    oc = o - centre
    b = d @ oc
    c = oc @ oc - radius**2
    disc = b**2 - c
    t = -b - np.sqrt(np.maximum(disc, 0.0))
    t = np.where((disc >= 0) & (t > 1e-6), t, np.inf)
    normal = (o + t[:, None] * d - centre) / radius
    return t, normal


def _cylinder(o, d, radius, y0, y1):
    """Vertical cylinder on the y axis between y0 and y1, with a top cap."""
    a = d[:, 0] ** 2 + d[:, 2] ** 2
    b = 2 * (o[0] * d[:, 0] + o[2] * d[:, 2])
    c = o[0] ** 2 + o[2] ** 2 - radius**2
    disc = b**2 - 4 * a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / (2 * np.maximum(a, 1e-12))
    y = o[1] + t * d[:, 1]
    t_side = np.where((disc >= 0) & (t > 1e-6) & (y >= y0) & (y <= y1), t, np.inf)
    hit = o + t_side[:, None] * d
    n_side = np.stack([hit[:, 0], np.zeros(len(d)), hit[:, 2]], 1) / radius
    t_cap = (y1 - o[1]) / np.where(np.abs(d[:, 1]) > 1e-12, d[:, 1], 1e-12)
    cap = o + t_cap[:, None] * d
    t_cap = np.where((t_cap > 1e-6) & (cap[:, 0] ** 2 + cap[:, 2] ** 2 <= radius**2), t_cap, np.inf)
    use_cap = t_cap < t_side
    normal = np.where(use_cap[:, None], [0.0, 1.0, 0.0], n_side)
    return np.minimum(t_side, t_cap), normal


def _box(o, d, half):
    """Axis-aligned box centred at (0, half[1], 0) (standing on the floor)."""
    centre = np.array([0.0, half[1], 0.0])
    safe = np.where(np.abs(d) > 1e-12, d, 1e-12)
    t0 = (centre - half - o) / safe
    t1 = (centre + half - o) / safe
    t_near = np.minimum(t0, t1)
    t_far = np.maximum(t0, t1)
    t_enter = t_near.max(axis=1)
    t_exit = t_far.min(axis=1)
    t = np.where((t_enter <= t_exit) & (t_enter > 1e-6), t_enter, np.inf)
    axis = t_near.argmax(axis=1)
    normal = np.zeros_like(d)
    normal[np.arange(len(d)), axis] = -np.sign(safe[np.arange(len(d)), axis])
    return t, normal


def _object(o, d, shape: str, scale: float):
    if shape == "cube":
        return _box(o, d, np.array([0.42, 0.42, 0.42]) * scale)
    if shape == "sphere":
        r = 0.5 * scale
        return _sphere(o, d, np.array([0.0, r, 0.0]), r)
    if shape == "cylinder":
        return _cylinder(o, d, 0.42 * scale, 0.0, 0.95 * scale)
    # Capsule: a cylinder body between two hemispheres.
    r, h = 0.34 * scale, 1.1 * scale
    parts = [
        _cylinder(o, d, r, r, h - r),
        _sphere(o, d, np.array([0.0, r, 0.0]), r),
        _sphere(o, d, np.array([0.0, h - r, 0.0]), r),
    ]
    t = np.min([p[0] for p in parts], axis=0)
    which = np.argmin([p[0] for p in parts], axis=0)
    normal = np.choose(which[:, None], [p[1] for p in parts])
    return t, normal


def render_geometry(shape: str, scale: float, orientation: float) -> np.ndarray:
    """Surface id (floor 0, wall 1, object 2) and shade 0..255: uint8 (2, 64, 64)."""
    o, d = _camera_rays(orientation)
    t_obj, n_obj = _object(o, d, shape, scale)
    t_floor = np.where(d[:, 1] < -1e-9, -o[1] / np.where(d[:, 1] < -1e-9, d[:, 1], -1), np.inf)
    t_wall = np.where(
        d[:, 2] > 1e-9, (_WALL_Z - o[2]) / np.where(d[:, 2] > 1e-9, d[:, 2], 1), np.inf
    )
    t_all = np.stack([t_floor, t_wall, t_obj], axis=1)
    surface = t_all.argmin(axis=1)
    normals = np.where(
        (surface == _OBJECT)[:, None],
        n_obj,
        np.where((surface == _FLOOR)[:, None], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]),
    )
    shade = 0.35 + 0.65 * np.clip(normals @ _LIGHT, 0.0, 1.0)
    # Soft contact shadow: darken the floor near the object's foot, so the object reads as standing.
    hit = o + np.where(np.isfinite(t_floor), t_floor, 0)[:, None] * d
    radial = np.hypot(hit[:, 0] + 0.25, hit[:, 2] + 0.2)
    shadow = np.where(surface == _FLOOR, 1.0 - 0.35 * np.exp(-((radial / (0.6 * scale)) ** 2)), 1.0)
    shade = np.clip(shade * shadow, 0.0, 1.0)
    return np.stack(
        [surface.reshape(_SIZE, _SIZE), np.rint(255 * shade).reshape(_SIZE, _SIZE)]
    ).astype(np.uint8)


def render_geometries() -> np.ndarray:
    """All 8 x 4 x 15 geometries: uint8 (8, 4, 15, 2, 64, 64)."""
    values = _default_values()
    return np.stack(
        [
            np.stack(
                [np.stack([render_geometry(shape, s, o) for o in values[5]]) for shape in SHAPES]
            )
            for s in values[3]
        ]
    )


def hue_to_rgb(hue: np.ndarray, saturation: float = 0.85) -> np.ndarray:
    """Vectorised HSV (value 1) -> RGB in [0, 1]: (...,) -> (..., 3)."""
    h6 = (np.asarray(hue) % 1.0) * 6.0
    k = (np.array([5.0, 3.0, 1.0]) + h6[..., None]) % 6.0
    return 1.0 - saturation * np.clip(np.minimum(k, 4.0 - k), 0.0, 1.0)


class Shapes3D(GroundTruthData):
    name = "shapes3d"
    channels = 3
    factor_names = FACTOR_NAMES
    categories = {"shape": SHAPES}
    factor_sizes = FACTOR_SIZES

    def __init__(self) -> None:
        self.factor_values = _default_values()

    @cached_property
    def _geometry(self) -> np.ndarray:
        key = cache_key(renderer="shapes3d", version=RENDERER_VERSION)
        return cached_array("render", key, render_geometries)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        geometry = self._geometry[classes[:, 3], classes[:, 4], classes[:, 5]]  # (N, 2, 64, 64)
        hues = np.stack([self.factor_values[k][classes[:, k]] for k in range(3)], 1)  # (N, 3)
        palette = hue_to_rgb(hues)  # (N, surface, rgb)
        surface, shade = geometry[:, 0].astype(np.intp), geometry[:, 1] / 255.0
        rgb = palette[np.arange(len(classes))[:, None, None], surface]  # (N, 64, 64, 3)
        image = rgb * shade[..., None]
        return np.rint(255 * image).astype(np.uint8).transpose(0, 3, 1, 2)


class Shapes3DFile(GroundTruthData):
    """The official ``3dshapes.h5``: datasets ``images`` (N, 64, 64, 3) uint8 and ``labels`` (N, 6),
    orientation fastest. Read lazily: only requested rows leave the file."""

    name = "shapes3d"
    channels = 3
    factor_names = FACTOR_NAMES
    categories = {"shape": SHAPES}

    def __init__(self, path: str | Path):
        import h5py

        path, where = require_file(path, "shapes3d", "3dshapes.h5")
        try:
            self._file = h5py.File(path, "r")
        except OSError as exc:
            raise DataError(f"{where} is not a readable HDF5 file: {exc}") from None
        missing = {"images", "labels"} - set(self._file.keys())
        if missing:
            raise DataError(
                f"{where} lacks dataset(s) {sorted(missing)}; has {sorted(self._file.keys())}"
            )
        images, labels = self._file["images"], self._file["labels"]
        if images.ndim != 4 or images.shape[1:] != (64, 64, 3) or images.dtype != np.uint8:
            raise DataError(
                f"{where}: images must be uint8 (N, 64, 64, 3), got {images.dtype} {images.shape}"
            )
        if labels.shape != (images.shape[0], 6):
            raise DataError(
                f"{where}: labels must have shape ({images.shape[0]}, 6), got {labels.shape}"
            )
        try:
            values = labels[:]
        except OSError as exc:
            raise DataError(f"{where} is truncated or corrupt: {exc}") from None
        self.factor_values = tuple(np.unique(values[:, k]) for k in range(6))
        self.factor_sizes = tuple(len(v) for v in self.factor_values)
        classes = np.stack(
            [np.searchsorted(self.factor_values[k], values[:, k]) for k in range(6)], 1
        )
        self.check_official_order(classes, where)
        self._images = images

    def _render(self, classes: np.ndarray) -> np.ndarray:
        index = self.classes_to_index(classes)
        order = np.argsort(index)
        unique, inverse = np.unique(index[order], return_inverse=True)
        try:
            rows = self._images[unique]  # h5py needs increasing indices
        except OSError as exc:
            raise DataError(f"shapes3d file: cannot read images ({exc})") from None
        out = np.empty((len(index), 64, 64, 3), dtype=np.uint8)
        out[order] = rows[inverse]
        return out.transpose(0, 3, 1, 2)
