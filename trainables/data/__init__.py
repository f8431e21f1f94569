"""Ground-truth datasets: one registry, ``load(name, **options)``, importable without Ray or MLflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import DataError, FactorSubset, GroundTruthData
from .dsprites import DSprites, DSpritesFile
from .mpi3d import VARIANT_SIZES, MPI3DFile, MPI3DToy
from .shapes3d import Shapes3D, Shapes3DFile
from .subsets import NAMED_SUBSETS, resolve


def _dsprites(path: str | None = None) -> GroundTruthData:
    return DSpritesFile(path) if path else DSprites()


def _shapes3d(path: str | None = None) -> GroundTruthData:
    return Shapes3DFile(path) if path else Shapes3D()


def _mpi3d(
    variant: str = "toy", path: str | None = None, factor_sizes: list[int] | None = None
) -> GroundTruthData:
    if variant not in VARIANT_SIZES:
        raise DataError(f"unknown mpi3d variant {variant!r}; known: {sorted(VARIANT_SIZES)}")
    if path:
        return MPI3DFile(path, variant, factor_sizes)
    if variant != "toy":
        raise DataError(
            f"mpi3d variant {variant!r} needs the official file: set dataset.options.path "
            "(the procedural renderer draws the toy variant only)"
        )
    return MPI3DToy(variant)


# Each loader renders procedurally without ``path`` and reads the official file with it.
DATASETS: dict[str, Callable[..., GroundTruthData]] = {
    "dsprites": _dsprites,
    "shapes3d": _shapes3d,
    "mpi3d": _mpi3d,
}


def load(name: str, **options: Any) -> GroundTruthData:
    """A dataset by registry name; ``path=`` reads the official file instead of rendering."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    try:
        return DATASETS[name](**options)
    except TypeError as exc:
        raise DataError(f"dataset {name!r}: bad option ({exc})") from None


def subset(dataset: GroundTruthData, spec: str | dict[str, Any] | None) -> GroundTruthData:
    """A view restricted by a subset spec or name (see ``subsets``)."""
    return resolve(dataset, spec)


__all__ = [
    "DATASETS",
    "NAMED_SUBSETS",
    "DataError",
    "FactorSubset",
    "GroundTruthData",
    "load",
    "subset",
]
