"""PostgreSQL as the tracking store, on a real PostgreSQL server started for these tests: used
directly (``--tracking-uri postgresql://...``: schema creation under concurrent launches, a study
interrupted and resumed, `study best` and `study report`) and behind a real `mlflow server
--backend-store-uri postgresql://...`. The counts are read from the database's own tables."""

from __future__ import annotations

import json
import multiprocessing
import os
import pwd
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest
import requests
import yaml
from local_servers import PG_BIN, PG_USER, Postgres, free_port  # benchmarks/ (conftest.py)
from mlflow.tracking import MlflowClient

from study import tracking

ROOT = Path(__file__).parents[2]
QUICKSTART = ROOT / "configs" / "quickstart.yaml"
CLUSTER = ROOT / "cluster.yaml"
EPOCHS = 4
USER = PG_USER
SETTINGS = [
    "dataset.subset={scale: [0, 5], orientation: 0, posX: '0:32:4', posY: '0:32:4'}",
    f"fixed.epochs={EPOCHS}",
    "fixed.n_tasks=2",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "fixed.pictures=false",
    "sweep={variant: [multi_head, random], seed: [0]}",
]


def _require_postgres() -> None:
    if not (PG_BIN / "initdb").is_file():
        if os.environ.get("DS_SKIP_POSTGRES"):
            pytest.skip(f"no PostgreSQL at {PG_BIN} and DS_SKIP_POSTGRES is set")
        pytest.fail(
            f"PostgreSQL 15 is not installed ({PG_BIN}/initdb is missing): `apt-get install "
            "postgresql-15` (.ci/run does), point DS_POSTGRES_BIN at its bin folder, or set "
            "DS_SKIP_POSTGRES=1 to skip these tests"
        )


@pytest.fixture(scope="module")
def postgres():
    _require_postgres()
    server = Postgres()
    try:
        yield server
    finally:
        server.stop()


def _study(cwd: Path, *args: str, check: bool = True, env: dict | None = None):
    result = subprocess.run([sys.executable, "-m", "study.cli", *args], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=600)  # fmt: skip
    if check:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def _runs(pg: Postgres, database: str, study: str, role: str) -> list[tuple[str, str]]:
    """(run id, status) of the study's runs of a role, straight from MLflow's tables."""
    return pg.query(
        database,
        "SELECT r.run_uuid, r.status FROM runs r JOIN experiments e USING (experiment_id) "
        "JOIN tags t ON t.run_uuid = r.run_uuid AND t.key = 'role' "
        "WHERE e.name = %s AND t.value = %s",
        study, role,
    )  # fmt: skip


def _assert_tracked_once(pg: Postgres, database: str, study: str, epochs: int | None) -> None:
    """One FINISHED launch, two FINISHED trial runs (one per trial id), final metrics present and
    every epoch's loss logged exactly once."""
    assert [s for _, s in _runs(pg, database, study, "launch")] == ["FINISHED"]
    trials = _runs(pg, database, study, "trial")
    assert sorted(s for _, s in trials) == ["FINISHED", "FINISHED"]
    ids = pg.query(database, "SELECT value FROM tags WHERE key = 'trial_id'")
    assert len(ids) == len({i for (i,) in ids}) == 2  # no trial has a second run
    for run_id, _ in trials:
        latest = dict(pg.query(database, "SELECT key, value FROM latest_metrics "
                               "WHERE run_uuid = %s", run_id))  # fmt: skip
        assert latest["mig"] >= 0 and latest.get("dci_disentanglement", 0) >= 0, latest
        if epochs:
            steps = pg.query(database, "SELECT step FROM metrics WHERE run_uuid = %s AND "
                             "key = 'train/loss' ORDER BY step", run_id)  # fmt: skip
            assert [s for (s,) in steps] == list(range(1, epochs + 1))


def _losses_logged(pg: Postgres, database: str) -> int:
    try:
        return pg.query(database, "SELECT count(*) FROM metrics WHERE key = 'train/loss'")[0][0]
    except psycopg.errors.UndefinedTable:  # the launch has not created MLflow's tables yet
        return 0


def _files_holding(text: bytes, *roots: Path) -> list[str]:
    return [str(path) for root in roots for path in root.rglob("*")
            if path.is_file() and not path.is_symlink() and text in path.read_bytes()]  # fmt: skip


