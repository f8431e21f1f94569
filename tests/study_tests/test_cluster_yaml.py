"""cluster.yaml is checked by Ray's own autoscaler validation (the one `ray up` runs: prepare_config
then validate_config against the ray-schema.json shipped in the installed ray), and its commands do
what the cluster path needs: a pinned GPU torch that the package install keeps, the dashboard on
localhost, MLflow on the private address. Shell lines from the YAML are run here where they can be."""

from __future__ import annotations

import copy
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version
from ray.autoscaler._private.util import prepare_config, validate_config

ROOT = Path(__file__).parents[2]
CLUSTER = ROOT / "cluster.yaml"
LOCK = ROOT / "requirements.lock"
MOUNT = "/home/ray/disentangle-study"  # where file_mounts puts the repo on every node
CUDA_INDEX = re.compile(r"--index-url[ =]https://download\.pytorch\.org/whl/(cu\d+)\b")


def _raw() -> dict:
    return yaml.safe_load(CLUSTER.read_text())


def _ray_validate(config: dict) -> dict:
    """What `ray up` does before touching a cloud: fill defaults, then validate (raises if bad)."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def _lock_pin(name: str) -> str:
    pins = [line for line in LOCK.read_text().splitlines() if line.startswith(f"{name}==")]
    assert len(pins) == 1, f"requirements.lock pins {name} {len(pins)} times"
    return pins[0].split("==", 1)[1]


def _index(commands: list[str], predicate, what: str) -> int:
    found = [i for i, command in enumerate(commands) if predicate(command)]
    assert len(found) == 1, f"expected one {what} command, found {len(found)} in {commands}"
    return found[0]


def _is_torch_install(command: str) -> bool:
    return command.startswith("pip install") and re.search(r"(^|\s)torch==", command) is not None


def _is_package_install(command: str) -> bool:
    return command.startswith("pip install") and f"-e {MOUNT}" in command


def _bash(command: str, tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    """A setup line run here: the node's repo mount is this checkout, its /tmp is tmp_path."""
    # /tmp first: this checkout may itself live under /tmp (a CI clone)
    local = command.replace("/tmp/", f"{tmp_path}/").replace(MOUNT, str(ROOT))
    return subprocess.run(
        ["bash", "-c", local], capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path), **env},
    )  # fmt: skip


def test_cluster_yaml_passes_rays_own_schema():
    prepared = _ray_validate(_raw())
    assert prepared["provider"]["type"] == "aws"
    assert prepared["head_node_type"] in prepared["available_node_types"]


@pytest.mark.parametrize(
    "break_it, error",
    [
        (lambda c: c.update(max_worker=16), jsonschema.ValidationError),  # typo'd top-level key
        (lambda c: c.update(max_workers="16"), jsonschema.ValidationError),
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=2.5),
         jsonschema.ValidationError),
        (lambda c: c.update(head_node_type="cpu_head"), ValueError),
        (lambda c: c["available_node_types"]["gpu_worker"].update(min_workers=17), ValueError),
    ],
    ids=["unknown-key", "max-workers-str", "min-workers-float", "unknown-head-type",
         "min-over-max"],
)  # fmt: skip
def test_a_broken_copy_is_rejected_by_the_same_validation(break_it, error):
    config = _raw()
    break_it(config)
    with pytest.raises(error):
        _ray_validate(config)


@pytest.mark.parametrize("node_commands", ["head_setup_commands", "worker_setup_commands"])
def test_every_node_installs_cuda_torch_before_the_package(node_commands):
    commands = _ray_validate(_raw())[node_commands]  # setup_commands merged in, as Ray runs them
    torch_at = _index(commands, _is_torch_install, "torch install")
    package_at = _index(commands, _is_package_install, "package install")
    assert torch_at < package_at
    torch_install = commands[torch_at]
    assert CUDA_INDEX.search(torch_install), f"torch not from a CUDA wheel index: {torch_install}"
    assert "--extra-index-url" not in torch_install  # PyPI must not compete for torch


