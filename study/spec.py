"""Study specification: YAML -> a validated ``StudySpec``, with one clear line per bad key.

Everything that can be checked without Ray is checked here, before Ray starts or MLflow is written:
unknown keys, wrong types, unknown family / metric / dataset factor, empty sweeps, and every sweep value
against the family's own Config.
"""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from trainables import FAMILIES, DatasetConfig
from trainables import data as datasets
from trainables._eval import sampling_metrics_refusal
from trainables.data import DataError
from trainables.metrics import METRICS, SAMPLED

from . import space
from .errors import SpecError

_ENUMERATE_UP_TO = 100_000  # grid combinations n_grid enumerates to apply a family's expansion

__all__ = ["SpecError", "StudySpec", "load_spec", "parse_spec"]


# Besides YAMLError, PyYAML's safe_load leaks these on malformed scalars (`!!int x`, `!!bool x`,
# `!!timestamp x`, `2020-13-45`) and on deep nesting (`[[[[...`).
_YAML_ERRORS = (yaml.YAMLError, ValueError, LookupError, AttributeError, RecursionError)


def _yaml_problem(err: BaseException) -> str:
    return str(getattr(err, "problem", None) or getattr(err, "reason", None) or repr(err))


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(default=1.0, gt=0)
    gpu: float = Field(default=0.0, ge=0)
    """Fractional values share a GPU between small trials."""


GROUND_TRUTH = "ground_truth"  # the probes' baseline source: the true factors (trainables._probe)


class Source(BaseModel):
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
    """Whether higher or lower ``metric`` is better (default: from the metric registry)."""
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


class Upstream(BaseModel):
    """One resolved source: what a probe trial is trained on, for its run's provenance tags."""

    model_config = ConfigDict(extra="forbid")

    run_id: str
    study: str = ""
    family: str = ""
    run_name: str = ""


class Scheduler(BaseModel):
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


class Search(BaseModel):
    """How sampled axes are explored; grid axes (``seed`` above all) are crossed with each point."""

    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["grid", "optuna"] = "grid"
    """``grid``: sampled axes drawn ``num_samples`` times up front (seeded); ``optuna``: TPE."""
    metric: str | None = None
    """What Optuna optimises: a final metric, e.g. ``mig`` or ``rmse``."""
    mode: Literal["min", "max"] | None = None
    """Default: the metric registry's direction."""
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
        if self.metric is not None and self.mode is None:
            from trainables.metrics import higher_is_better

            direction = higher_is_better(self.metric)
            if direction is not None:
                self.mode = "max" if direction else "min"
        if self.algorithm == "optuna":
            if self.metric is None:
                raise ValueError("algorithm: optuna needs search.metric (e.g. mig)")
            if self.mode is None:
                raise ValueError(
                    f"search.mode: set min or max (no known direction for {self.metric!r})"
                )
            if "num_samples" not in self.model_fields_set:
                raise ValueError("algorithm: optuna needs search.num_samples (points to try)")
        elif self.storage is not None:
            raise ValueError("search.storage keeps an Optuna study: set algorithm: optuna")
        if self.storage is not None:
            from sqlalchemy.engine import make_url
            from sqlalchemy.exc import ArgumentError

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


class Question(BaseModel):
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
    def _scores(cls, value: list[str]) -> list[str]:
        from trainables.metrics import higher_is_better

        for name in value:
            if higher_is_better(name) is None:
                raise ValueError(f"{name!r} is not a final metric with a direction")
        if len(set(value)) != len(value):
            raise ValueError("a metric is listed twice")
        return value


class StudySpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z][A-Za-z0-9_-]{0,99}$")
    """A plain identifier: it names the MLflow experiment, folders and the artifact location."""
    family: str
    description: str = ""
    question: Question | None = None
    """The metrics the study's question is about (its report's answer leads with them)."""
    dataset: DatasetConfig = Field(default_factory=DatasetConfig)
    fixed: dict[str, Any] = Field(default_factory=dict)
    """Family parameters shared by every trial."""
    sweep: dict[str, Any] = Field(default_factory=dict)
    """Axes: a list (grid: every combination becomes a trial) or ``{choice | uniform | loguniform |
    randint: ...}`` (sampled, see ``search``); ``dataset.<key>`` axes reshape the data."""
    search: Search = Field(default_factory=Search)
    metrics: list[str] | None = None
    resources: Resources = Field(default_factory=Resources)
    max_concurrent_trials: int | None = Field(default=None, gt=0)
    max_failures: int = Field(default=2, ge=0)
    """Retries of a failed trial, each from its last checkpoint."""
    source: Source | None = None
    """Probe families: the upstream representations (an ``upstream`` axis of the grid)."""
    resolved_source: list[Upstream] | None = None
    """Written by ``study run`` when it resolves ``source`` (kept in the launch record, so a
    resume trains on the same upstream runs); not for hand-written specs."""

    @field_validator("family")
    @classmethod
    def _known_family(cls, value: str) -> str:
        if value not in FAMILIES:
            raise ValueError(f"unknown family {value!r}; known: {sorted(FAMILIES)}")
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name not in METRICS:
                raise ValueError(f"unknown metric {name!r}; known: {sorted(METRICS)}")
        return value

    @field_validator("sweep")
    @classmethod
    def _parsed_axes(cls, value: dict[str, Any]) -> dict[str, Any]:
        for name, raw in value.items():
            if isinstance(raw, list) and not raw:
                raise ValueError(f"sweep axis {name!r} is empty")
            try:
                axis = space.parse_axis(str(name), raw)
            except ValueError as err:
                raise ValueError(f"sweep axis {name!r}: {err}") from None
            if name == "seed" and axis.sampled:
                raise ValueError("sweep axis 'seed': seeds are crossed with every point: a list")
            if str(name).startswith(space.DATA_PREFIX) and not axis.categorical:
                raise ValueError(
                    f"sweep axis {name!r}: data axes are categorical: a list or {{choice: [...]}}"
                )
        return value

    @model_validator(mode="after")
    def _search_fits_sweep(self) -> StudySpec:
        sampled = [a.name for a in self.axis_list if a.sampled]
        search = self.search
        if search.algorithm == "optuna" and not sampled:
            raise ValueError(
                "search.algorithm: optuna needs a sampled axis "
                "(e.g. lr: {loguniform: [1.0e-4, 1.0e-2]})"
            )
        if search.algorithm == "grid" and sampled and "num_samples" not in search.model_fields_set:
            raise ValueError(
                f"sweep.{sampled[0]} is sampled: set search.num_samples (points to draw), or "
                "search.algorithm: optuna"
            )
        categorical = [a for a in self.axis_list if a.sampled and a.categorical]
        if search.algorithm == "grid" and sampled and len(categorical) == len(sampled):
            combos = math.prod(len(a.values) for a in categorical)
            if search.num_samples > combos:
                raise ValueError(
                    f"search.num_samples {search.num_samples} draws (with replacement) from "
                    f"{combos} choice combinations: list the values as grid axes instead"
                )
        if search.num_samples > 1 and not sampled:
            raise ValueError(
                "search.num_samples draws points of sampled axes; every axis is a grid "
                "(use {choice: [...]} or a distribution)"
            )
        return self

    @property
    def base_params(self) -> dict[str, Any]:
        params = dict(self.fixed)
        if self.metrics is not None:
            params["metrics"] = list(self.metrics)
        return params

    @property
    def axis_list(self) -> list[space.Axis]:
        """Every axis: the resolved upstream runs (probes), then the sweep."""
        axes = []
        if self.resolved_source is not None:
            axes.append(
                space.Axis("upstream", "grid", tuple(u.run_id for u in self.resolved_source))
            )
        axes += [space.parse_axis(str(name), raw) for name, raw in self.sweep.items()]
        return axes

    @property
    def grid_axes(self) -> list[space.Axis]:
        return [a for a in self.axis_list if not a.sampled]

    @property
    def sampled_axes(self) -> list[space.Axis]:
        return [a for a in self.axis_list if a.sampled]

    @property
    def data_axes(self) -> list[space.Axis]:
        return [a for a in self.axis_list if a.name.startswith(space.DATA_PREFIX)]

    @property
    def n_points(self) -> int:
        return self.search.num_samples if self.sampled_axes else 1

    @property
    def n_grid(self) -> int:
        product = math.prod(len(a.values) for a in self.grid_axes)
        if product > _ENUMERATE_UP_TO:  # expansion only adds trials: the refusal of a huge sweep
            return product  # stands without building its grid
        return len(self.grid_combinations())

    def grid_combinations(self) -> list[dict[str, Any]]:
        """Every combination of the grid axes, last axis fastest (Tune's grid order), each
        expanded into the trials the family says it stands for (``Trainer.expand``: e.g. one
        single-task model per task), in place."""
        family = FAMILIES[self.family]
        return [
            {**combo, **extra}
            for combo in space.grid_combinations(self.grid_axes)
            for extra in family.expand({**self.base_params, **combo})
        ]

    @property
    def expanded(self) -> bool:
        """A family expansion adds trials or params: the grid is not the product of its axes."""
        return self.grid_combinations() != space.grid_combinations(self.grid_axes)

    @property
    def expanded_keys(self) -> list[str]:
        """Params that the expansion sets (they tell expanded trials apart, e.g. ``task_index``)."""
        plain = {a.name for a in self.grid_axes}
        keys = {k for c in self.grid_combinations() for k in c} - plain
        return sorted(keys)

    @property
    def n_trials(self) -> int:
        return self.n_grid * self.n_points

    def sampled_points(self, offset: int = 0) -> list[dict[str, Any]]:
        """The grid algorithm's drawn points (``offset`` skips points of earlier launches)."""
        drawn = space.draw_points(self.sampled_axes, offset + self.n_points, self.search.seed)
        return drawn[offset:]

    def grid(self) -> list[dict[str, Any]]:
        """Every trial's parameters (``dataset.*`` axes included) for the grid algorithm, in
        Tune's order (the drawn points outermost, the last grid axis fastest)."""
        points = self.sampled_points() if self.sampled_axes else [{}]
        combos = self.grid_combinations()
        return [{**self.base_params, **p, **c} for p in points for c in combos]

    def check_points(self) -> list[dict[str, Any]]:
        """Parameters that bound what any trial can get: the grid, sampled axes at their corners
        (every corner combination if few, else one axis at a time)."""
        combos = self.grid_combinations()
        sampled = self.sampled_axes
        corners = [dict(zip([a.name for a in sampled], c, strict=True))
                   for c in itertools.product(*(a.corners() for a in sampled))]  # fmt: skip
        if len(corners) * len(combos) > 4096:
            first = {a.name: a.corners()[0] for a in sampled}
            corners = [{**first, a.name: v} for a in sampled for v in a.corners()]
        return [{**self.base_params, **p, **c} for p in corners for c in combos]

    def family_configs(self) -> list[Any]:
        config = FAMILIES[self.family].Config
        return [config(**family_params(params)) for params in self.check_points()]

    def dataset_for(self, params: dict[str, Any]) -> DatasetConfig:
        """The data view of a trial with these parameters (``dataset.*`` axes applied)."""
        keys = data_params(params)
        if not keys:
            return self.dataset
        return DatasetConfig.model_validate({**self.dataset.model_dump(), **keys})

    def views(self) -> dict[str, DatasetConfig]:
        """Each distinct data view of the study by its key (one, keyed ``""``, without data axes)."""
        combos = space.grid_combinations(
            [space.Axis(a.name, "grid", a.values) for a in self.data_axes]
        )
        return {view_key(c): self.dataset_for(c) for c in combos}


