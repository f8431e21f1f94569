"""smallNORB (LeCun et al. 2004): the official binary files and a procedural stand-in.

Factors (sizes), as disentanglement_lib uses them: category 5 (animal, human, airplane, truck, car),
instance 10, elevation 9 (30..70 degrees), azimuth 18 (0..340 degrees), lighting 6 = 48,600 grayscale
images, 64x64.

The official data are six files in the NORB binary matrix format, ``smallnorb-<...>-{training,testing}-
{dat,cat,info}.mat`` (the training files are ``5x46789x...``, the testing ones ``5x01235x...``): an int32
magic number (0x1E3D4C55 uint8, 0x1E3D4C54 int32), an int32 ndim, max(3, ndim) int32 dimensions, then
the data, little-endian. ``dat`` holds (N, 2, 96, 96) stereo pairs, ``cat`` (N,) categories and ``info``
(N, 4) instance, elevation, azimuth (0, 2, .., 34) and lighting. We keep the first image of each pair,
merge training and testing (the instances 0..9 are split between them) and index the merged rows by
the factor grid; ``dat`` is memory-mapped and each requested image is resized 96 -> 64 on demand with
PIL's Lanczos filter (disentanglement_lib's ``ANTIALIAS``). Smaller files in the same format load too:
factor sizes are then read from the files, and every combination must appear exactly once.

The procedural stand-in (no ``path``) ray-casts each image on demand: every category is a union of
shaded ellipsoids and boxes (a four-legged animal, a standing figure, an airplane, a truck, a car), each
instance stretches its proportions by seeded factors, and the camera moves over the official elevations
and azimuths under 6 fixed lights. It differs from the real photographs of toys in geometry, texture and
background (uniform grey, no shadows) and has no stereo pair; the grid, order and value ranges are the
same.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np

from .base import DataError, GroundTruthData, grid_strides
from .raycast import BOX, ELLIPSOID, camera, cast, fit, lambert, primitives

FACTOR_NAMES = ("category", "instance", "elevation", "azimuth", "lighting")
FACTOR_SIZES = (5, 10, 9, 18, 6)
CATEGORIES = ("animal", "human", "airplane", "truck", "car")
_MAGIC = {0x1E3D4C55: np.uint8, 0x1E3D4C54: np.int32}
_SALT = 0x0A0B
# Light directions (towards the light, world frame) and strengths of the 6 lighting conditions.
_LIGHTS = np.array(
    [[-0.6, 1.0, -0.6], [0.7, 1.0, -0.4], [0.0, 1.0, 0.0], [-1.0, 0.4, 0.3], [1.0, 0.5, 0.6],
     [0.1, 0.6, -1.0]]
)  # fmt: skip
_STRENGTH = np.array([0.95, 0.85, 0.75, 0.9, 0.8, 0.65])


def factor_values(sizes: tuple[int, ...] = FACTOR_SIZES) -> tuple[np.ndarray, ...]:
    return (
        np.arange(float(sizes[0])),
        np.arange(float(sizes[1])),
        30.0 + 5.0 * np.arange(sizes[2]),  # degrees
        20.0 * np.arange(sizes[3]),  # degrees (the files' 0, 2, .., 34 are tens of degrees)
        np.arange(float(sizes[4])),
    )


@cache
def shape(category: int, instance: int) -> np.ndarray:
    """Primitives (K, 8) of one toy: the category's parts, stretched by the instance's proportions."""
    sx, sy, sz, part = np.random.default_rng((_SALT, category, instance)).uniform(0.75, 1.25, 4)
    E, B = ELLIPSOID, BOX
    if category == 0:  # four-legged animal, head forward (+x)
        rows = [
            (E, 0, (0, 0.1, 0), (0.55, 0.22, 0.2)),
            (E, 1, (0.62, 0.38, 0), (0.2, 0.15, 0.13)),
            (E, 0, (0.45, 0.25, 0), (0.14, 0.16, 0.1)),
            (E, 1, (-0.65, 0.18, 0), (0.22, 0.04, 0.04)),
        ]
        rows += [
            (E, 1, (x, -0.28, z), (0.07, 0.27, 0.07)) for x in (-0.38, 0.38) for z in (-0.12, 0.12)
        ]
    elif category == 1:  # standing human figure, facing +x
        rows = [(E, 0, (0, 0.12, 0), (0.14, 0.3, 0.22)), (E, 1, (0, 0.58, 0), (0.13, 0.14, 0.12)),
                (E, 1, (0, 0.12, -0.3), (0.06, 0.28, 0.06)), (E, 1, (0, 0.12, 0.3), (0.06, 0.28, 0.06)),
                (B, 0, (0, -0.45, -0.09), (0.08, 0.32, 0.07)), (B, 0, (0, -0.45, 0.09), (0.08, 0.32, 0.07))]  # fmt: skip
    elif category == 2:  # airplane, nose +x
        rows = [(E, 0, (0, 0, 0), (0.85, 0.12, 0.12)), (B, 1, (0.05, 0, 0), (0.17, 0.025, 0.8)),
                (B, 1, (-0.72, 0.2, 0), (0.12, 0.2, 0.02)), (B, 1, (-0.75, 0.03, 0), (0.09, 0.02, 0.3))]  # fmt: skip
    elif category == 3:  # truck: cab, cargo box, chassis, wheels
        rows = [(B, 1, (0.6, 0.02, 0), (0.18, 0.25, 0.28)), (B, 0, (-0.18, 0.12, 0), (0.55, 0.33, 0.3)),
                (B, 0, (0.05, -0.25, 0), (0.8, 0.06, 0.27))]  # fmt: skip
        rows += [
            (E, 2, (x, -0.3, z), (0.14, 0.14, 0.05)) for x in (-0.5, 0.55) for z in (-0.3, 0.3)
        ]
    else:  # car: body, rounded cabin, wheels
        rows = [(B, 0, (0, -0.1, 0), (0.75, 0.14, 0.33)), (E, 1, (-0.08, 0.1, 0), (0.42, 0.2, 0.3))]
        rows += [
            (E, 2, (x, -0.24, z), (0.15, 0.15, 0.05)) for x in (-0.48, 0.48) for z in (-0.33, 0.33)
        ]
    prims = primitives(*rows)
    stretch = np.array([sx, sy, sz])
    prims[:, 2:5] *= stretch
    prims[:, 5:8] *= stretch * np.where(prims[:, 1:2] > 0, part, 1.0)  # parts grow or shrink
    return fit(prims, 1.1)


class SmallNORB(GroundTruthData):
    """Procedural smallNORB stand-in: grayscale ray-cast toys on the official grid, drawn on demand."""

    name = "smallnorb"
    channels = 1
    factor_names = FACTOR_NAMES
    factor_sizes = FACTOR_SIZES
    categories = {"category": CATEGORIES}

    def __init__(self) -> None:
        self.factor_values = factor_values()

    def _render(self, classes: np.ndarray) -> np.ndarray:
        out = np.empty((len(classes), 1, 64, 64), dtype=np.uint8)
        if not len(classes):
            return out
        albedo = np.array([0.8, 0.65, 0.35])  # body, parts, wheels
        # Lighting only shades a view: cast each (category, instance, elevation, azimuth) once.
        views, inverse = np.unique(classes[:, :4], axis=0, return_inverse=True)
        order = np.argsort(inverse.reshape(-1), kind="stable")
        groups = np.split(order, np.flatnonzero(np.diff(inverse.reshape(-1)[order])) + 1)
        for (category, instance, elevation, azimuth), members in zip(views, groups, strict=True):
            view = self.factor_values[2][elevation], self.factor_values[3][azimuth]
            part, normal = cast(shape(int(category), int(instance)), *view, extent=1.15)
            silhouette = 0.6 + 0.4 * lambert(normal, -camera(*view)[0])  # darker outlines
            for i in members:
                lighting = classes[i, 4]
                light = 0.2 + _STRENGTH[lighting] * lambert(normal, _LIGHTS[lighting])
                background = 0.45 + 0.03 * lighting
                image = np.where(part >= 0, albedo[part] * light * silhouette, background)
                out[i, 0] = np.rint(255 * np.clip(image, 0.0, 1.0))
        return out


def read_norb(path: Path, *, mmap: bool = False) -> np.ndarray:
    """A NORB binary matrix (uint8 or int32), memory-mapped if ``mmap``."""
    where = f"smallnorb file {str(path)!r}"
    try:
        header = np.fromfile(path, dtype="<i4", count=2)
        if len(header) < 2 or int(header[0]) not in _MAGIC:
            raise DataError(f"{where} is not a NORB binary matrix (bad magic number)")
        ndim = int(header[1])
        if not 1 <= ndim <= 8:
            raise DataError(f"{where}: bad number of dimensions {ndim}")
        dims = np.fromfile(path, dtype="<i4", count=max(3, ndim), offset=8)
        dtype = np.dtype(_MAGIC[int(header[0])]).newbyteorder("<")
        shape = tuple(int(d) for d in dims[:ndim])
        offset = 8 + 4 * max(3, ndim)
        if (
            len(dims) < max(3, ndim)
            or path.stat().st_size < offset + np.prod(shape) * dtype.itemsize
        ):
            raise DataError(f"{where} is truncated: expected {shape} {dtype.name} values")
        if mmap:
            return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        return np.fromfile(path, dtype=dtype, count=int(np.prod(shape)), offset=offset).reshape(
            shape
        )
    except OSError as exc:
        raise DataError(f"{where} is not readable: {exc}") from None


def _find(folder: Path, split: str, kind: str) -> Path:
    found = sorted(folder.glob(f"smallnorb-*-{split}-{kind}.mat"))
    if len(found) != 1:
        raise DataError(
            f"smallnorb folder {str(folder)!r}: expected one smallnorb-*-{split}-{kind}.mat, found "
            f"{len(found)} (set dataset.options.path to the folder of the six official files)"
        )
    return found[0]


def resize(images: np.ndarray, size: int = 64) -> np.ndarray:
    """Resize uint8 (N, H, W[, 3]) images to ``size`` x ``size`` with PIL's Lanczos filter."""
    from PIL import Image

    if images.shape[1:3] == (size, size):
        return np.asarray(images, dtype=np.uint8)
    out = np.empty((len(images), size, size, *images.shape[3:]), dtype=np.uint8)
    for i, image in enumerate(images):
        picture = Image.fromarray(np.ascontiguousarray(image, dtype=np.uint8))
        out[i] = np.asarray(picture.resize((size, size), Image.Resampling.LANCZOS))
    return out


