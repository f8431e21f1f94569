"""Configuration shared by families: the dataset view every trial of a study trains on."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class DatasetConfig(BaseModel):
    """Which images a study uses and how they are split."""

    model_config = ConfigDict(extra="forbid")

    name: str = "dsprites"
    options: dict[str, Any] = Field(default_factory=dict)
    """Loader options, e.g. ``path`` of the official file (absent: procedural renderer)."""
    subset: str | dict[str, Any] = Field(default_factory=dict)
    """Per factor: an index (fixes it), a list, ``"start:stop:step"``, or ``{values, range, bins,
    role}``; or a named subset (``trainables.data.NAMED_SUBSETS``)."""
    n_samples: int | None = Field(default=None, gt=0)
    """Rows drawn (without replacement) from the subset grid; None keeps the whole grid."""
    split_seed: int = 0
    split: tuple[float, float, float] = (0.75, 0.125, 0.125)
    """Train / validation / test fractions after a seeded shuffle (the multi-task paper's split)."""
