"""Configuration shared by families: the dataset view every trial trains on, and the settings of the
shared training loop and evaluation path that every family's ``Config`` extends."""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator

from .. import metrics
from .checked import Checked

GROUND_TRUTH = "ground_truth"
"""The upstream that stands for the true factors themselves (each scaled to [-1, 1]): the probes'
baseline representation, a ``source`` of probe studies and a row of their reports."""


class DatasetConfig(Checked):
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

    @field_validator("split")
    @classmethod
    def _proper_split(cls, split: tuple[float, float, float]) -> tuple[float, float, float]:
        # An empty split would be scored as if it held data (RMSE 0.0 on nothing).
        if not all(math.isfinite(f) and f > 0 for f in split):
            raise ValueError(f"every split fraction must be > 0, got {list(split)}")
        if abs(sum(split) - 1.0) > 1e-6:
            raise ValueError(f"split fractions must sum to 1, got {list(split)} (sum {sum(split):g})")
        return split


class TrainConfig(Checked):
    """What the shared loop (``core.loop``) and evaluation path (``core.evaluation``) read.

    Progress counts ``epochs`` (passes over the train split) unless ``steps`` is set: Locatello et
    al.'s families count 300k optimiser steps and report every ``report_every`` steps.
    """

    model_config = ConfigDict(extra="forbid")

    seed: int = 0
    epochs: int = Field(default=20, ge=0)
    steps: int | None = Field(default=None, ge=0)
    """Train for this many steps instead of ``epochs`` (batches continue across epochs)."""
    report_every: int = Field(default=1000, gt=0)
    """Steps between reports and checkpoints when ``steps`` is set (otherwise: every epoch)."""
    batch_size: int = Field(default=64, gt=0)
    lr: float = Field(default=1e-4, gt=0, allow_inf_nan=False)
    device: str = "cpu"
    """``cpu``, ``cuda``, ``cuda:1`` or ``auto`` (the trial's GPU when it has one)."""
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision of the training steps (``torch.autocast`` around each ``train_step``).
    ``bf16``: on the CPU or a GPU that has it; no loss scaling (bf16 keeps fp32's exponent range).
    ``fp16``: CUDA only, with a ``GradScaler`` (checkpointed); refused on the CPU (use ``bf16``),
    and at the trial's start when ``auto`` finds no GPU. Loss scaling needs the family to step its
    optimisers through ``Trainer.backward_step``. Validation, test metrics and the encoding that is
    scored run in fp32 either way."""
    compile: bool = False
    """``torch.compile`` each module's forward for training; evaluation runs eager, so the scored
    codes are the saved model's. Checkpoints and saved weights keep the plain state-dict keys."""
    metrics: list[str] = Field(default_factory=lambda: ["mig", "dci"])
    metric_options: dict[str, dict[str, Any]] = Field(default_factory=dict)
    """Per metric keyword options, e.g. ``{factor_vae: {num_train: 2000, num_eval: 1000}}``."""
    metric_train_points: int = Field(default=10_000, gt=1)
    metric_test_points: int = Field(default=5_000, gt=1)
    metric_mode: Literal["reference", "fast"] = "fast"
    """``fast``: DCI's boosting in compiled code, the reference's trees to rounding (README)."""
    pictures: bool = True
    """Reconstructions, traversals and a UMAP of the codes as PNG artifacts."""
    umap_points: int = Field(default=2000, ge=10)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, names: list[str]) -> list[str]:
        for name in names:
            metrics.get_metric(name)  # raises "unknown metric ..."
        if len(set(names)) != len(names):
            raise ValueError(f"metrics listed twice: {names}")
        return names

    @model_validator(mode="after")
    def _fp16_needs_cuda(self) -> TrainConfig:
        # fp16 trains with loss scaling, which this loop does on CUDA only; bf16 needs none.
        if self.precision == "fp16" and self.device == "cpu":
            raise ValueError(
                "precision: fp16 needs a CUDA device (loss scaling); on the CPU use bf16"
            )
        return self

    @model_validator(mode="after")
    def _known_metric_options(self) -> TrainConfig:
        for name, options in self.metric_options.items():
            if name not in self.metrics:
                raise ValueError(f"metric_options.{name}: {name!r} is not in metrics {self.metrics}")
            accepted = metrics.get_metric(name).options
            for key in options:
                if key not in accepted:
                    raise ValueError(
                        f"metric_options.{name}.{key}: unknown option; known: {sorted(accepted)}"
                    )
        return self

