"""MLflow -> one tidy DataFrame: a row per trial run, ``params.*``, ``metrics.*`` and ``tags.*`` columns."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import yaml

from trainables import GROUND_TRUTH
from trainables.core import outputs
from trainables.errors import UserError
from trainables.metrics import ALIASES, SAMPLED

from . import runs_sql, stores
from .stores import shown_uri

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

# Final scores logged by trials (DESIGN section 6); per-epoch keys contain "/" and are excluded.
PROGRESS_PREFIXES = ("metric_seconds_",)


class ResultsError(UserError, LookupError):
    """No such study or no runs; the message is one line."""


def require_store(tracking_uri: str) -> None:
    """Read-only commands never create a tracking store: a missing SQLite file is one line, and
    so is a database that cannot be reached (MLflow itself retries for over a minute)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ResultsError(f"no tracking store at {tracking_uri} (no study has run here)")
    elif stores.is_database(tracking_uri):
        reason = stores.unreachable(tracking_uri)
        if reason is not None:
            raise ResultsError(
                f"tracking database {shown_uri(tracking_uri)} is not reachable ({reason})"
            )


def load_runs(
    tracking_uri: str,
    study: str,
    *,
    finished_only: bool = True,
    since_ms: int | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """The study's trial runs (FINISHED only by default; ``since_ms``: ended at or after it).

    A SQL store (SQLite, PostgreSQL) is read straight from its tables (``runs_sql``: the same
    frame, a query per table, no MLflow import); a server through MLflow's client."""
    require_store(tracking_uri)
    if stores.is_sql_store(tracking_uri):
        try:
            return _load_sql(tracking_uri, study, finished_only, since_ms, allow_empty)
        except runs_sql.SchemaMismatch:
            pass  # another MLflow's schema: its own client reads it
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise _no_study(study, tracking_uri, known)
    status = " and attributes.status = 'FINISHED'" if finished_only else ""
    since = f" and attributes.end_time >= {since_ms}" if since_ms is not None else ""
    runs = runs_frame(client, experiment.experiment_id, f"tags.role = 'trial'{status}{since}")
    if runs.empty:
        if allow_empty:
            return runs
        raise _no_runs(study, tracking_uri)
    return join_upstreams(runs.reset_index(drop=True), lambda ids: _upstreams_mlflow(client, ids))


def _load_sql(
    uri: str, study: str, finished_only: bool, since_ms: int | None, allow_empty: bool
) -> pd.DataFrame:
    db = runs_sql.engine(uri)
    try:
        experiment = runs_sql.experiment_id(db, study)
        if experiment is None:
            raise _no_study(study, uri, runs_sql.experiment_names(db))
        runs = runs_sql.trial_runs(db, experiment, finished_only=finished_only, since_ms=since_ms)
        if runs.empty:
            if allow_empty:
                return runs
            raise _no_runs(study, uri)
        return join_upstreams(runs, lambda ids: _upstreams_sql(db, ids))
    finally:
        db.dispose()


def _no_study(study: str, uri: str, known: list[str]) -> ResultsError:
    return ResultsError(f"no study {study!r} in {shown_uri(uri)}; known: {sorted(known)}")


def _no_runs(study: str, uri: str) -> ResultsError:
    return ResultsError(f"study {study!r} has no finished trial runs in {shown_uri(uri)}")


def runs_frame(client: MlflowClient, experiment_id: str, filter_string: str) -> pd.DataFrame:
    """A row per run: ``run_id``, ``status``, ``start_time`` / ``end_time`` (UTC timestamps),
    ``metrics.*``, ``params.*``, ``tags.*`` (the columns ``mlflow.search_runs`` gives, without its
    ``set_tracking_uri``, which rewrites the process's MLFLOW_TRACKING_URI for every subprocess)."""
    rows, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], filter_string, max_results=SEARCH_PAGE, page_token=token
        )
        for run in page:
            row = {
                "run_id": run.info.run_id,
                "experiment_id": run.info.experiment_id,
                "status": run.info.status,
                "start_time": pd.to_datetime(run.info.start_time, unit="ms", utc=True),
                "end_time": pd.to_datetime(run.info.end_time, unit="ms", utc=True),
            }
            row.update({f"metrics.{k}": v for k, v in run.data.metrics.items()})
            row.update({f"params.{k}": v for k, v in run.data.params.items()})
            row.update({f"tags.{k}": v for k, v in run.data.tags.items()})
            rows.append(row)
        token = page.token
        if not token:
            break
    return pd.DataFrame(rows)


SEARCH_PAGE = 10_000
UPSTREAM_TAG = "tags.upstream_run_id"
OUTPUTS_COLUMN = f"tags.{outputs.TAG}"  # the family's declared outputs, JSON (``Declared``)


# An upstream run as a probe's table groups by: its params (no dataset.*), family, study, name.
Upstream = dict[str, str]


