"""MLflow -> one tidy DataFrame: a row per trial run, ``params.*``, ``metrics.*`` and ``tags.*`` columns."""

from __future__ import annotations

import mlflow
import pandas as pd
from mlflow.tracking import MlflowClient

from trainables.metrics import ALIASES, SAMPLED

# Final scores logged by trials (DESIGN section 6); per-epoch keys contain "/" and are excluded.
PROGRESS_PREFIXES = ("metric_seconds_",)


class ResultsError(LookupError):
    """No such study or no runs; the message is one line."""


def load_runs(tracking_uri: str, study: str, *, finished_only: bool = True) -> pd.DataFrame:
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise ResultsError(f"no study {study!r} in {tracking_uri}; known: {known}")
    mlflow.set_tracking_uri(tracking_uri)
    status = " and attributes.status = 'FINISHED'" if finished_only else ""
    runs = mlflow.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.role = 'trial'{status}",
        output_format="pandas",
    )
    if runs.empty:
        raise ResultsError(f"study {study!r} has no finished trial runs in {tracking_uri}")
    return join_upstreams(runs.reset_index(drop=True), client)


UPSTREAM_TAG = "tags.upstream_run_id"
GROUND_TRUTH = "ground_truth"


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