class SmallNORBFile(GroundTruthData):
    """The official smallNORB files in one folder, merged and indexed by the factor grid."""

    name = "smallnorb"
    channels = 1
    factor_names = FACTOR_NAMES
    categories = {"category": CATEGORIES}

    def __init__(self, path: str | Path):
        folder = Path(path)
        if not folder.is_dir():
            raise DataError(
                f"smallnorb folder {str(folder)!r} not found; expected the folder of the six "
                "official smallnorb-*-{training,testing}-{dat,cat,info}.mat files "
                "(set dataset.options.path)"
            )
        self._dat, rows = [], []
        for split in ("training", "testing"):
            dat = read_norb(_find(folder, split, "dat"), mmap=True)
            cat = read_norb(_find(folder, split, "cat")).reshape(-1)
            info = read_norb(_find(folder, split, "info"))
            n = len(cat)
            if dat.ndim != 4 or dat.shape[0] != n or dat.shape[1] != 2 or info.shape != (n, 4):
                raise DataError(
                    f"smallnorb folder {str(folder)!r}, {split}: expected dat (N, 2, H, W), cat (N,) "
                    f"and info (N, 4), got {dat.shape}, {cat.shape} and {info.shape}"
                )
            if (info[:, 2] % 2).any():
                raise DataError(f"smallnorb {split} info: azimuths must be even (0, 2, .., 34)")
            classes = np.column_stack([cat, info[:, 0], info[:, 1], info[:, 2] // 2, info[:, 3]])
            if self._dat and dat.shape[2:] != self._dat[0].shape[2:]:
                raise DataError(
                    f"smallnorb {split} dat: images {dat.shape[2:]} differ from training's"
                )
            self._dat.append(dat)
            rows.append(np.column_stack([classes, np.full(n, len(self._dat) - 1), np.arange(n)]))
        table = np.concatenate(rows).astype(np.int64)  # (M, 7): classes, file, row
        if table[:, :5].min(initial=0) < 0:
            raise DataError(f"smallnorb folder {str(folder)!r}: negative factor values in cat/info")
        self.factor_sizes = tuple(int(s) + 1 for s in table[:, :5].max(axis=0))
        self.factor_values = factor_values(self.factor_sizes)
        index = table[:, :5] @ grid_strides(self.factor_sizes)
        if len(index) != self.num_samples or len(np.unique(index)) != len(index):
            raise DataError(
                f"smallnorb folder {str(folder)!r}: the {len(index)} images do not cover the factor "
                f"grid {self.factor_sizes} once each ({self.num_samples} combinations)"
            )
        self._source = np.empty((self.num_samples, 2), dtype=np.int64)  # grid index -> file, row
        self._source[index] = table[:, 5:]

    def _render(self, classes: np.ndarray) -> np.ndarray:
        source = self._source[self.classes_to_index(classes)]
        images = np.empty((len(classes), *self._dat[0].shape[2:]), dtype=np.uint8)
        for f, dat in enumerate(self._dat):
            pick = source[:, 0] == f
            rows = source[pick, 1]
            order = np.argsort(rows)  # memory-mapped reads in file order
            images[np.flatnonzero(pick)[order]] = dat[rows[order], 0]
        return resize(images)[:, None]
