"""MPI3D (Gondal et al. 2019): the official npz files, memory-mapped, and a procedural toy renderer.

Factors (sizes): object_color 6, object_shape 6, object_size 2, camera_height 3, background_color 3,
horizontal_axis 40, vertical_axis 40 = 1,036,800 images 64x64x3 (``complex``: 4 colours, 4 shapes).
The official ``mpi3d_<variant>.npz`` holds one key, ``images``; factors are implied by row order
(last factor fastest). An uncompressed npz (the official files) is memory-mapped in place; a compressed
one is extracted once into the cache and memory-mapped from there, so 1,036,800 images are never held
in memory twice.

The procedural renderer draws the toy setup in 2D: a coloured back wall, a grey robot arm whose tip is
moved by the two axis factors, and the object (cone, cube, cylinder, hexagonal prism, pyramid, sphere)
in its colour and size at the tip; the camera height shifts and foreshortens the scene. It differs from
the real images in being flat-shaded 2D; grid, order and factor semantics are the same.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .base import DataError, GroundTruthData, require_file
from .cache import cache_dir, cache_key

FACTOR_NAMES = (
    "object_color",
    "object_shape",
    "object_size",
    "camera_height",
    "background_color",
    "horizontal_axis",
    "vertical_axis",
)
VARIANT_SIZES = {
    "toy": (6, 6, 2, 3, 3, 40, 40),
    "realistic": (6, 6, 2, 3, 3, 40, 40),
    "real": (6, 6, 2, 3, 3, 40, 40),
    "complex": (4, 4, 2, 3, 3, 40, 40),
}
OBJECT_COLORS = np.array(
    [
        [0.95, 0.95, 0.95],
        [0.2, 0.75, 0.25],
        [0.85, 0.15, 0.15],
        [0.15, 0.3, 0.9],
        [0.55, 0.35, 0.15],
        [0.5, 0.55, 0.15],
    ]
)  # white, green, red, blue, brown, olive
BACKGROUNDS = np.array(
    [[0.45, 0.25, 0.55], [0.2, 0.55, 0.45], [0.95, 0.55, 0.45]]
)  # purple, sea green, salmon
SHAPES = ("cone", "cube", "cylinder", "hexagonal", "pyramid", "sphere")
# The official variants' class names (toy, realistic, real); "complex" has 4 other objects.
CATEGORIES = {
    "object_color": ("white", "green", "red", "blue", "brown", "olive"),
    "object_shape": SHAPES,
    "object_size": ("small", "large"),
    "camera_height": ("top", "center", "bottom"),
    "background_color": ("purple", "sea green", "salmon"),
}


def _values(sizes: tuple[int, ...]) -> tuple[np.ndarray, ...]:
    return tuple(np.arange(float(s)) for s in sizes)


def _shape_mask(shape: np.ndarray, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Inside test in object coordinates (x right, y down, unit half-size): (N, H, W) bool."""
    ax, ay = np.abs(x), np.abs(y)
    masks = [
        (y >= -1) & (y <= 1) & (ax <= (y + 1) / 2),  # cone: apex up
        (ax <= 0.8) & (ay <= 0.8),  # cube
        (ax <= 0.6) & (ay <= 1.0),  # cylinder
        (ax <= 0.87) & (0.5 * ax + 0.866 * ay <= 0.87),  # hexagonal prism, seen end-on
        (y >= -0.7) & (y <= 0.9) & (ax <= (y + 0.7) / 1.6 * 1.1),  # pyramid: wide and low
        x**2 + y**2 <= 1.0,  # sphere
    ]
    return np.choose(shape[:, None, None], masks)


