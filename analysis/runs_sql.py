"""Trial runs read straight from an MLflow SQL store's tables (SQLite, PostgreSQL, MySQL).

The same frame as ``results.runs_frame`` (checked column for column and row for row against
MLflow's ``search_runs`` in tests/analysis_tests/test_runs_sql.py), for two reasons:

- speed: a query per table (runs, latest metrics, params, tags) instead of MLflow's objects per
  run, which matters at the 12,600 runs of Locatello et al.; and no import of MLflow itself
  (seconds), so ``study best`` answers in well under a second;
- only what is asked: the filter (role = trial, status, end time) runs in the database.

MLflow's schema is read as MLflow 3 writes it (``runs``, ``latest_metrics``, ``params``, ``tags``,
``experiments``); a store whose schema differs falls back to MLflow (``SchemaMismatch``).
"""

from __future__ import annotations

from collections.abc import Iterable

import pandas as pd
from sqlalchemy import bindparam, create_engine, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

SQL_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql")
ROLE_TAG = "role"


class SchemaMismatch(RuntimeError):
    """The store's tables are not the ones this reader knows: read it through MLflow instead."""


def is_sql_store(uri: str) -> bool:
    """A database URI (``postgresql+psycopg2://...`` included), not a server or a folder."""
    return uri.split(":", 1)[0].split("+", 1)[0] in SQL_SCHEMES


def engine(uri: str) -> Engine:
    # NullPool: a command opens the store once; no pooled connections outlive it
    return create_engine(uri, poolclass=NullPool)


def experiment_id(db: Engine, name: str) -> str | None:
    """The active experiment called ``name`` (MLflow's ``get_experiment_by_name``)."""
    rows = _query(db, "SELECT experiment_id FROM experiments WHERE name = :name", name=name)
    return str(rows[0][0]) if rows else None


def experiment_names(db: Engine) -> list[str]:
    return sorted(str(r[0]) for r in _query(db, "SELECT name FROM experiments"))


def trial_runs(
    db: Engine, experiment: str, *, finished_only: bool = True, since_ms: int | None = None
) -> pd.DataFrame:
    """The experiment's active runs tagged ``role = trial`` (FINISHED only by default;
    ``since_ms``: ended at or after it), newest first as MLflow orders them."""
    where = (
        "r.experiment_id = :experiment AND r.lifecycle_stage = 'active' AND EXISTS (SELECT 1 "
        "FROM tags t WHERE t.run_uuid = r.run_uuid AND t.key = :role AND t.value = 'trial')"
    )
    if finished_only:
        where += " AND r.status = 'FINISHED'"
    if since_ms is not None:
        where += " AND r.end_time >= :since"
    bound = {"experiment": int(experiment), "role": ROLE_TAG, "since": since_ms}
    return _frame(db, where, bound)


def runs_by_id(db: Engine, run_ids: Iterable[str]) -> pd.DataFrame:
    """The runs of these ids (any experiment, any role), with their experiment's name as
    ``experiment_name``."""
    ids = sorted(set(run_ids))
    if not ids:
        return pd.DataFrame()
    frame = _frame(db, "r.run_uuid IN :ids", {"ids": ids}, expanding=("ids",))
    if frame.empty:
        return frame
    names = dict(
        _query(
            db, "SELECT experiment_id, name FROM experiments WHERE experiment_id IN :ids",
            expanding=("ids",), ids=sorted({int(e) for e in frame["experiment_id"]}),
        )
    )  # fmt: skip
    frame["experiment_name"] = [names.get(int(e), "") for e in frame["experiment_id"]]
    return frame


def _frame(db: Engine, where: str, bound: dict, expanding: tuple[str, ...] = ()) -> pd.DataFrame:
    """One row per run matching ``where`` (on ``runs r``): the columns of ``runs_frame``."""
    runs = _query(
        db,
        "SELECT r.run_uuid, r.experiment_id, r.status, r.start_time, r.end_time FROM runs r "
        f"WHERE {where} ORDER BY r.start_time DESC, r.run_uuid ASC",
        expanding=expanding,
        **bound,
    )
    if not runs:
        return pd.DataFrame()
    frame = pd.DataFrame(runs, columns=["run_id", "experiment_id", "status", "start", "end"])
    frame["experiment_id"] = frame["experiment_id"].astype(str)
    for column, name in (("start", "start_time"), ("end", "end_time")):
        frame[name] = pd.to_datetime(frame.pop(column), unit="ms", utc=True)
    inner = f"SELECT r.run_uuid FROM runs r WHERE {where}"
    metrics = pd.DataFrame(
        _query(
            db, f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN "
            f"({inner})", expanding=expanding, **bound,
        ),
        columns=["run_id", "key", "value", "is_nan"],
    )  # fmt: skip
    metrics["value"] = metrics["value"].astype(float).where(~metrics["is_nan"].astype(bool))
    wide = [frame.set_index("run_id")]
    for table, long in (
        ("metrics", metrics),
        *((t, _pairs(db, t, inner, bound, expanding)) for t in ("params", "tags")),
    ):
        if not long.empty:
            pivot = long.pivot(index="run_id", columns="key", values="value")
            wide.append(pivot.add_prefix(f"{table}.").rename_axis(columns=None))
    out = pd.concat(wide, axis=1).loc[frame["run_id"]]
    out.index.name = "run_id"
    return out.reset_index()


def _pairs(db: Engine, table: str, inner: str, bound: dict, expanding) -> pd.DataFrame:
    rows = _query(
        db, f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({inner})",
        expanding=expanding, **bound,
    )  # fmt: skip
    return pd.DataFrame(rows, columns=["run_id", "key", "value"])


def _query(db: Engine, sql: str, expanding: tuple[str, ...] = (), **bound) -> list[tuple]:
    statement = text(sql)
    used = {k: v for k, v in bound.items() if f":{k}" in sql}
    if expanding:
        statement = statement.bindparams(*(bindparam(k, expanding=True) for k in expanding))
    try:
        with db.connect() as connection:
            return [tuple(row) for row in connection.execute(statement, used)]
    except SQLAlchemyError as exc:
        if "no such table" in str(exc) or "does not exist" in str(exc):
            raise SchemaMismatch(str(exc).splitlines()[0]) from None
        raise
