"""A ground-truth dataset from a user's own file: ``dataset: {name: files, options: {path: x.npz}}``.

The file (``.npz``, or HDF5 ``.h5`` / ``.hdf5``) holds ``images`` and integer factor ``classes``
per row, optionally ``factor_names``, ``factor_sizes`` and ``values`` (docs/own_data.md). Rows that
are the whole factor grid (every class combination exactly once, in any order) make a grid
dataset like the built-ins, reordered to official order (last factor fastest). Other rows (a
sample, a subset of combinations, repeats) make a dataset of stored rows: ``is_grid`` is false, the
index is the row number, and metrics that fix one factor and vary the rest are refused.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .base import DataError, GroundTruthData

_SIDE = 64  # the nets' input side
_H5_SUFFIXES = (".h5", ".hdf5")
_KEYS = ("images", "classes", "factor_names", "factor_sizes", "values")


def _layout(shape: tuple[int, ...], where: str) -> tuple[str, int]:
    """How images are stored ('hw', 'hwc' or 'chw') and their channel count."""
    if len(shape) == 3 and shape[1:] == (_SIDE, _SIDE):
        return "hw", 1
    if len(shape) == 4 and shape[1:3] == (_SIDE, _SIDE):
        return "hwc", shape[3]
    if len(shape) == 4 and shape[2:] == (_SIDE, _SIDE):
        return "chw", shape[1]
    raise DataError(
        f"{where}: key 'images' has shape {shape}; images must be 64x64 (the nets' input): "
        "(N, 64, 64), (N, 64, 64, C) or (N, C, 64, 64)"
    )


def _to_uint8(raw: np.ndarray, layout: str, where: str) -> np.ndarray:
    """Stored images -> uint8 (N, C, 64, 64); floats in [0, 1] become round(x * 255)."""
    if raw.dtype.kind == "f":
        if not np.isfinite(raw).all() or raw.min(initial=0.0) < 0 or raw.max(initial=0.0) > 1:
            raise DataError(f"{where}: key 'images' holds floats outside [0, 1]")
        raw = np.rint(raw * 255.0).astype(np.uint8)
    elif raw.dtype != np.uint8:
        raise DataError(
            f"{where}: key 'images' has dtype {raw.dtype}; expected uint8 (0..255) or floats in [0, 1]"
        )
    if layout == "hw":
        return raw[:, None]
    if layout == "hwc":
        return raw.transpose(0, 3, 1, 2)
    return raw


class _Npz:
    """Arrays of an ``.npz``, read with allow_pickle=False: an object array is refused, never
    unpickled (a file from elsewhere must not run code)."""

    def __init__(self, path: Path, where: str):
        self.where = where
        try:
            self.archive = np.load(path, allow_pickle=False)
            self.keys = set(self.archive.files)
        except Exception as exc:  # zip / format errors of a truncated or foreign file
            raise DataError(f"{where} is not a readable npz ({exc})") from None

    def read(self, key: str) -> np.ndarray:
        try:
            return np.asarray(self.archive[key])
        except Exception as exc:  # object arrays (pickles), corrupt members
            raise DataError(f"{self.where}: key {key!r} cannot be read ({exc})") from None

    def images(self) -> np.ndarray:
        return self.read("images")  # the whole array: npz members are not memory-mapped


class _Hdf5:
    """Datasets of an HDF5 file; ``images`` stays on disk and is read by row."""

    def __init__(self, path: Path, where: str):
        import h5py  # only HDF5 users need it

        self.where = where
        try:
            self.file = h5py.File(path, "r")
            self.keys = {k for k in self.file.keys() if isinstance(self.file[k], h5py.Dataset)}
        except OSError as exc:
            raise DataError(f"{where} is not a readable HDF5 file ({exc})") from None

    def read(self, key: str) -> np.ndarray:
        try:
            value = self.file[key][()]
        except (OSError, TypeError, ValueError) as exc:
            raise DataError(f"{self.where}: key {key!r} cannot be read ({exc})") from None
        if isinstance(value, np.ndarray) and value.dtype.kind == "O":  # variable-length strings
            value = np.array([v.decode() if isinstance(v, bytes) else str(v) for v in value])
        return np.asarray(value)

    def images(self) -> Any:
        return self.file["images"]


class FileData(GroundTruthData):
    """Images and factor classes from a user's ``.npz`` / HDF5 file (see the module docstring)."""

    def __init__(self, path: str | None = None, display_name: str | None = None):
        if not path:
            raise DataError("dataset 'files' needs options.path (an .npz or .h5 file)")
        file = Path(path)
        where = f"dataset file {str(path)!r}"
        self.where = where
        if not file.is_file():
            raise DataError(f"{where} not found (dataset.options.path)")
        if file.suffix.lower() == ".npz":
            store: _Npz | _Hdf5 = _Npz(file, where)
        elif file.suffix.lower() in _H5_SUFFIXES:
            store = _Hdf5(file, where)
        else:
            raise DataError(f"{where}: unknown format {file.suffix!r}; use .npz, .h5 or .hdf5")
        self.name = display_name or file.stem  # not `name`: load(name, **options) takes that
        for key in ("images", "classes"):
            if key not in store.keys:
                raise DataError(f"{where} lacks key {key!r}; has {sorted(store.keys)}")
        images = store.images()
        self._layout, self.channels = _layout(tuple(images.shape), where)
        n = int(images.shape[0])
        if n == 0:
            raise DataError(f"{where}: key 'images' holds no image")
        classes = self._read_classes(store, n)
        k = classes.shape[1]
        self.factor_names = self._read_names(store, k)
        self.factor_sizes = self._read_sizes(store, classes)
        self.factor_values = self._read_values(store, classes)
        self._rows = n
        # Grid: every class combination exactly once; then the index is the grid's (official
        # order) and ``_file_row`` maps it to the row that holds it.
        grid_points = math.prod(self.factor_sizes)
        self._grid = False
        if grid_points == n:
            index = classes @ self._strides
            self._grid = bool((np.bincount(index, minlength=n) == 1).all())
        if self._grid:
            self._file_row = np.argsort(index, kind="stable")
            self.why_not_grid = ""
        else:
            self._file_row = np.arange(n)
            shape = "x".join(str(s) for s in self.factor_sizes)
            repeats = n - len(np.unique(classes, axis=0))
            self.why_not_grid = (
                f"{where} holds {n} images, not the {shape}={grid_points}-point grid"
                if grid_points != n
                else f"{where} holds {n} images for the {shape}={grid_points}-point grid, but "
                f"{repeats} class combination(s) repeat and as many are missing"
            ) + " of its factor sizes (each class combination exactly once)"
        self._classes = classes
        if isinstance(store, _Npz):  # in memory already: convert once
            self._images: Any = _to_uint8(images, self._layout, where)
            self._layout = "chw"
        else:
            self._images = images
            self._check_h5_dtype(images.dtype)

    # -- reading the file ------------------------------------------------------------------------
    def _read_classes(self, store: _Npz | _Hdf5, n: int) -> np.ndarray:
        classes = store.read("classes")
        if classes.ndim == 1:  # one factor
            classes = classes[:, None]
        if classes.ndim != 2 or classes.shape[0] != n or classes.shape[1] == 0:
            raise DataError(
                f"{self.where}: key 'classes' has shape {classes.shape}; expected ({n}, K) "
                f"(one row per image, one column per factor)"
            )
        if classes.dtype.kind not in "iu":
            raise DataError(
                f"{self.where}: key 'classes' has dtype {classes.dtype}; expected integers"
            )
        if (classes < 0).any():
            raise DataError(f"{self.where}: key 'classes' holds a negative class")
        return classes.astype(np.int64)

    def _read_names(self, store: _Npz | _Hdf5, k: int) -> tuple[str, ...]:
        if "factor_names" not in store.keys:
            return tuple(f"factor_{i}" for i in range(k))
        raw = store.read("factor_names")
        if raw.dtype.kind == "S":
            raw = np.char.decode(raw)
        if raw.shape != (k,) or raw.dtype.kind != "U":
            raise DataError(
                f"{self.where}: key 'factor_names' must be {k} strings (one per column of "
                f"classes), got {raw.dtype} {raw.shape}"
            )
        names = tuple(str(x) for x in raw)
        if len(set(names)) != k or not all(names):
            raise DataError(f"{self.where}: key 'factor_names' must be distinct, non-empty")
        return names

    def _read_sizes(self, store: _Npz | _Hdf5, classes: np.ndarray) -> tuple[int, ...]:
        k = classes.shape[1]
        top = classes.max(axis=0)
        if "factor_sizes" in store.keys:
            raw = store.read("factor_sizes")
            if raw.shape != (k,) or raw.dtype.kind not in "iu":
                raise DataError(
                    f"{self.where}: key 'factor_sizes' must be {k} integers, got "
                    f"{raw.dtype} {raw.shape}"
                )
            sizes = tuple(int(s) for s in raw)
            for j in range(k):
                if top[j] >= sizes[j]:
                    raise DataError(
                        f"{self.where}: key 'classes' has class {int(top[j])} of factor "
                        f"{self.factor_names[j]!r}, not below its size {sizes[j]} (factor_sizes)"
                    )
        else:
            sizes = tuple(int(t) + 1 for t in top)
        for j, size in enumerate(sizes):
            if size < 2:  # no information, and entropy-normalised metrics divide by 0
                raise DataError(
                    f"{self.where}: key 'classes': factor {self.factor_names[j]!r} has a single "
                    "class; drop that column"
                )
        return sizes

    def _read_values(self, store: _Npz | _Hdf5, classes: np.ndarray) -> tuple[np.ndarray, ...]:
        if "values" not in store.keys:
            return tuple(np.arange(size, dtype=np.float64) for size in self.factor_sizes)
        values = store.read("values")
        if values.shape != classes.shape or values.dtype.kind not in "iuf":
            raise DataError(
                f"{self.where}: key 'values' must be numbers of shape {classes.shape} (like "
                f"classes), got {values.dtype} {values.shape}"
            )
        values = values.astype(np.float64)
        if not np.isfinite(values).all():
            raise DataError(f"{self.where}: key 'values' holds NaN or infinity")
        out = []
        for j, size in enumerate(self.factor_sizes):
            name = self.factor_names[j]
            table = np.full(size, np.nan)
            table[classes[:, j]] = values[:, j]  # any row's value; checked against all below
            clash = np.flatnonzero(table[classes[:, j]] != values[:, j])
            if clash.size:
                c = int(classes[clash[0], j])
                raise DataError(
                    f"{self.where}: key 'values': factor {name!r} class {c} has differing values "
                    f"({table[c]:g} and {values[clash[0], j]:g}); a class has one value"
                )
            absent = np.flatnonzero(np.isnan(table))
            if absent.size:
                raise DataError(
                    f"{self.where}: key 'values': factor {name!r} class {int(absent[0])} is in no "
                    "row, so it has no value; lower factor_sizes or add a row"
                )
            out.append(table)
        return tuple(out)

    def _check_h5_dtype(self, dtype: np.dtype) -> None:
        if dtype != np.uint8 and dtype.kind != "f":
            raise DataError(
                f"{self.where}: key 'images' has dtype {dtype}; expected uint8 (0..255) or "
                "floats in [0, 1]"
            )

    def _read_rows(self, rows: np.ndarray) -> np.ndarray:
        """Stored images of file rows: uint8 (N, C, 64, 64)."""
        if isinstance(self._images, np.ndarray):
            return self._images[rows]
        order = np.argsort(rows, kind="stable")
        unique, inverse = np.unique(rows[order], return_inverse=True)
        try:
            raw = self._images[unique]  # h5py fancy indexing: increasing, no repeats
        except OSError as exc:
            raise DataError(f"{self.where}: cannot read images ({exc})") from None
        out = np.empty((len(rows), self.channels, _SIDE, _SIDE), dtype=np.uint8)
        out[order] = _to_uint8(raw, self._layout, self.where)[inverse]
        return out

    # -- the GroundTruthData interface ----------------------------------------------------------
    @property
    def is_grid(self) -> bool:
        return self._grid

    @property
    def num_samples(self) -> int:
        return self._rows

    def _check_index(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        index = np.asarray(index, dtype=np.int64).reshape(-1)
        if index.size and (index.min() < 0 or index.max() >= self._rows):
            raise DataError(f"{self.name}: index out of range [0, {self._rows})")
        return index

    def index_to_classes(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        if self._grid:
            return super().index_to_classes(index)
        return self._classes[self._check_index(index)]

    def classes_to_index(self, classes: np.ndarray) -> np.ndarray:
        if not self._grid:
            raise DataError(f"{self.why_not_grid}, so a class vector names no row")
        return super().classes_to_index(classes)

    def sample_factors(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self._grid:
            return super().sample_factors(n, rng)
        return self._classes[rng.integers(0, self._rows, n)]  # combinations that exist

    def row_images(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        return self._read_rows(self._file_row[self._check_index(index)])

    def base_rows(self, index: np.ndarray | Sequence[int]) -> np.ndarray:
        """The file's own rows: a grid file in any order still maps to its rows."""
        return self._file_row[self._check_index(index)]

    def _render(self, classes: np.ndarray) -> np.ndarray:
        if not self._grid:
            raise DataError(f"{self.why_not_grid}, so images cannot be drawn by class")
        return self._read_rows(self._file_row[self.classes_to_index(classes)])