@pytest.mark.slow
def test_concurrent_first_launches_into_an_empty_database_all_succeed(postgres, tmp_path):
    """MLflow's schema migration races on an empty database as on a new SQLite file: launches
    started together create it under a PostgreSQL advisory lock, then one experiment."""
    uri = postgres.create_database("race")
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        closed = pool.starmap(
            tracking.close_stale_launches, [(uri, f"s{i}", "x") for i in range(4)]
        )
        launch = (uri, "race", "vae", "", {}, "", str(tmp_path))  # artifacts: storage tmp_path
        launched = pool.starmap(tracking.start_parent_run, [launch] * 4)
    assert closed == [0] * 4
    assert len({experiment for experiment, _ in launched}) == 1
    assert len({run for _, run in launched}) == 4
    assert postgres.query("race", "SELECT count(*) FROM alembic_version") == [(1,)]
    assert len(_runs(postgres, "race", "race", "launch")) == 4
    assert len(list((tmp_path / "mlartifacts" / "race").rglob("config.yaml"))) == 4


def test_unreachable_database_is_one_line_without_the_password(postgres, tmp_path):
    uri = f"postgresql://{USER}:{postgres.password}@127.0.0.1:{free_port()}/nothing"
    with pytest.raises(tracking.TrackingUnreachable) as error:
        tracking.check_reachable(uri)
    assert "\n" not in str(error.value) and postgres.password not in str(error.value)
    assert f"{USER}:***@127.0.0.1" in str(error.value)
    report = _study(tmp_path, "report", "--study", "x", "--tracking-uri", uri, check=False)
    assert report.returncode == 2 and "is not reachable" in report.stderr
    assert postgres.password not in report.stdout + report.stderr


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_on_postgres_interrupted_resumed_and_reported(postgres, tmp_path):
    name = "pg_direct"
    uri = postgres.create_database(name)
    # Ray's session folder of this study only (short: Ray's socket paths stay under 107 chars).
    ray_tmp = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))
    env = {**os.environ, "RAY_TMPDIR": str(ray_tmp)}
    try:
        _interrupt_resume_report(postgres, name, uri, tmp_path, env)
        # The password was given in the URI: it is in no file the study, MLflow or Ray wrote.
        assert _files_holding(postgres.password.encode(), tmp_path, ray_tmp) == []
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)


