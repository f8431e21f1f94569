"""Resolve a probe study's ``source`` to upstream MLflow runs, before Ray starts.

Every way a selection can be wrong is one ``SpecError`` line naming the key: no such study, a
``where`` param the upstream runs do not have, nothing matched, a metric not logged, a run that is
not a finished trial, has no saved model, or was trained on another dataset view than the probe's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from mlflow.entities import Run
from mlflow.tracking import MlflowClient

from trainables import GROUND_TRUTH, get_family
from trainables.core import outputs
from trainables.errors import UserError
from trainables.metrics import selection
from trainables.metrics.selection import resolve_mode

from . import params, tracking
from .spec import SpecError, StudySpec
from .spec_blocks import Source, Upstream

MODEL_CONFIG = "model/config.json"  # what trainables.core.saved writes


def resolve(spec: StudySpec, uri: str, where: str = "source") -> StudySpec:
    """The spec with ``resolved_source`` filled (unchanged if it has no source or is resolved)."""
    if spec.source is None or spec.resolved_source is not None:
        return spec
    upstreams = resolve_source(spec.source, spec, uri, where)
    return spec.model_copy(update={"resolved_source": upstreams})


def resolve_source(source: Source, spec: StudySpec, uri: str, where: str) -> list[Upstream]:
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # a bare client would create an empty store here: there is nothing to select from
        raise SpecError(f"{where}: no tracking store at {uri} (run the upstream study first)")
    client = MlflowClient(uri)
    if source.study is not None:
        runs = _select(client, source, uri, where)
    else:
        runs = [_explicit_run(client, run_id, uri, where) for run_id in source.runs]
    dataset = params.flatten(json.loads(spec.dataset.model_dump_json()), "dataset.")
    upstreams = []
    unique = {run.info.run_id: run for run in runs}  # a run listed twice is one source
    for run in unique.values():
        _check_usable(client, run, dataset, where)
        experiment = client.get_experiment(run.info.experiment_id)
        upstreams.append(
            Upstream(
                run_id=run.info.run_id,
                study=experiment.name,
                family=run.data.tags.get("family", ""),
                run_name=run.info.run_name or "",
            )
        )
    if source.ground_truth:
        upstreams.append(Upstream(run_id=GROUND_TRUTH, family=GROUND_TRUTH))
    return upstreams


def provenance_tags(spec: StudySpec) -> dict[str, dict[str, str]]:
    """Upstream run id -> the tags every probe run trained on it carries."""
    selector = json.dumps(spec.source.model_dump(exclude_defaults=True), sort_keys=True)
    return {
        u.run_id: {
            "upstream_run_id": u.run_id,
            "upstream_study": u.study,
            "upstream_family": u.family,
            "upstream_run_name": u.run_name,
            "upstream_selector": selector,
        }
        for u in spec.resolved_source or []
    }


def _select(client: MlflowClient, source: Source, uri: str, where: str) -> list[Run]:
    studies = [source.study] if isinstance(source.study, str) else list(source.study or [])
    if not studies:
        raise SpecError(f"{where}.study: an empty list of studies")
    runs: list[Run] = []
    for name in studies:
        experiment = client.get_experiment_by_name(name)
        if experiment is None:
            raise SpecError(f"{where}.study: no study {name!r} in {uri}")
        found = client.search_runs(
            [experiment.experiment_id],
            f"tags.{tracking.ROLE_TAG} = 'trial' and attributes.status = 'FINISHED'",
            max_results=50_000,
        )
        if not found:
            raise SpecError(f"{where}.study: study {name!r} has no finished trial runs")
        runs += sorted(found, key=lambda r: r.info.start_time)
    known = sorted(set().union(*(r.data.params for r in runs)))
    for key in [*source.where, *source.group_by]:
        if key not in known:
            raise SpecError(
                f"{where}: {key!r} is not a param of study {source.study}; known: {known}"
            )
    matched = [r for r in runs if all(_matches(r, k, v) for k, v in source.where.items())]
    if not matched:
        raise SpecError(
            f"{where}.where: no finished run of study {source.study} matches {source.where}"
        )
    if source.pick == "all":
        return matched
    return _best(matched, source, where)


def _matches(run: Run, key: str, wanted: Any) -> bool:
    """A list in ``where`` lists accepted values, unless the param itself is a list."""
    if key not in run.data.params:
        return False
    value = params.parse_param(run.data.params[key])
    if isinstance(value, list):
        nested = isinstance(wanted, list) and all(isinstance(w, list) for w in wanted) and wanted
        accepted = wanted if nested else [wanted]
    else:
        accepted = wanted if isinstance(wanted, list) else [wanted]
    return any(_same(value, a) for a in accepted)


def _same(value: Any, wanted: Any) -> bool:
    if value == wanted:
        return True
    try:  # YAML reads 1e-3 as a string; the run logged 0.001
        return float(value) == float(wanted)
    except (TypeError, ValueError):
        return str(value) == str(wanted)


def _best(runs: list[Run], source: Source, where: str) -> list[Run]:
    metric = source.metric
    scored = [r for r in runs if math.isfinite(r.data.metrics.get(metric, math.nan))]
    if not scored:
        logged = sorted(set().union(*(r.data.metrics for r in runs)))
        raise SpecError(
            f"{where}.metric: {metric!r} is not logged (finite) by the selected runs; logged: {logged}"
        )
    # The upstream runs' declared outputs (their family's, for runs logged before the tag).
    tags = ((r.data.tags.get(outputs.TAG), r.data.tags.get("family")) for r in scored)
    declared = outputs.gather(tags, lambda family: get_family(family).declared)
    try:
        mode = resolve_mode(metric, source.mode, declared.direction)
    except UserError:
        raise SpecError(
            f"{where}.mode: is higher {metric!r} better? set mode: max or min"
        ) from None
    keys = [*source.group_by, *(["seed"] if source.pick == "per_seed" else [])]
    # one best per upstream study too: several studies are several sources
    if "seed" in keys and any("seed" not in r.data.params for r in scored):
        raise SpecError(f"{where}.pick: per_seed, but the selected runs log no seed param")
    groups: dict[tuple, list[Run]] = {}
    for run in sorted(scored, key=lambda r: r.info.start_time):  # ties: the earliest run
        groups.setdefault(
            (run.info.experiment_id, *(run.data.params.get(k) for k in keys)), []
        ).append(run)
    best = {
        g: selection.best(runs, lambda r: r.data.metrics[metric], mode)
        for g, runs in groups.items()
    }
    return [best[g] for g in sorted(best, key=lambda g: tuple(map(str, g)))]


def _explicit_run(client: MlflowClient, run_id: str, uri: str, where: str) -> Run:
    try:
        run = client.get_run(run_id)
    except Exception:  # MLflow raises different types for a malformed and an unknown id
        raise SpecError(f"{where}.runs: no run {run_id!r} in {uri}") from None
    if run.info.lifecycle_stage != "active":
        raise SpecError(f"{where}.runs: run {run_id} is deleted")
    if run.data.tags.get(tracking.ROLE_TAG) != "trial":
        raise SpecError(f"{where}.runs: run {run_id} is not a trial run of a study")
    if run.info.status != "FINISHED":
        raise SpecError(f"{where}.runs: run {run_id} is {run.info.status}, not FINISHED")
    return run


def _check_usable(client: MlflowClient, run: Run, dataset: dict[str, str], where: str) -> None:
    run_id = run.info.run_id
    if "upstream_run_id" in run.data.tags:
        raise SpecError(
            f"{where}: run {run_id} ({run.info.run_name}) is itself a probe "
            f"({run.data.tags.get('family')}); select the model it probes"
        )
    names = {a.path for a in client.list_artifacts(run_id, "model")}
    if MODEL_CONFIG not in names:
        raise SpecError(
            f"{where}: run {run_id} ({run.info.run_name}) has no saved model ({MODEL_CONFIG})"
        )
    theirs = {k: v for k, v in run.data.params.items() if k.startswith("dataset.")}
    for key in sorted(set(theirs) | set(dataset)):
        if theirs.get(key) != dataset.get(key):
            raise SpecError(
                f"{where}: run {run_id} ({run.info.run_name}) was trained on {key}="
                f"{theirs.get(key)}, this study has {key}={dataset.get(key)}; probes must use "
                "the upstream's dataset section"
            )
