"""Tracking stores by their URI: which kind a URI names, the embedded default, how a URI is printed
(never with its password), and whether a database answers. Plain functions, no MLflow: the
commands that only read (``study best``, ``status``) and the launch share them."""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_STORE = "mlruns.db"
DATABASES = ("postgresql", "mysql", "mssql")  # MLflow's SQLAlchemy stores besides SQLite
PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^/:@]*):([^@/]*)@")


def default_tracking_uri(directory: str | Path | None = None) -> str:
    """Embedded default: a SQLite file in the working directory."""
    return f"sqlite:///{(Path(directory or Path.cwd()) / DEFAULT_STORE).resolve()}"


def resolve_tracking_uri(cli_uri: str | None = None) -> str:
    """``--tracking-uri``, else ``$MLFLOW_TRACKING_URI``, else the local SQLite store."""
    return cli_uri or os.environ.get("MLFLOW_TRACKING_URI") or default_tracking_uri()


def _scheme(uri: str) -> str:
    return uri.split(":", 1)[0].split("+", 1)[0].lower()


def is_database(uri: str) -> bool:
    """``postgresql://...``, ``postgresql+psycopg://...``, ``mysql://...``: a server database."""
    return _scheme(uri) in DATABASES


def is_sql_store(uri: str) -> bool:
    """A database or a SQLite file: tables to read, not a server (``http``) or a folder."""
    return _scheme(uri) == "sqlite" or is_database(uri)


def shown_uri(uri: str) -> str:
    """The URI as printed or logged: a password in it becomes ``***``.

    Better still, keep it out of the URI: PostgreSQL's client reads ``~/.pgpass`` (mode 600)
    when the URI names no password, and so nothing prints it, logs it or shows it in ``ps``."""
    return PASSWORD.sub(r"\1:***@", uri)


def unreachable(uri: str, timeout_s: int = 10) -> str | None:
    """Why the database cannot be reached (one line, no password), or None when it can."""
    from sqlalchemy import create_engine, make_url, text
    from sqlalchemy.pool import NullPool

    try:
        url = make_url(uri)
        timeout = {"connect_timeout": timeout_s} if url.get_backend_name() != "mssql" else {}
        engine = create_engine(url, poolclass=NullPool, connect_args=timeout)
    except Exception as err:  # no driver, a malformed URI
        return _first_line(err)
    try:
        with engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except Exception as err:  # refused, unknown host, authentication, no such database
        return _first_line(getattr(err, "orig", None) or err)
    finally:
        engine.dispose()
    return None


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return shown_uri(lines[0] if lines else type(err).__name__)[:300]