def test_the_gpu_torch_is_the_locked_version_and_satisfies_the_package():
    commands = _raw()["setup_commands"]
    torch_install = commands[_index(commands, _is_torch_install, "torch install")]
    pinned = re.search(r"torch==(\S+)", torch_install).group(1)
    assert pinned == _lock_pin("torch")
    cuda = CUDA_INDEX.search(torch_install)
    assert cuda, f"torch not from a CUDA wheel index: {torch_install}"
    gpu_build = Version(f"{pinned}+{cuda.group(1)}")
    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    torch_requirement = next(r for r in map(Requirement, dependencies) if r.name == "torch")
    # pip keeps an installed distribution its requirement accepts: the GPU build is not replaced.
    assert torch_requirement.specifier.contains(gpu_build, prereleases=True)


def test_the_package_installs_at_the_lock_pins_without_constraining_torch(tmp_path):
    commands = _raw()["setup_commands"]
    package_install = shlex.split(commands[_index(commands, _is_package_install, "package")])
    assert not {"-U", "--upgrade", "--force-reinstall", "--ignore-installed"} & set(package_install)
    constraints = package_install[package_install.index("-c") + 1]
    # The constraint file is written on the node from the lock: run that line here.
    writers = [c for c in commands if re.search(rf">\s*{re.escape(constraints)}\s*$", c)]
    assert len(writers) == 1 and "requirements.lock" in writers[0], writers
    assert commands.index(writers[0]) < _index(commands, _is_package_install, "package install")
    done = _bash(writers[0], tmp_path)
    assert done.returncode == 0, done.stderr
    written = (tmp_path / Path(constraints).name).read_text().splitlines()
    lock = LOCK.read_text().splitlines()
    assert written == [line for line in lock if not line.startswith("torch==")]
    assert f"ray=={_lock_pin('ray')}" in written and f"mlflow=={_lock_pin('mlflow')}" in written


@pytest.mark.parametrize("cuda, fails", [(None, True), ("12.8", False)], ids=["cpu", "cu128"])
def test_setup_stops_on_a_cpu_torch(tmp_path, cuda, fails):
    """The check after the install, run against a stand-in torch of each build."""
    commands = _raw()["setup_commands"]
    check_at = _index(commands, lambda c: "torch.version.cuda" in c, "CUDA check")
    assert check_at > _index(commands, _is_package_install, "package install")
    check = shlex.split(commands[check_at])
    assert check[0] == "python"
    fake = tmp_path / "torch"
    fake.mkdir()
    (fake / "__init__.py").write_text("from . import version\n__version__ = '2.13.0+x'\n")
    (fake / "version.py").write_text(f"cuda = {cuda!r}\n")
    done = subprocess.run(
        [sys.executable, *check[1:]], capture_output=True, text=True, timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
    )  # fmt: skip
    assert (done.returncode != 0) == fails, done.stderr
    assert ("CPU torch 2.13.0+x" in done.stderr) == fails


def test_nodes_get_the_heads_private_tracking_uri(tmp_path):
    line = next(c for c in _raw()["setup_commands"] if "MLFLOW_TRACKING_URI" in c)
    done = _bash(line, tmp_path, RAY_HEAD_IP="10.0.3.7")  # a worker: Ray exports RAY_HEAD_IP
    assert done.returncode == 0, done.stderr
    assert (tmp_path / ".bashrc").read_text() == "export MLFLOW_TRACKING_URI=http://10.0.3.7:5000\n"
    (tmp_path / ".bashrc").unlink()
    env = {k: v for k, v in os.environ.items() if k != "RAY_HEAD_IP"}  # the head: no RAY_HEAD_IP
    done = subprocess.run(["bash", "-c", line], capture_output=True, text=True, timeout=60,
                          env={**env, "HOME": str(tmp_path)})  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(r"export MLFLOW_TRACKING_URI=http://[0-9a-f.:]+:5000\n",
                        (tmp_path / ".bashrc").read_text())  # fmt: skip


def _ray_starts(key: str) -> list[list[str]]:
    """The ``ray start`` commands of ``key``, as words (an environment prefix included)."""
    return [shlex.split(c) for c in _raw()[key] if "ray start" in c]


