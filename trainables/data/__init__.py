"""Ground-truth datasets: one registry, ``load(name, **options)``, importable without Ray or MLflow.

A user's dataset joins the registry like a family (``trainables.registry``): ``dataset.name:
mypkg.data:MyData`` in a spec (a ``GroundTruthData`` subclass, or any callable taking the spec's
``dataset.options`` and returning one), an entry point of group ``disentangle_study.datasets``, or
``@register_dataset("name")``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ..registry import Registry, RegistryError
from .base import DataError, FactorSubset, GroundTruthData
from .cars3d import Cars3D, Cars3DFile
from .dsprites import DSprites, DSpritesFile
from .dsprites_variants import ColorDSprites, NoisyDSprites, ScreamDSprites
from .files import FileData
from .mpi3d import VARIANT_SIZES, MPI3DFile, MPI3DToy
from .shapes3d import Shapes3D, Shapes3DFile
from .smallnorb import SmallNORB, SmallNORBFile
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


def _smallnorb(path: str | None = None) -> GroundTruthData:
    return SmallNORBFile(path) if path else SmallNORB()


def _cars3d(path: str | None = None) -> GroundTruthData:
    return Cars3DFile(path) if path else Cars3D()


# Each loader renders procedurally without ``path`` and reads the official file (smallnorb, cars3d:
# folder) with it; the dSprites variants of Locatello et al. 2019 take dSprites' ``path``; ``files``
# reads a user's own file (docs/own_data.md).
DATASETS: Registry[Callable[..., GroundTruthData]] = Registry(
    "dataset",
    {
        "dsprites": _dsprites,
        "color_dsprites": ColorDSprites,
        "noisy_dsprites": NoisyDSprites,
        "scream_dsprites": ScreamDSprites,  # options path, scream_path
        "shapes3d": _shapes3d,
        "mpi3d": _mpi3d,
        "smallnorb": _smallnorb,
        "cars3d": _cars3d,
        "files": FileData,
    },
    group="disentangle_study.datasets",
    check=lambda obj: (
        None if callable(obj) else f"{obj!r} is not callable (a GroundTruthData class)"
    ),
)


def register_dataset(name: str) -> Callable[[Any], Any]:
    """Decorator: ``@register_dataset("my_data")`` on a ``GroundTruthData`` subclass or loader."""
    return DATASETS.register(name)


def load(name: str, **options: Any) -> GroundTruthData:
    """A dataset by registry name or dotted path; ``path=`` reads the official file instead of
    rendering (built-ins)."""
    try:
        loader = DATASETS.get(name)
    except RegistryError as exc:
        raise DataError(str(exc)) from None
    try:
        dataset = loader(**options)
    except TypeError as exc:
        raise DataError(f"dataset {name!r}: bad option ({exc})") from None
    if not isinstance(dataset, GroundTruthData):
        raise DataError(
            f"dataset {name!r}: its loader returned {type(dataset).__name__}, not a GroundTruthData"
        )
    return dataset


def subset(dataset: GroundTruthData, spec: str | dict[str, Any] | None) -> GroundTruthData:
    """A view restricted by a subset spec or name (see ``subsets``)."""
    return resolve(dataset, spec)


__all__ = [
    "DATASETS",
    "NAMED_SUBSETS",
    "DataError",
    "FactorSubset",
    "FileData",
    "GroundTruthData",
    "load",
    "register_dataset",
    "subset",
]