class MPI3DToy(GroundTruthData):
    """Procedural MPI3D-toy-like renderer on the official factor grid."""

    name = "mpi3d"
    channels = 3
    factor_names = FACTOR_NAMES
    categories = CATEGORIES

    def __init__(self, variant: str = "toy"):
        if variant not in VARIANT_SIZES:
            raise DataError(f"unknown mpi3d variant {variant!r}; known: {sorted(VARIANT_SIZES)}")
        self.variant = variant
        self.factor_sizes = VARIANT_SIZES[variant]
        self.factor_values = _values(self.factor_sizes)

    def _render(self, classes: np.ndarray) -> np.ndarray:
        color, shape, size, camera, background, horizontal, vertical = classes.T
        n = len(classes)
        rows, cols = np.mgrid[0:64, 0:64].astype(np.float64)
        squash = 1.0 - 0.15 * camera  # lower cameras see the arm more from the side
        base_y = 58.0 - 6.0 * (camera - 1)
        angle = (horizontal / 39.0 - 0.5) * np.pi * 0.8
        tip_x = 32.0 + 22.0 * np.sin(angle)
        tip_y = base_y - (12.0 + 30.0 * vertical / 39.0) * squash
        image = np.broadcast_to(BACKGROUNDS[background][:, None, None, :], (n, 64, 64, 3)).copy()
        # Floor band under the arm base, darker than the wall.
        floor = rows[None] > (base_y + 2)[:, None, None]
        image[floor] *= 0.6
        # Arm: distance of each pixel to the segment base -> tip.
        bx, by = np.full(n, 32.0), base_y
        dx, dy = tip_x - bx, tip_y - by
        length2 = dx**2 + dy**2
        t = ((cols[None] - bx[:, None, None]) * dx[:, None, None]
             + (rows[None] - by[:, None, None]) * dy[:, None, None]) / length2[:, None, None]  # fmt: skip
        t = np.clip(t, 0.0, 1.0)
        px = bx[:, None, None] + t * dx[:, None, None]
        py = by[:, None, None] + t * dy[:, None, None]
        arm = (cols[None] - px) ** 2 + (rows[None] - py) ** 2 <= 2.2**2
        image[arm] = 0.55
        # Object at the tip, in its colour, left half shaded.
        radius = np.where(size == 1, 8.0, 5.0)[:, None, None] * squash[:, None, None] ** 0.3
        ox = (cols[None] - tip_x[:, None, None]) / radius
        oy = (rows[None] - tip_y[:, None, None]) / radius
        inside = _shape_mask(shape, ox, oy)
        shade = np.where(ox < -0.2, 0.75, 1.0)[..., None]
        image = np.where(inside[..., None], OBJECT_COLORS[color][:, None, None, :] * shade, image)
        return np.rint(255 * np.clip(image, 0, 1)).astype(np.uint8).transpose(0, 3, 1, 2)


def _memmap_npz_member(path: Path, member: str) -> np.ndarray:
    """Memory-map ``member`` of an npz: in place if stored uncompressed, else via a cached .npy."""
    with zipfile.ZipFile(path) as archive:
        info = archive.getinfo(f"{member}.npy")
        if info.compress_type == zipfile.ZIP_STORED:
            with open(path, "rb") as handle:
                handle.seek(info.header_offset)
                local = handle.read(30)
                name_length = int.from_bytes(local[26:28], "little")
                extra_length = int.from_bytes(local[28:30], "little")
                handle.seek(info.header_offset + 30 + name_length + extra_length)
                version = np.lib.format.read_magic(handle)
                read_header = (
                    np.lib.format.read_array_header_1_0
                    if version == (1, 0)
                    else np.lib.format.read_array_header_2_0
                )
                shape, fortran, dtype = read_header(handle)
                offset = handle.tell()
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape,
                             order="F" if fortran else "C")  # fmt: skip
        stat = path.stat()
        key = cache_key(
            path=str(path.resolve()), size=stat.st_size, mtime=stat.st_mtime_ns, member=member
        )
        target = cache_dir() / "extracted" / f"{key}.npy"
        if not target.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
            try:
                with os.fdopen(fd, "wb") as out, archive.open(info) as source:
                    shutil.copyfileobj(source, out, length=16 << 20)
                os.replace(tmp, target)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
    return np.load(target, mmap_mode="r")


class MPI3DFile(GroundTruthData):
    """An official ``mpi3d_<variant>.npz``; ``factor_sizes`` reads smaller grids in the same format."""

    name = "mpi3d"
    channels = 3
    factor_names = FACTOR_NAMES
    categories = CATEGORIES

    def __init__(
        self, path: str | Path, variant: str = "toy", factor_sizes: list[int] | None = None
    ):
        if variant not in VARIANT_SIZES:
            raise DataError(f"unknown mpi3d variant {variant!r}; known: {sorted(VARIANT_SIZES)}")
        path, where = require_file(path, "mpi3d", f"mpi3d_{variant}.npz")
        self.variant = variant
        self.factor_sizes = tuple(factor_sizes or VARIANT_SIZES[variant])
        if len(self.factor_sizes) != 7:
            raise DataError(f"{where}: factor_sizes needs 7 entries, got {list(self.factor_sizes)}")
        self.factor_values = _values(self.factor_sizes)
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
            if "images.npy" not in names:
                raise DataError(f"{where} lacks key 'images'; has {[n[:-4] for n in names]}")
            images = _memmap_npz_member(path, "images")
        except DataError:
            raise
        except (zipfile.BadZipFile, ValueError, OSError, EOFError) as exc:
            raise DataError(f"{where} is not a readable npz (truncated?): {exc}") from None
        expected = (self.num_samples, 64, 64, 3)
        if images.shape != expected:
            raise DataError(
                f"{where}: images must have shape {expected} for variant {variant!r} "
                f"(factor sizes {list(self.factor_sizes)}), got {images.shape}"
            )
        self._images = images

    def _render(self, classes: np.ndarray) -> np.ndarray:
        return np.asarray(self._images[self.classes_to_index(classes)]).transpose(0, 3, 1, 2)