def test_head_starts_ray_with_the_dashboard_on_localhost():
    starts = _ray_starts("head_start_ray_commands")
    assert len(starts) == 1
    assert "--head" in starts[0] and "--dashboard-host=127.0.0.1" in starts[0]


def test_every_ray_node_and_client_uses_token_authentication(tmp_path):
    """Without RAY_AUTH_MODE=token, Ray 2.60 starts a cluster anyone in the VPC can run code on.
    Every ``ray start`` sets it, every node's shell exports it (a job's driver, ``ray status``),
    and the token comes from the laptop's ``~/.ray/auth_token``, never from this repository."""
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        starts = _ray_starts(key)
        assert starts and all(words[:3] == ["RAY_AUTH_MODE=token", "ray", "start"]
                              for words in starts), (key, starts)  # fmt: skip
    mounts = _raw()["file_mounts"]
    assert mounts["/home/ray/.ray/auth_token"] == "~/.ray/auth_token"
    line = next(c for c in _raw()["setup_commands"] if "RAY_AUTH_MODE" in c)
    for _ in range(2):  # safe to run again (`ray up` reruns setup): one line, not two
        done = _bash(line, tmp_path)
        assert done.returncode == 0, done.stderr
    assert (tmp_path / ".bashrc").read_text() == "export RAY_AUTH_MODE=token\n"


def test_mlflow_listens_on_the_private_address_with_no_wildcard_host():
    server = [c for c in _raw()["head_start_ray_commands"] if "mlflow server" in c]
    assert len(server) == 1
    words = server[0].split()
    assert "0.0.0.0" not in server[0] and "::" not in words
    assert words[words.index("--host") + 1] == "$HEAD_IP"
    allowed = words[words.index("--allowed-hosts") + 1].strip("'\"").split(",")
    assert all("*" not in host for host in allowed), allowed
    assert set(allowed) == {"$HEAD_IP:5000", "localhost:5000", "127.0.0.1:5000"}


def _head_commands() -> list[str]:
    prepared = _ray_validate(_raw())  # setup_commands merged in, as Ray runs them
    return prepared["head_setup_commands"] + prepared["head_start_ray_commands"]


def test_mlflow_keeps_its_runs_in_postgresql_on_the_head():
    """Not SQLite (one writer at a time: "database is locked" under many trials): PostgreSQL,
    installed and initialised by the head's setup, started before the server that uses it. The
    commands themselves run in tests/study_tests/test_postgres.py."""
    commands = _head_commands()
    server = next(c for c in commands if "mlflow server" in c)
    uri = shlex.split(server)[shlex.split(server).index("--backend-store-uri") + 1]
    assert uri == "postgresql://mlflow@127.0.0.1:5432/mlflow"  # password: libpq's ~/.pgpass
    assert not [c for c in commands if "sqlite" in c.lower()]
    assert "--serve-artifacts" in server and "--artifacts-destination" in server
    install = _index(commands, lambda c: "apt-get install" in c and "postgresql" in c, "install")
    initdb = _index(commands, lambda c: "/initdb -D" in c, "initdb")
    start = _index(commands, lambda c: "pg_ctl" in c and " start" in c, "PostgreSQL start")
    assert install < initdb < start < commands.index(server)
    assert "--auth-host=scram-sha-256" in commands[initdb]
    assert "listen_addresses = '127.0.0.1'" in commands[initdb]  # never the private network


def test_the_database_password_is_made_on_the_head_and_in_no_file_here():
    text = CLUSTER.read_text()
    maker = _index(_head_commands(), lambda c: "~/.pgpass" in c and "urandom" in c, "password")
    assert "umask 077" in _head_commands()[maker]  # mode 600 from the start, this user only
    assert "PGPASSWORD" not in text and "--password" not in text
    assert not re.search(r"://[^\s/@:]+:[^\s/@]+@", text)  # no user:password@ in a URI
    # The role gets the generated password, read from the file at run time, on psql's stdin.
    assert re.findall(r"PASSWORD\s+'([^']*)'", text) == ["%s"]