def data_params(params: dict[str, Any]) -> dict[str, Any]:
    """``dataset.<key>`` parameters, as DatasetConfig keys."""
    n = len(space.DATA_PREFIX)
    return {k[n:]: v for k, v in params.items() if k.startswith(space.DATA_PREFIX)}


def family_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if not k.startswith(space.DATA_PREFIX)}


def view_key(params: dict[str, Any]) -> str:
    """A data view's key: its ``dataset.*`` values, canonical JSON (``""`` for the study's one)."""
    keys = data_params(params)
    return json.dumps(keys, sort_keys=True, default=repr) if keys else ""


def _format_error(source: str, err: ValidationError, prefix: str = "") -> str:
    first = err.errors()[0]
    loc = ".".join(str(p) for p in (prefix, *first["loc"]) if p != "")
    message = first["msg"].removeprefix("Value error, ")
    got = first.get("input")
    shown = f" (got {got!r})" if first["type"] != "missing" and not isinstance(got, dict) else ""
    return f"{source}: {loc or 'spec'}: {message}{shown}"


def _check_family_params(spec: StudySpec, source: str) -> None:
    """Validate fixed params and each sweep value against the family Config, one axis at a time."""
    config = FAMILIES[spec.family].Config
    fields = set(config.model_fields)
    is_probe = "upstream" in fields
    if is_probe and spec.source is None:
        raise SpecError(
            f"{source}: source: family {spec.family!r} trains on an upstream representation; "
            "add source: {study: ..., where: ..., pick: ...}, {runs: [...]} or {ground_truth: true}"
        )
    if not is_probe and spec.source is not None:
        raise SpecError(f"{source}: source: family {spec.family!r} takes no upstream (probes do)")
    for section, keys in (("fixed", spec.fixed), ("sweep", spec.sweep)):
        if is_probe and "upstream" in keys:
            raise SpecError(f"{source}: {section}.upstream: set by source: (e.g. runs: [...])")
        for key in keys:
            if section == "sweep" and key.startswith(space.DATA_PREFIX):
                _check_data_axis(spec, key, source)
            elif key not in fields:
                raise SpecError(
                    f"{source}: {section}.{key}: not a parameter of family {spec.family!r}; "
                    f"known: {sorted(fields)}"
                )
    try:
        config(**spec.base_params)
    except ValidationError as err:
        raise SpecError(_format_error(source, err, "fixed")) from None
    for axis in spec.axis_list:
        if axis.name.startswith(space.DATA_PREFIX) or axis.name == "upstream":
            continue
        for value in axis.corners():
            try:
                config(**{**spec.base_params, axis.name: value})
            except ValidationError as err:
                raise SpecError(_format_error(source, err, "sweep")) from None
        if axis.kind in ("uniform", "loguniform"):  # draws are floats: bounds like 2, 8 pass
            inside = axis.low + 0.371 * (axis.high - axis.low)
            try:
                config(**{**spec.base_params, axis.name: inside})
            except ValidationError:
                raise SpecError(
                    f"{source}: sweep.{axis.name}: {axis.kind} draws floats (e.g. {inside:g}), "
                    f"which {axis.name} does not take; use randint for integers"
                ) from None
    try:
        configs = (
            spec.family_configs()
        )  # cross-field rules (e.g. task_index < n_tasks) over the grid
    except ValidationError as err:
        raise SpecError(_format_error(source, err, "sweep")) from None
    for cfg in configs:
        device = str(getattr(cfg, "device", "cpu"))
        if device.startswith("cuda") and spec.resources.gpu == 0:
            raise SpecError(
                f"{source}: device {device!r} needs a GPU but resources.gpu is 0; "
                "set resources.gpu (e.g. 0.25) or device: auto"
            )
    _check_search_metric(spec, configs, source)
    for cfg in configs:
        if getattr(cfg, "precision", "fp32") == "fp16" and spec.resources.gpu == 0:
            raise SpecError(
                f"{source}: precision fp16 needs a GPU (loss scaling) but resources.gpu is 0; "
                "use bf16 on the CPU"
            )
    # A metric the data view cannot feed is refused now, not after hours of training.
    metric_lists = {tuple(getattr(c, "metrics", ())) for c in configs}
    for key, view in spec.views().items():
        where = f"sweep.dataset ({key})" if key else "dataset"
        for metrics in metric_lists:
            try:
                why = sampling_metrics_refusal(view, metrics)
            except DataError as err:
                raise SpecError(f"{source}: {where}: {err}") from None
            if why:
                raise SpecError(f"{source}: metrics: {why}" + (f" in view {key}" if key else ""))