def _interrupt_resume_report(postgres, name: str, uri: str, tmp_path: Path, env: dict) -> None:
    args = ["run", str(QUICKSTART), "--num-cpus", "2", "--tracking-uri", uri]
    for item in [*SETTINGS, f"name={name}"]:
        args += ["--set", item]
    process = subprocess.Popen([sys.executable, "-m", "study.cli", *args], cwd=tmp_path, env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 300
        while time.time() < deadline and process.poll() is None:
            if _losses_logged(postgres, name) >= 2:  # a trial is into its second epoch
                process.send_signal(signal.SIGINT)  # stop the launch as Ctrl-C does
                break
            time.sleep(0.2)
        stdout, stderr = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert process.returncode == 130, stdout[-3000:] + stderr[-3000:]
    assert f"study resume {name}" in stderr and f"{USER}:***@" in stderr
    assert [s for _, s in _runs(postgres, name, name, "launch")] == ["KILLED"]

    resumed = _study(tmp_path, "resume", name, "--num-cpus", "2", "--tracking-uri", uri, env=env)
    _assert_tracked_once(postgres, name, name, EPOCHS)
    # No server: the artifacts went to the study's storage, where the experiment says.
    (location,) = postgres.query(name, "SELECT artifact_location FROM experiments WHERE name = %s",
                                 name)[0]  # fmt: skip
    assert location == (tmp_path / "ray_results" / "mlartifacts" / name).as_uri()
    for run_id, _ in _runs(postgres, name, name, "trial"):
        assert "codes.npz" in {a.path for a in MlflowClient(uri).list_artifacts(run_id)}

    best = _study(tmp_path, "best", "--study", name, "--metric", "mig", "--json",
                  "--tracking-uri", uri)  # fmt: skip
    rows = json.loads(best.stdout)
    assert len(rows) == 2 and rows[0]["mig"] >= rows[1]["mig"]
    report = _study(tmp_path, "report", "--study", name, "--tracking-uri", uri, "--out", "report")
    assert "| multi_head |" in (tmp_path / "report" / "summary.md").read_text()
    printed = [stdout, stderr, resumed.stdout, resumed.stderr, best.stdout, best.stderr,
               report.stdout, report.stderr]  # fmt: skip
    assert not [text for text in printed if postgres.password in text]


@pytest.mark.ray
@pytest.mark.slow
def test_a_study_through_an_mlflow_server_on_postgres(postgres, tmp_path, external_study):
    name = "pg_server"
    backend = postgres.create_database(name)
    port = free_port()
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [str(Path(sys.executable).with_name("mlflow")), "server", "--host", "127.0.0.1",
         "--port", str(port), "--backend-store-uri", backend, "--serve-artifacts",
         "--artifacts-destination", str(tmp_path / "server-artifacts"), "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + 120
        while not _healthy(uri):
            alive = server.poll() is None and time.time() < deadline
            assert alive, (tmp_path / "server.log").read_text()[-3000:]
            time.sleep(0.5)
        external_study(name, seeds=(0, 1), pictures=False)
        run = _study(tmp_path, "run", f"{name}.yaml", "--num-cpus", "2", "--tracking-uri", uri)
        assert f"tracking {uri}" in run.stdout
        _study(tmp_path, "report", "--study", name, "--tracking-uri", uri, "--out", "report")
        assert "mig" in (tmp_path / "report" / "summary.md").read_text()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
    _assert_tracked_once(postgres, name, name, epochs=None)
    # The server owns the artifacts: proxied into its destination, none in the study's storage.
    (location,) = postgres.query(name, "SELECT artifact_location FROM experiments WHERE name = %s",
                                 name)[0]  # fmt: skip
    assert location.startswith("mlflow-artifacts:")
    assert list((tmp_path / "server-artifacts").rglob("codes.npz"))
    assert not (tmp_path / "ray_results" / "mlartifacts").exists()


def test_the_cluster_heads_postgresql_commands_work(monkeypatch):
    """cluster.yaml's PostgreSQL lines for the head, run here as its user would (twice: `ray up`
    runs them again), on a free port instead of 5432: a random password only the user can read,
    a server on 127.0.0.1, the mlflow role and database, reached with the server's URI."""
    _require_postgres()
    config = yaml.safe_load(CLUSTER.read_text())
    commands = config["head_setup_commands"] + config["head_start_ray_commands"]
    lines = [c for c in commands if "postgres" in c or "pgpass" in c]
    server = next(c for c in commands if "mlflow server" in c)
    port = str(free_port())
    home = Path(tempfile.mkdtemp(prefix="ds-head-"))  # under /tmp itself, as in Postgres
    as_user = []
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        os.chown(home, owner.pw_uid, owner.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]
    data = home / "mlflow-postgres"
    try:
        for _ in range(2):
            for line in lines:
                done = subprocess.run([*as_user, "env", f"HOME={home}", "bash", "-c",
                                       line.replace("5432", port)], cwd=home,
                                      capture_output=True, text=True, timeout=120)  # fmt: skip
                assert done.returncode == 0, (line, done.stdout[-2000:], done.stderr[-2000:])
        pgpass = home / ".pgpass"
        assert pgpass.stat().st_mode & 0o777 == 0o600
        host, at, database, user, password = pgpass.read_text().strip().split(":")
        assert (host, at, database, user) == ("127.0.0.1", port, "mlflow", "mlflow")
        assert len(password) == 48 and int(password, 16) > 0
        uri = shlex.split(server)[shlex.split(server).index("--backend-store-uri") + 1]
        monkeypatch.setenv("PGPASSFILE", str(pgpass))
        tracking.check_reachable(uri.replace("5432", port))  # as the server will connect
        monkeypatch.setenv("PGPASSFILE", str(home / "none"))
        with pytest.raises(tracking.TrackingUnreachable, match="password"):
            tracking.check_reachable(uri.replace("5432", port))
    finally:
        if (data / "postmaster.pid").exists():
            subprocess.run([*as_user, str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate",
                            "-w", "stop"], capture_output=True, timeout=60)  # fmt: skip
        shutil.rmtree(home, ignore_errors=True)


def _healthy(uri: str) -> bool:
    try:
        return requests.get(f"{uri}/health", timeout=1).ok
    except requests.RequestException:
        return False
