"""Model families: one registry. A family is a Config model, a driver-side ``prepare_data`` and
``fit(cfg, data, ctx)``. Importable without Ray or MLflow."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

from . import multitask
from ._config import DatasetConfig
from ._context import LocalContext, TrialContext


@dataclass(frozen=True)
class Family:
    Config: type[BaseModel]
    prepare_data: Callable[[DatasetConfig, Sequence[Any]], dict[str, Any]]
    fit: Callable[[Any, dict[str, Any], TrialContext], dict[str, float]]
    description: str


FAMILIES: dict[str, Family] = {
    "multitask": Family(
        multitask.MultiTaskConfig,
        multitask.prepare_data,
        multitask.fit,
        "hard-parameter-sharing multi-task encoder (multi_head, one_head, single_task, random)",
    ),
}


def get_family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"unknown family {name!r}; known: {sorted(FAMILIES)}")
    return FAMILIES[name]


__all__ = ["FAMILIES", "DatasetConfig", "Family", "LocalContext", "TrialContext", "get_family"]
