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
    return runs.reset_index(drop=True)


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
    """Params that differ between runs: the study's sweep axes (seeds excluded by default)."""
    names = []
    for column in runs.columns:
        if column.startswith("params."):
            name = column.removeprefix("params.")
            if name not in exclude and runs[column].nunique(dropna=False) > 1:
                names.append(name)
    return names