def _check_data_axis(spec: StudySpec, key: str, source: str) -> None:
    field = key[len(space.DATA_PREFIX) :]
    if field not in DatasetConfig.model_fields:
        raise SpecError(
            f"{source}: sweep.{key}: not a dataset key; known: {sorted(DatasetConfig.model_fields)}"
        )
    if spec.source is not None:
        raise SpecError(f"{source}: sweep.{key}: a probe's data is its upstream's; no data axes")
    loaded: dict[str, Any] = {}  # one load per dataset (an official file is read once)
    for value in space.parse_axis(key, spec.sweep[key]).values:
        try:
            view = spec.dataset_for({key: value})
            which = json.dumps([view.name, view.options], sort_keys=True, default=repr)
            if which not in loaded:
                loaded[which] = datasets.load(view.name, **view.options)
            datasets.subset(loaded[which], view.subset)
        except ValidationError as err:
            raise SpecError(_format_error(source, err, "sweep." + key)) from None
        except DataError as err:
            raise SpecError(f"{source}: sweep.{key}: {err}") from None


def _check_search_metric(spec: StudySpec, configs: list[Any], source: str) -> None:
    """A search metric that a registered metric produces must be one the trials compute."""
    metric = spec.search.metric
    if metric is None:
        return
    name = metric.removesuffix(SAMPLED)
    producers = [m for m, s in METRICS.items() if name in s.outputs]
    for cfg in configs:
        computed = set(getattr(cfg, "metrics", ()))
        if producers and not computed & set(producers):
            raise SpecError(
                f"{source}: search.metric {metric!r} comes from metric {producers[0]!r}, which "
                f"the trials do not compute (metrics: {sorted(computed)})"
            )