def join_upstreams(
    runs: pd.DataFrame, lookup: Callable[[list[str]], dict[str, Upstream]]
) -> pd.DataFrame:
    """Probe runs get their upstream run's params as ``params.upstream.<name>`` columns (and its
    ``family`` and ``study``), so tables can group probes by what they were trained on.
    ``lookup(run_ids)`` finds the upstream runs (one that is gone is missing from its answer)."""
    if UPSTREAM_TAG not in runs:
        return runs
    ids = [i for i in runs[UPSTREAM_TAG].dropna().unique() if i != GROUND_TRUTH]
    joined: dict[str, Upstream] = {i: {} for i in ids}  # deleted since: the probe's tags name it
    joined.update(lookup(ids) if ids else {})
    if GROUND_TRUTH in set(runs[UPSTREAM_TAG].dropna()):
        joined[GROUND_TRUTH] = {"family": GROUND_TRUTH, "study": "", "run_name": GROUND_TRUTH}
    columns = sorted({key for values in joined.values() for key in values})
    extra = pd.DataFrame(
        {
            f"params.upstream.{key}": [
                joined.get(run_id, {}).get(key) if isinstance(run_id, str) else None
                for run_id in runs[UPSTREAM_TAG]
            ]
            for key in columns
        },
        index=runs.index,
    )
    return pd.concat([runs, extra], axis=1)


def _upstream(params: dict[str, str], family: str, study: str, run_name: str) -> Upstream:
    own = {k: v for k, v in params.items() if not k.startswith("dataset.")}
    return {**own, "family": family, "study": study, "run_name": run_name}


def _upstreams_mlflow(client: MlflowClient, run_ids: list[str]) -> dict[str, Upstream]:
    found = {}
    for run_id in run_ids:
        try:
            run = client.get_run(run_id)
        except Exception:  # deleted since
            continue
        study = client.get_experiment(run.info.experiment_id).name
        found[run_id] = _upstream(
            run.data.params, run.data.tags.get("family", ""), study, run.info.run_name or ""
        )
    return found


def _upstreams_sql(db: Any, run_ids: list[str]) -> dict[str, Upstream]:
    frame = runs_sql.runs_by_id(db, run_ids)
    found = {}
    for _, row in frame.iterrows():
        params = {
            k.removeprefix("params."): v
            for k, v in row.items()
            if k.startswith("params.") and isinstance(v, str)
        }
        tags = {k: row.get(f"tags.{k}") for k in ("family", "mlflow.runName")}
        found[row["run_id"]] = _upstream(
            params, tags["family"] or "", row["experiment_name"], tags["mlflow.runName"] or ""
        )
    return found


def final_metric_columns(runs: pd.DataFrame) -> list[str]:
    """Names of final metrics present in the frame (without the ``metrics.`` prefix)."""
    names = []
    for column in runs.columns:
        if not column.startswith("metrics."):
            continue
        name = column.removeprefix("metrics.")
        if "/" in name or name in ("epoch", "step") or name.startswith(PROGRESS_PREFIXES):
            continue
        if runs[column].notna().any():
            names.append(name)
    # Same values under the DESIGN name (also for the sampled representation's scores).
    repeated = {ALIASES[n] for n in names if n in ALIASES}
    repeated |= {
        f"{ALIASES[base]}{SAMPLED}"
        for n in names
        if n.endswith(SAMPLED) and (base := n.removesuffix(SAMPLED)) in ALIASES
    }
    return sorted(n for n in names if n not in repeated)


def varying_params(runs: pd.DataFrame, exclude: tuple[str, ...] = ("seed",)) -> list[str]:
    """Params that differ between runs: the study's sweep axes (seeds excluded by default).

    For probes, the upstream run id is replaced by what distinguishes upstreams: their family, and
    their params that vary within a family (seeds excluded as above).
    """
    upstream = "params.upstream.family" in runs
    names = []
    for column in runs.columns:
        if not column.startswith("params."):
            continue
        name = column.removeprefix("params.")
        if name in exclude or runs[column].nunique(dropna=False) < 2:
            continue
        if upstream and name in ("upstream", "upstream.run_name", "upstream.study"):
            continue  # one value per upstream run: would leave nothing to average
        if name.startswith("upstream.") and name != "upstream.family":
            if name.removeprefix("upstream.") in exclude:
                continue
            within = runs.groupby("params.upstream.family", dropna=False)[column]
            if not (within.nunique(dropna=False) > 1).any():
                continue
        names.append(name)
    return names


# -- several studies, their design, and the cache ----------------------------------------------


@dataclass(frozen=True)
class Design:
    """What a study's launches say about it (their ``config.yaml``), instead of guessing from runs."""

    study: str
    description: str
    family: str
    swept: tuple[str, ...]  # sweep axes (and ``upstream`` for probes), the seed included
    seed: str = "seed"
    question: tuple[str, ...] = ()  # the metrics the study's question is about (``question:``)
    alpha: float = 0.05  # the level its answer tests at
    contrasts: tuple[tuple[str, str], ...] = ()  # pairs of groups: the first better than the second

    @property
    def factors(self) -> tuple[str, ...]:
        """The swept params that are not the seed: what the study compares."""
        return tuple(s for s in self.swept if s != self.seed)


