"""The blocks of a study spec besides its grid: resources, a probe study's ``source`` (and the
upstream runs it resolves to), the ``search`` (grid or Optuna, with an ASHA scheduler) and the
``question`` the report answers. Each validates itself; ``study.spec`` holds the study as a whole."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import ConfigDict, Field, field_validator, model_validator
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from trainables.core.checked import Checked
from trainables.metrics.selection import Direction


class Resources(Checked):
    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    """Fractional values share a GPU between small trials."""




class Source(Checked):
    """Which upstream representations a probe study trains on; resolved before Ray starts.

    ``study`` + ``where`` select finished trial runs of other studies by their params, ``pick``
    keeps all of them, the best by ``metric`` (per study and ``group_by`` group) or the best per seed;
    ``runs`` names MLflow run ids instead; ``ground_truth`` adds the true factors as a source.
    """

    model_config = ConfigDict(extra="forbid")

    study: str | list[str] | None = None
    """The upstream study (MLflow experiment), or several (e.g. one per auto-encoder family)."""
    where: dict[str, Any] = Field(default_factory=dict)
    """Param -> a value or a list of accepted values, e.g. ``{variant: [multi_head, random]}``."""
    pick: Literal["all", "best", "per_seed"] = "all"
    metric: str | None = None
    """What ``best`` / ``per_seed`` rank by, e.g. ``mig`` or ``rmse``."""
    mode: Literal["max", "min"] | None = None
    """Whether higher or lower ``metric`` is better (default: as the upstream runs declare it)."""
    group_by: list[str] = Field(default_factory=list)
    """Params whose every combination gets its own best run, e.g. ``[variant]``."""
    runs: list[str] = Field(default_factory=list)
    ground_truth: bool = False

    @model_validator(mode="after")
    def _coherent(self) -> Source:
        if self.study is None and not self.runs and not self.ground_truth:
            raise ValueError("give a study (with where / pick), runs, or ground_truth: true")
        if self.study is not None and self.runs:
            raise ValueError("give either study (a selector) or runs (run ids), not both")
        if self.study is None and (self.where or self.group_by or self.pick != "all"):
            raise ValueError("where, pick and group_by select runs of a study: set source.study")
        if self.pick != "all" and self.metric is None:
            raise ValueError(f"pick: {self.pick} ranks runs: set source.metric (e.g. mig)")
        if self.pick == "all" and (self.metric is not None or self.group_by):
            raise ValueError("metric and group_by only mean something with pick: best or per_seed")
        return self


class Upstream(Checked):
    """One resolved source: what a probe trial is trained on, for its run's provenance tags."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    study: str = ""
    family: str = ""
    run_name: str = ""


class Scheduler(Checked):
    """Asynchronous successive halving (ASHA): at each rung, trials whose per-report ``metric`` is
    not in the best 1/``reduction_factor`` stop early. Time is the trials' progress: epochs, or
    optimiser steps for step-counted families."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["asha"] = "asha"
    metric: str
    """A metric every report holds, e.g. ``val/loss`` or ``val/reconstruction``."""
    mode: Literal["min", "max"]
    grace_period: int = Field(default=1, ge=1)
    """Progress (epochs or steps) before a trial may be stopped."""
    reduction_factor: float = Field(default=3.0, gt=1)
    max_t: int | None = Field(default=None, ge=1)
    """The last rung's bound (default: the longest config's epochs / steps)."""


class Search(Checked):
    """How sampled axes are explored; grid axes (``seed`` above all) are crossed with each point."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["grid", "optuna"] = "grid"
    """``grid``: sampled axes drawn ``num_samples`` times up front (seeded); ``optuna``: TPE."""
    metric: str | None = None
    """What Optuna optimises: a final metric, e.g. ``mig`` or ``rmse``."""
    mode: Literal["min", "max"] | None = None
    """Default: the metric's direction (the family's declared outputs, else the metric registry)."""
    num_samples: int = Field(default=1, ge=1)
    """Points of the sampled axes (each run once per grid combination)."""
    seed: int = Field(default=0, ge=0, lt=2**31)
    """Seeds the grid draws and Optuna's sampler."""
    startup_points: int = Field(default=10, ge=1)
    """Optuna: random points before TPE models the results (Optuna's ``n_startup_trials``)."""
    scheduler: Scheduler | None = None
    storage: str | None = None
    """Optuna storage URL (e.g. ``sqlite:///optuna.db``): keeps the Optuna study itself."""

    @model_validator(mode="after")
    def _coherent(self) -> Search:
        if self.metric is not None and "/" in self.metric:
            raise ValueError(
                f"search.metric {self.metric!r} is reported during training; the search ranks "
                "trials by a final metric (e.g. rmse, mig); ASHA takes per-report ones"
            )
        if self.algorithm == "optuna":
            if self.metric is None:
                raise ValueError("algorithm: optuna needs search.metric (e.g. mig)")
        elif self.storage is not None:
            raise ValueError("search.storage keeps an Optuna study: set algorithm: optuna")
        if self.storage is not None:
            try:
                make_url(self.storage)
            except ArgumentError:
                raise ValueError(
                    f"search.storage {self.storage!r} is not a database URL "
                    "(e.g. sqlite:///optuna.db)"
                ) from None
        if self.scheduler is not None and "/" not in self.scheduler.metric:
            raise ValueError(
                f"search.scheduler.metric {self.scheduler.metric!r}: ASHA compares a metric "
                "every report holds, e.g. val/loss or val/rmse"
            )
        return self


class Question(Checked):
    """What a study asks, for its report: the metrics its answer leads with, tested at ``alpha``."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] = Field(min_length=1)
    """Final metrics (outputs, e.g. ``dci_disentanglement``) the question is about."""
    alpha: float = Field(default=0.05, gt=0, lt=1)
    """Significance level of the answer's tests (after Holm's correction)."""
    contrasts: list[tuple[str, str]] = Field(default_factory=list)
    """Pairs of groups (as the report labels them, e.g. ``[multi_head, single_task]``) the
    question is about: the first is tested better than the second on each metric."""

    @field_validator("metrics")
    @classmethod
    def _once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a metric is listed twice")
        return value


def settle_directions(block: Search | Question, direction: Direction) -> None:
    """What needs the study's family (its declared outputs' ``direction``, ``Trainer.outputs``):
    the search's default mode, and a direction for every metric the question asks about."""
    if isinstance(block, Question):
        for name in block.metrics:
            if direction(name) is None:
                raise ValueError(f"metrics: {name!r} is not a final metric with a direction")
        return
    if block.metric is not None and block.mode is None:
        higher = direction(block.metric)
        if higher is not None:
            block.mode = "max" if higher else "min"
    if block.algorithm == "optuna" and block.mode is None:
        raise ValueError(f"search.mode: set min or max (no known direction for {block.metric!r})")
    if block.algorithm == "optuna" and "num_samples" not in block.model_fields_set:
        raise ValueError("algorithm: optuna needs search.num_samples (points to try)")
