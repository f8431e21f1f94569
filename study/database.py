"""SQL databases as MLflow tracking stores: ``--tracking-uri postgresql://user@host:5432/db``.

MLflow calls SQLite fit for personal use: its one file takes one writer at a time, so many trials
logging at once wait on "database is locked". A team's or a cluster's store is a server database,
used directly (this module) or behind ``mlflow server --backend-store-uri postgresql://...`` (an
``http://`` URI, where the server owns all of this). Used directly, a database differs from a
SQLite file in four ways that the study handles here:

- the schema is created once, under a PostgreSQL advisory lock: several launches starting
  together into an empty database race in MLflow's migration, as they do on a new SQLite file;
- artifacts have no file beside the store and no server to proxy them: they go to the study's
  storage, ``<storage>/mlartifacts/<study>`` (local, NFS or a bucket every node can write);
- its columns have lengths SQLite ignores: a run's artifact URI fits in 200 characters;
- it is reached over the network: one line when it cannot be, and the password never shown.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import unquote

from analysis.stores import PASSWORD

from .errors import SpecError
from .storage import StoragePath, storage_path

ARTIFACTS = "mlartifacts"
MAX_RUN_ARTIFACT_URI = 200  # MLflow's runs.artifact_uri column: <location>/<run id>/artifacts
_RUN_SUFFIX = len("/") + 32 + len("/artifacts")
_LOCK_KEY = 0x64735F73746F7265  # pg_advisory_lock key: "ds_store", one per database


def password_to_env(uri: str) -> str:
    """A PostgreSQL URI without its password, which goes to ``PGPASSWORD`` instead: libpq reads
    it there in this process and in what it starts (a local Ray's trials). Ray Tune pickles what
    a launch hands its trials and callbacks into files on the study's storage (``tuner.pkl``),
    and a password must not be there. Trials on other nodes of a cluster read theirs from
    ``~/.pgpass``; better, they log through an mlflow server (docs/cluster.md)."""
    found = PASSWORD.match(uri)
    if found is None or not uri.lower().startswith("postgresql"):
        return uri
    os.environ["PGPASSWORD"] = unquote(found.group(2))
    return PASSWORD.sub(r"\1@", uri)


@contextlib.contextmanager
def creation_lock(uri: str) -> Iterator[None]:
    """Held while MLflow creates or migrates the schema: a PostgreSQL session advisory lock (it
    ends with the connection, so a killed holder frees it). Other databases: none; create their
    schema once with ``mlflow db upgrade URI`` before launching studies together."""
    if not uri.lower().startswith("postgresql"):
        yield
        return
    from sqlalchemy import create_engine, text
    from sqlalchemy.pool import NullPool

    engine = create_engine(uri, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": _LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": _LOCK_KEY})
    finally:
        engine.dispose()


def create_store(uri: str, create: Callable[[], object]) -> None:
    """Run ``create`` (the first MLflow call, which builds the schema) under ``creation_lock``."""
    with creation_lock(uri):
        create()


def artifact_root(storage: str | Path | StoragePath) -> str:
    """Where a study's artifacts go when the store is a database: ``<storage>/mlartifacts``."""
    storage = storage_path(storage)
    if storage.is_local:
        return (Path(storage.path) / ARTIFACTS).as_uri()
    return f"{storage.scheme}{storage.path}/{ARTIFACTS}"  # s3://, gs://: MLflow's own clients


def artifact_location(storage: str | Path | StoragePath, study: str) -> str:
    """The study's experiment artifact location in its storage; refused (before Ray starts) when
    a run's artifact URI would not fit MLflow's column."""
    location = f"{artifact_root(storage)}/{study}"
    longest = MAX_RUN_ARTIFACT_URI - _RUN_SUFFIX
    if len(location) > longest:
        raise SpecError(
            f"MLflow artifacts would go to {location} ({len(location)} characters), but a "
            f"database store holds at most {longest} there: give a shorter --storage path, or "
            "track through an mlflow server (--tracking-uri http://...)"
        )
    return location