def study_design(client: MlflowClient, study: str) -> Design:
    """The union of the study's launches' sweep axes, read from each parent run's config.yaml."""
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        raise ResultsError(f"no study {study!r}")
    launches = client.search_runs([experiment.experiment_id], "tags.role = 'launch'")
    swept: list[str] = []
    description, family = "", ""
    question: tuple[str, ...] = ()
    alpha = 0.05
    contrasts: tuple[tuple[str, str], ...] = ()
    for launch in sorted(launches, key=lambda r: r.info.start_time):
        try:
            with tempfile.TemporaryDirectory() as directory:
                path = client.download_artifacts(launch.info.run_id, "config.yaml", directory)
                spec = yaml.safe_load(Path(path).read_text()) or {}
        except Exception:  # a launch without its config (older or foreign runs): skip it
            continue
        description = spec.get("description") or description
        family = spec.get("family") or family
        asked = spec.get("question") or {}
        question = tuple(asked.get("metrics") or question)
        alpha = float(asked.get("alpha", alpha))
        contrasts = tuple(tuple(map(str, c)) for c in asked.get("contrasts") or contrasts)
        axes = list((spec.get("sweep") or {}).keys())
        if spec.get("resolved_source"):
            axes.insert(0, "upstream")
        swept += [a for a in axes if a not in swept]
    return Design(study, description, family, tuple(swept), question=question, alpha=alpha,
                  contrasts=contrasts)


def load_studies(
    tracking_uri: str, studies: list[str], *, cache: Path | None = None
) -> pd.DataFrame:
    """Finished trial runs of several studies in one frame (``tags.study`` tells them apart).

    With ``cache``, each study's frame is kept as a Parquet file (data only: reading it runs no
    code, unlike a pickle) and refreshed with only the runs that finished since (finished runs do
    not change); delete the folder to rebuild it.
    """
    frames = []
    for study in studies:
        if cache is None:
            frames.append(load_runs(tracking_uri, study))
        else:
            frames.append(_cached_runs(tracking_uri, study, cache))
    return pd.concat(frames, ignore_index=True, sort=False) if len(frames) > 1 else frames[0]


def _cached_runs(tracking_uri: str, study: str, cache: Path) -> pd.DataFrame:
    key = hashlib.sha256(f"{tracking_uri}\0{study}".encode()).hexdigest()[:16]
    path = Path(cache) / f"{study}-{key}.parquet"
    if not path.is_file():
        runs = load_runs(tracking_uri, study)
    else:
        cached = pd.read_parquet(path)
        newest = int(cached["end_time"].max().timestamp() * 1000)
        fresh = load_runs(tracking_uri, study, since_ms=newest, allow_empty=True)
        if fresh.empty:
            return cached
        runs = pd.concat([cached[~cached["run_id"].isin(fresh["run_id"])], fresh], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.partial")  # a reader never sees half a file
    runs.to_parquet(partial, index=False)
    os.replace(partial, path)
    return pd.read_parquet(path)  # the same frame a later, cached report reads


def declared_outputs(runs: pd.DataFrame) -> outputs.Declared:
    """What the runs' families declare they report (``Trainer.outputs``): each run's ``outputs``
    tag; for runs logged before the tag, the declarations of the family registered under their
    ``family`` tag now (which imports it, and torch)."""
    tags, families = (
        runs[c] if c in runs else [None] * len(runs) for c in (OUTPUTS_COLUMN, "tags.family")
    )
    return outputs.gather(zip(tags, families, strict=True), _registered)


def _registered(family: str) -> outputs.Declared:
    from trainables import get_family  # torch: only for runs logged before the outputs tag

    return get_family(family).declared


def main_metrics(runs: pd.DataFrame, declared: outputs.Declared | None = None) -> list[str]:
    """The metrics a report leads with: final scores without the breakdowns families declare as
    ``detail`` (per task, relation, factor), train-split and timing columns (those stay in runs.csv
    and the full summary)."""
    declared = declared_outputs(runs) if declared is None else declared
    return [
        m
        for m in final_metric_columns(runs)
        if not declared.is_detail(m)
        and not m.endswith(SAMPLED)  # the sampled representation's scores: in summary.csv
        and not m.endswith(("_train", "_test"))
    ]


def filter_runs(runs: pd.DataFrame, where: str) -> pd.DataFrame:
    """``family=vae,dataset.name=dsprites``: keep runs whose param (else tag) has that value."""
    for item in filter(None, (part.strip() for part in where.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ResultsError(f"--where {item!r}: expected KEY=VALUE, e.g. family=vae")
        column = next((c for c in (f"params.{key}", f"tags.{key}") if c in runs), None)
        if column is None:
            known = sorted(c.split(".", 1)[1] for c in runs if c.startswith(("params.", "tags.")))
            raise ResultsError(f"--where {key}: no such param or tag; known: {known}")
        runs = runs[runs[column].map(lambda v, value=value: _same(v, value))]
        if runs.empty:
            raise ResultsError(f"--where {item}: no finished run matches")
    return runs


def _same(logged: object, wanted: str) -> bool:
    if str(logged) == wanted:
        return True
    try:
        return float(logged) == float(wanted)
    except (TypeError, ValueError):
        return False
