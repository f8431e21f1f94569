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
from typing import Any

import yaml
from pydantic import (
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from trainables import DatasetConfig, get_family
from trainables import data as datasets
from trainables.core.checked import Checked
from trainables.core.view import sampling_metrics_refusal
from trainables.data import DataError
from trainables.metrics import METRICS, SAMPLED, get_metric

from . import space
from .errors import SpecError
from .spec_blocks import Question, Resources, Search, Source, Upstream, settle_directions

_ENUMERATE_UP_TO = 100_000  # grid combinations n_grid enumerates to apply a family's expansion

__all__ = ["SpecError", "StudySpec", "load_spec", "parse_spec"]


# Besides YAMLError, PyYAML's safe_load leaks these on malformed scalars (`!!int x`, `!!bool x`,
# `!!timestamp x`, `2020-13-45`) and on deep nesting (`[[[[...`).
_YAML_ERRORS = (yaml.YAMLError, ValueError, LookupError, AttributeError, RecursionError)


def _yaml_problem(err: BaseException) -> str:
    """What went wrong, in words: PyYAML's own description, else what the leaked error means."""
    problem = getattr(err, "problem", None) or getattr(err, "reason", None)
    if problem:
        return str(problem)
    if isinstance(err, RecursionError):
        return "nested too deeply"
    return "a value of a tagged or malformed type, e.g. an invalid date or !!int on text"


class StudySpec(Checked):
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
        get_family(value)  # a RegistryError: unknown name, bad dotted path, not a Trainer
        return value

    @field_validator("question", "search")
    @classmethod
    def _directions(cls, value: Question | Search | None, info: ValidationInfo) -> Any:
        if value is not None and "family" in info.data:  # else the family's own error is shown
            settle_directions(value, get_family(info.data["family"]).declared.direction)
        return value

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            get_metric(name)
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
        family = get_family(self.family)
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
        config = get_family(self.family).Config
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
    config = get_family(spec.family).Config
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
