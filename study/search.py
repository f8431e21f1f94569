"""How a launch searches: Tune's param space, the Optuna searcher and the ASHA scheduler of a spec's
``search`` block, and the points earlier launches measured (an extension warm-starts from them)."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from typing import Any

from . import space
from .journal import Journal, read_trial, trial_folders
from .records import read_launch
from .spec import StudySpec
from .storage import StoragePath
from .trial import PROGRESS


@dataclass
class SearchSetup:
    param_space: dict[str, Any]
    algorithm: Any = None  # a Tune searcher (Optuna), None for the grid
    scheduler: Any = None
    num_samples: int = 1
    grid: tuple[dict[str, Any], ...] = ()
    by_index: dict[str, list[Any]] | None = None
    metric: str | None = None


def search_setup(
    spec: StudySpec,
    extend_from: list[StoragePath],
    warm: list[StoragePath] | None = None,
    asked: int = 0,
) -> SearchSetup:
    """Tune's param space, searcher and scheduler for the spec's ``search`` block.

    The grid algorithm's drawn points continue past those of earlier launches (``extend_from``);
    Optuna starts from what they measured (or from its own storage, when one is given), and
    from what the launches in ``warm`` measured (a resumed launch's own finished trials);
    ``asked``: points the resumed launch had already asked for, which its sampler skips.
    """
    search = spec.search
    scheduler = None
    if search.scheduler is not None:
        from ray.tune.schedulers import ASHAScheduler

        asha = search.scheduler
        # Time is the trials' own progress (epochs, or optimiser steps), which a resumed trial
        # continues from its checkpoint (Tune's iteration count restarts at 0). A trial that
        # reaches max_t finishes: only rungs below it stop trials.
        scheduler = ASHAScheduler(
            time_attr=PROGRESS, metric=asha.metric, mode=asha.mode,
            grace_period=asha.grace_period, reduction_factor=asha.reduction_factor,
            max_t=asha.max_t or _trial_length(spec), stop_last_trials=False,
        )  # fmt: skip
    # The final metric is in the last report only, ASHA's in every report but the last: Tune's
    # check that every report holds both would fail every trial. The trial checks the final one.
    if search.algorithm == "optuna" or scheduler is not None:
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    else:
        os.environ.pop("TUNE_DISABLE_STRICT_METRIC_CHECKING", None)
    offset = sum(_launch_points(folder) for folder in extend_from)  # points drawn before
    if search.algorithm == "grid":
        return SearchSetup(space.to_param_space(spec, offset), scheduler=scheduler)

    import optuna
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    domains, by_index = space.tune_domains(spec.sampled_axes)
    points, rewards = [], []
    if search.storage is None:  # warm start from the earlier launches' finished trials
        points, rewards = _measured_points(spec, [*extend_from, *(warm or [])], by_index)
    searcher = OptunaSearch(
        metric=search.metric,
        mode=search.mode,
        # An extension's sampler must not replay the random start of the launches before it,
        # nor a resumed one the points its launch already asked for.
        sampler=optuna.samplers.TPESampler(
            seed=search.seed + offset + asked, n_startup_trials=search.startup_points
        ),
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(search.storage) if search.storage else None,
        points_to_evaluate=points or None,
        evaluated_rewards=rewards or None,
    )
    grid = tuple(spec.grid_combinations())
    # Each point runs once per grid combination (seeds): Optuna sees the mean of the repeats.
    # Always wrapped, even for one combination: the bare searcher reads search.metric from every
    # report, and only the final one holds it.
    algorithm = Repeater(searcher, repeat=len(grid), set_index=True)
    return SearchSetup(
        {"params": {**spec.base_params, **domains}}, algorithm, scheduler,
        spec.n_points * len(grid), grid, by_index, search.metric,
    )  # fmt: skip


def _trial_length(spec: StudySpec) -> int:
    """A full trial's progress (the longest config's): epochs, or optimiser steps."""
    return max(
        int(cfg.steps if getattr(cfg, "steps", None) is not None else getattr(cfg, "epochs", 1))
        for cfg in spec.family_configs()
    )


def _launch_points(folder: StoragePath) -> int:
    """How many points of the sampled axes a launch drew (its spec's ``n_points``)."""
    record = read_launch(folder)
    return int(record.get("n_points", 0))


def _measured_points(
    spec: StudySpec, folders: list[StoragePath], by_index: dict[str, list[Any]]
) -> tuple[list[dict[str, Any]], list[float]]:
    """Points of earlier launches with their metric, averaged over their finished trials, in
    the Optuna space's terms (``params/<axis>``; index-coded axes as indices)."""
    metric = spec.search.metric
    measured: dict[str, list[float]] = {}
    for folder in folders:
        for path in trial_folders(folder.fs, folder.path):
            trial = read_trial(Journal(folder.fs, path), metric)
            point = (trial.run or {}).get("point")
            if point and trial.value is not None and trial.status == "FINISHED":
                key = json.dumps(point, sort_keys=True)
                measured.setdefault(key, []).append(trial.value)
    points, rewards = [], []
    for key, values in measured.items():
        point = json.loads(key)
        reward = sum(values) / len(values)
        if not math.isfinite(reward) or not _inside(point, spec.sampled_axes):
            continue  # Optuna refuses NaN, and points outside today's space
        for name, choices in by_index.items():
            point[name] = choices.index(point[name])
        points.append({f"params/{name}": value for name, value in point.items()})
        rewards.append(reward)
    return points, rewards


def _inside(point: dict[str, Any], axes: list[space.Axis]) -> bool:
    """Whether a measured point lies in the space the sampled axes span today."""
    if set(point) != {a.name for a in axes}:
        return False
    for axis in axes:
        value = point[axis.name]
        if axis.categorical:
            if value not in axis.values:
                return False
        elif not isinstance(value, int | float) or not axis.low <= value <= axis.high:
            return False
    return True
