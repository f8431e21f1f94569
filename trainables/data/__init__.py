"""Ground-truth datasets: one registry, ``load(name, **options)``, importable without Ray or MLflow."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from .base import DataError, FactorSubset, GroundTruthData, parse_index_spec
from .dsprites import DSprites, DSpritesFile


def _dsprites(path: str | None = None) -> GroundTruthData:
    return DSpritesFile(path) if path else DSprites()


DATASETS: dict[str, Callable[..., GroundTruthData]] = {
    "dsprites": _dsprites,
}


def load(name: str, **options: Any) -> GroundTruthData:
    """A dataset by registry name; ``path=`` reads the official file instead of rendering."""
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; known: {sorted(DATASETS)}")
    try:
        return DATASETS[name](**options)
    except TypeError as exc:
        raise DataError(f"dataset {name!r}: bad option ({exc})") from None


def subset(dataset: GroundTruthData, keep: dict[str, Any] | None) -> GroundTruthData:
    """Restrict factors to class indices: ``{"orientation": 0, "posX": "0:32:2"}``."""
    if not keep:
        return dataset
    indices = {}
    for name, spec in keep.items():
        if name not in dataset.factor_names:
            raise DataError(
                f"{dataset.name}: unknown factor {name!r} in subset; "
                f"factors are {list(dataset.factor_names)}"
            )
        size = dataset.factor_sizes[dataset.factor_names.index(name)]
        indices[name] = parse_index_spec(spec, size, f"subset.{name}")
    return FactorSubset(dataset, indices)


__all__ = ["DATASETS", "DataError", "FactorSubset", "GroundTruthData", "load", "subset"]