def apply_overrides(raw: dict[str, Any], overrides: list[str], source: str) -> dict[str, Any]:
    """``--set fixed.epochs=2``: the YAML gives defaults, each override replaces one key."""
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise SpecError(f"--set {item!r}: expected KEY=VALUE, e.g. fixed.epochs=2")
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise SpecError(f"{source}: --set {key}: {part!r} is not a mapping")
        try:
            node[parts[-1]] = yaml.safe_load(text)  # safe_load: no !!python tags
        except _YAML_ERRORS as err:
            raise SpecError(
                f"--set {key}: value {text!r} is not valid YAML ({_yaml_problem(err)})"
            ) from None
    return raw


def parse_spec(raw: Any, source: str = "<spec>", *, max_trials: int | None = None) -> StudySpec:
    """Validate a raw spec; a sweep over ``max_trials`` is refused before its grid is built."""
    if not isinstance(raw, dict):
        raise SpecError(f"{source}: expected a mapping of study settings at the top level")
    fixed = raw.get("fixed")
    if raw.get("metrics") is not None and isinstance(fixed, dict) and "metrics" in fixed:
        if (fixed["metrics"] or []) != raw["metrics"]:
            raise SpecError(
                f"{source}: metrics: given both at the top level {raw['metrics']} and in "
                f"fixed.metrics {fixed['metrics']}; keep one"
            )
    try:
        spec = StudySpec.model_validate(raw)  # not **raw: a YAML key may be a number
    except ValidationError as err:
        raise SpecError(_format_error(source, err)) from None
    if max_trials is not None and spec.n_trials > max_trials:
        raise SpecError(
            f"{source}: sweep: {spec.n_trials} trials (over {max_trials}); pass --yes if meant"
        )
    _check_family_params(spec, source)
    return spec


def load_spec(
    path: str | Path, overrides: list[str] | None = None, *, max_trials: int | None = None
) -> StudySpec:
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: study config not found")
    try:
        raw = yaml.safe_load(path.read_text())
    except UnicodeDecodeError:
        raise SpecError(f"{path}: not a text file (a study config is YAML)") from None
    except _YAML_ERRORS as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise SpecError(f"{path}:{where} invalid YAML ({_yaml_problem(err)})") from None
    if isinstance(raw, dict):
        raw = apply_overrides(raw, overrides or [], str(path))
    return parse_spec(raw, str(path), max_trials=max_trials)
