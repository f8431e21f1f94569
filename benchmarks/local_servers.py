"""Throw-away servers on 127.0.0.1 for benchmarks and tests: a real ``mlflow server`` and a real
PostgreSQL (``initdb`` + ``pg_ctl`` in a folder of its own under /tmp).

Imported by name (``import local_servers``): a benchmark run as ``python benchmarks/X.py`` has
``benchmarks/`` on its path; the tests put it there (``tests/study_tests/conftest.py``).
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import requests


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


class ServerUri(str):
    """A server's URI, and the id of its process (the leader of its process group)."""

    pid: int


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(
    tmp: Path,
    backend_uri: str | None = None,
    workers: int = 1,
    artifacts: Path | None = None,
    timeout_s: float = 180.0,
) -> Iterator[ServerUri]:
    """A real tracking server on a free local port (its own process group, ended on exit); yields
    its URI (``.pid``: its process). Its output goes to ``tmp/server.log``.

    ``backend_uri``: its store (default: a SQLite file ``tmp/server.db``). ``artifacts``: a folder
    the server proxies artifacts into (``--serve-artifacts --artifacts-destination``, as the
    cluster's head does); without it, new experiments keep their artifacts in
    ``tmp/server_artifacts`` (``--default-artifact-root``), written by the clients themselves.
    """
    port = free_port()
    executable = Path(sys.executable).parent / "mlflow"
    command = [
        str(executable) if executable.exists() else "mlflow", "server", "--host", "127.0.0.1",
        "--port", str(port), "--workers", str(workers),
        "--backend-store-uri", backend_uri or f"sqlite:///{tmp / 'server.db'}",
    ]  # fmt: skip
    if artifacts is None:
        command += ["--default-artifact-root", (tmp / "server_artifacts").as_uri()]
    else:
        command += ["--serve-artifacts", "--artifacts-destination", str(artifacts)]
    log_path = tmp / "server.log"
    tmp.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(
            command, cwd=tmp, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    uri = ServerUri(f"http://127.0.0.1:{port}")
    uri.pid = server.pid
    try:
        started, deadline = time.perf_counter(), time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({server.returncode}): "
                                   f"{log_path.read_text()[-500:]}")  # fmt: skip
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not answering after {timeout_s:.0f} s")
            time.sleep(0.5)
        _log(f"mlflow server answering at {uri} after {time.perf_counter() - started:.1f} s")
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# -- PostgreSQL -----------------------------------------------------------------------------------
def postgres_bin() -> Path:
    """``$DS_POSTGRES_BIN``, else PostgreSQL 15's, else the newest installed (Debian's layout)."""
    if os.environ.get("DS_POSTGRES_BIN"):
        return Path(os.environ["DS_POSTGRES_BIN"])
    installed = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"),
                       key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)  # fmt: skip
    preferred = Path("/usr/lib/postgresql/15/bin")
    if (preferred / "initdb").is_file() or not installed:
        return preferred
    return installed[-1].parent


PG_BIN = postgres_bin()
PG_USER = "study"


class Postgres:
    """A throw-away PostgreSQL server on 127.0.0.1 (and a socket in its own folder), password
    authentication over TCP; as root its files belong to the ``postgres`` user (initdb refuses
    root).

    ``durable``: PostgreSQL's own defaults (fsync, synchronous commits, full page writes), as a
    real deployment runs it; otherwise those are off, for fast tests.
    """

    def __init__(self, durable: bool = False) -> None:
        self.port, self.password = free_port(), secrets.token_hex(16)
        self.durable = durable
        # Under /tmp itself: pytest's tmp_path is private to root, and postgres must enter it.
        self.root = Path(tempfile.mkdtemp(prefix="ds-pg-"))
        self.data = self.root / "data"
        self.as_owner: list[str] = []
        try:
            self._start()
        except BaseException:  # a server half started is stopped, its folder removed
            self.stop()
            raise

    def _start(self) -> None:
        if os.geteuid() == 0:
            try:
                owner = pwd.getpwnam("postgres")
            except KeyError:
                raise RuntimeError(
                    "running as root, PostgreSQL needs the `postgres` user (apt creates it)"
                ) from None
            os.chown(self.root, owner.pw_uid, owner.pw_gid)
            self.as_owner = ["runuser", "-u", "postgres", "--"]
        pwfile = self.root / "password"
        pwfile.write_text(self.password + "\n")
        pwfile.chmod(0o600)
        if self.as_owner:
            os.chown(pwfile, owner.pw_uid, owner.pw_gid)
        self._run("initdb", "-D", self.data, "-U", PG_USER, f"--pwfile={pwfile}", "--no-sync",
                  "--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale")  # fmt: skip
        pwfile.unlink()
        # max_connections as cluster.yaml sets it: 4 MLflow server workers x (a pool of 20 + 10
        # overflow) fit with room for psql and the trials' direct connections.
        options = f"-c listen_addresses=127.0.0.1 -p {self.port} -k {self.root} -c max_connections=200"
        if not self.durable:
            options += " -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
        self._run("pg_ctl", "-D", self.data, "-l", self.root / "server.log", "-w", "-t", "60",
                  "-o", options, "start")  # fmt: skip

    def _run(self, tool: str, *args: object) -> None:
        command = [*self.as_owner, str(PG_BIN / tool), *map(str, args)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            log = self.root / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{tool} failed: {done.stdout[-2000:]}{done.stderr[-2000:]}{tail}")

    def stop(self) -> None:
        try:
            if (self.data / "postmaster.pid").exists():
                self._run("pg_ctl", "-D", self.data, "-m", "immediate", "-w", "stop")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)

    @property
    def pid(self) -> int:
        """The postmaster's process id; it leads the process group of PostgreSQL's processes."""
        return int((self.data / "postmaster.pid").read_text().split()[0])

    def connect(self, database: str = "postgres"):
        import psycopg

        return psycopg.connect(host="127.0.0.1", port=self.port, user=PG_USER,
                               password=self.password, dbname=database, autocommit=True)  # fmt: skip

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URI (password included, as a user may give it)."""
        connection = self.connect()  # autocommit: CREATE DATABASE runs outside a transaction
        try:
            with connection.cursor() as cursor:
                cursor.execute(f'CREATE DATABASE "{name}"')
        finally:
            connection.close()
        return f"postgresql://{PG_USER}:{self.password}@127.0.0.1:{self.port}/{name}"

    def query(self, database: str, sql: str, *args: object) -> list[tuple]:
        connection = self.connect(database)
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql, args)
                return cursor.fetchall()
        finally:
            connection.close()
