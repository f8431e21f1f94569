"""MLflow -> one tidy DataFrame: a row per trial run, ``params.*``, ``metrics.*`` and ``tags.*`` columns."""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import yaml
from mlflow.tracking import MlflowClient

from trainables import GROUND_TRUTH
from trainables.core import outputs
from trainables.errors import UserError
from trainables.metrics import ALIASES, SAMPLED

# Final scores logged by trials (DESIGN section 6); per-epoch keys contain "/" and are excluded.
PROGRESS_PREFIXES = ("metric_seconds_",)


class ResultsError(UserError, LookupError):
    """No such study or no runs; the message is one line."""


_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@]*):[^@/]*@")


def shown_uri(uri: str) -> str:
    """A tracking URI as printed: a password in it (``postgresql://user:pw@...``) as ``***``."""
    return _PASSWORD.sub(r"\1:***@", uri)


def require_store(tracking_uri: str) -> None:
    """Read-only commands never create a tracking store: a missing SQLite file is one line, and
    so is a database that cannot be reached (MLflow itself retries for over a minute)."""
    if tracking_uri.startswith("sqlite:///"):
        path = Path(tracking_uri.removeprefix("sqlite:///"))
        if not path.is_file():
            raise ResultsError(f"no tracking store at {tracking_uri} (no study has run here)")
    elif tracking_uri.split(":", 1)[0].split("+", 1)[0] in ("postgresql", "mysql"):
        from sqlalchemy import create_engine, text
        from sqlalchemy.pool import NullPool

        engine = create_engine(
            tracking_uri, poolclass=NullPool, connect_args={"connect_timeout": 10}
        )
        try:
            with engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except Exception as err:
            lines = str(getattr(err, "orig", None) or err).strip().splitlines() or [""]
            raise ResultsError(
                f"tracking database {shown_uri(tracking_uri)} is not reachable "
                f"({shown_uri(lines[0].strip())[:300]})"
            ) from None
        finally:
            engine.dispose()


def load_runs(
    tracking_uri: str,
    study: str,
    *,
    finished_only: bool = True,
    since_ms: int | None = None,
    allow_empty: bool = False,
) -> pd.DataFrame:
    """The study's trial runs (FINISHED only by default; ``since_ms``: ended at or after it)."""
    require_store(tracking_uri)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise ResultsError(f"no study {study!r} in {shown_uri(tracking_uri)}; known: {known}")
    status = " and attributes.status = 'FINISHED'" if finished_only else ""
    since = f" and attributes.end_time >= {since_ms}" if since_ms is not None else ""
    runs = runs_frame(client, experiment.experiment_id, f"tags.role = 'trial'{status}{since}")
    if runs.empty:
        if allow_empty:
            return runs
        raise ResultsError(
            f"study {study!r} has no finished trial runs in {shown_uri(tracking_uri)}"
        )
    return join_upstreams(runs.reset_index(drop=True), client)


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


def join_upstreams(runs: pd.DataFrame, client: MlflowClient) -> pd.DataFrame:
    """Probe runs get their upstream run's params as ``params.upstream.<name>`` columns (and its
    ``family`` and ``study``), so tables can group probes by what they were trained on."""
    if UPSTREAM_TAG not in runs:
        return runs
    joined: dict[str, dict[str, str]] = {}
    for run_id in runs[UPSTREAM_TAG].dropna().unique():
        if run_id == GROUND_TRUTH:
            joined[run_id] = {"family": GROUND_TRUTH, "study": "", "run_name": GROUND_TRUTH}
            continue
        try:
            upstream = client.get_run(run_id)
        except Exception:  # deleted since: the probe's own tags still name it
            joined[run_id] = {}
            continue
        params = {k: v for k, v in upstream.data.params.items() if not k.startswith("dataset.")}
        experiment = client.get_experiment(upstream.info.experiment_id)
        joined[run_id] = {
            **params,
            "family": upstream.data.tags.get("family", ""),
            "study": experiment.name,
            "run_name": upstream.info.run_name or "",
        }
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

    With ``cache``, each study's frame is kept as a pickle and refreshed with only the runs that
    finished since (finished runs do not change); delete the folder to rebuild it.
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
    path = Path(cache) / f"{study}-{key}.pkl"
    if not path.is_file():
        runs = load_runs(tracking_uri, study)
    else:
        cached = pd.read_pickle(path)
        newest = int(cached["end_time"].max().timestamp() * 1000)
        fresh = load_runs(tracking_uri, study, since_ms=newest, allow_empty=True)
        if fresh.empty:
            return cached
        runs = pd.concat([cached[~cached["run_id"].isin(fresh["run_id"])], fresh], ignore_index=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    runs.to_pickle(path)
    return runs


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
