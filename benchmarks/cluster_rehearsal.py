"""Rehearse cluster.yaml on one machine: a head and two workers, each a Linux network namespace with
an address of its own, started with cluster.yaml's own command lines; a study submitted from the
"laptop" (this script, in the root namespace) as docs/cluster.md says; one worker killed mid-study.

    sudo nice -n 5 .venv/bin/python benchmarks/cluster_rehearsal.py      # root: namespaces, veths

What it builds (all removed at the end, also on an error or Ctrl-C):

- a bridge ``dsrb<pid>`` at 10.77.N.254/24 in the root namespace (the "VPC"), and three namespaces
  ``dsr<pid>-head`` (10.77.N.1), ``-w1`` (.2), ``-w2`` (.3), each with loopback up, a veth to the
  bridge and a default route through it (Ray finds a node's address from its route);
- per node a home folder (``~``, as /home/ray on a real node) and a private ``/tmp`` (a bind mount
  inside each command's mount namespace: each node has its own /tmp/ray, as separate machines
  do). One folder, ``shared/``, has the same path everywhere: it stands in for the NFS mount of
  the study's ``--storage`` and for the bucket the MLflow server puts artifacts in;
- on the head, cluster.yaml's ``head_setup_commands`` and ``head_start_ray_commands`` in order
  (PostgreSQL lines as the ``postgres`` user, since initdb refuses root; the rest as root): the
  database in ``~/mlflow-postgres`` with a random password in ``~/.pgpass``, ``ray start --head``,
  and ``mlflow server`` on the head's address backed by that database;
- on each worker, cluster.yaml's ``worker_start_ray_commands`` with ``RAY_HEAD_IP`` set, as the
  autoscaler's updater sets it; the head gets ``RAY_OVERRIDE_RESOURCES`` from its node type's
  ``resources`` (CPU 0), as the updater does too;
- the laptop's end of ``ray dashboard cluster.yaml`` (an SSH port forward): 127.0.0.1:8265 here
  (a free port if 8265 is taken) connected to 127.0.0.1:8265 inside the head, where cluster.yaml's
  ``--dashboard-host`` binds it. MLflow is reached at the head's address.

What differs from ``ray up`` (printed as the run starts): no ``ray stop`` (it stops every Ray
process on the machine, matched by name across namespaces: other people's too); no
``--autoscaling-config`` (no autoscaler: the script starts the workers as the updater would); the
artifact bucket is ``shared/mlflow-artifacts``; ``setup_commands`` are not run (this machine's
.venv stands in for the image and its pip installs: the node shells' ``RAY_AUTH_MODE=token``, which
setup_commands export, is set in each node's environment instead); the token every node gets in
``~/.ray/auth_token`` is made here, as cluster.yaml's file_mounts would copy the laptop's, and the
laptop's ``ray`` commands get it too. ``--auth none`` takes ``RAY_AUTH_MODE=token`` out of
cluster.yaml's start commands: a cluster without authentication (Ray 2.60's default).

Then, from the laptop: ``ray job submit --working-dir . -- study run ... --address auto`` (a
4-trial CPU study, 2 CPUs a trial, so each worker runs one at a time and the head none); once a
trial on a worker is 2 epochs in, every process of that worker is SIGKILLed (the machine is lost);
the job must still succeed, with the lost trial retried on the other worker from its checkpoint.
Checks: trials started on both workers and none on the head; the lost trial's retry began after
epoch 1 and every trial journaled and logged each epoch once; 4 FINISHED trial runs in MLflow and
in PostgreSQL's tables; the artifacts in the shared bucket folder; ``study status`` and ``study
report`` from the laptop; the dashboard refuses requests without the token and is not on the
head's address; MLflow refuses a request naming another host; neither the database password nor
the token is in a file the cluster, the study or the report wrote. Exit status 1 if any check
failed (then the work folder is kept and each node's missing daemons are listed), 130 if
interrupted. A rehearsal killed with SIGKILL leaves its namespaces: the next one removes them.

Another ``ray stop`` on this machine (tests/study_tests/test_faults.py runs ``ray stop --force``)
kills this cluster's Ray too: do not run the rehearsal beside the full test suite.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import ctypes
import json
import os
import re
import select
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import traceback
import uuid
from pathlib import Path

import requests
import yaml
from local_servers import PG_BIN  # benchmarks/: the PostgreSQL this machine has

ROOT = Path(__file__).resolve().parents[1]
CLUSTER = ROOT / "cluster.yaml"
VENV_BIN = Path(sys.executable).parent
STUDY = "cluster_rehearsal"
EPOCHS = 8
TRIALS = 4
# A small quickstart: 1,152 images, 2 tasks, 8 epochs (about 1 s each on a free core), a
# checkpoint every epoch, 2 CPUs a trial so each worker (2 CPUs detected) runs one at a time.
SETTINGS = [
    f"name={STUDY}",
    "dataset.subset={orientation: 0, posX: '0:32:4', posY: '0:32:4'}",
    f"fixed.epochs={EPOCHS}",
    "fixed.n_tasks=2",
    "fixed.metric_train_points=200",
    "fixed.metric_test_points=100",
    "fixed.pictures=false",
    "sweep={variant: [multi_head, one_head], seed: [0, 1]}",
    "resources={cpu: 2, gpu: 0}",
    "max_failures=2",
]
DASHBOARD_PORT = 8265
MLFLOW_PORT = 5000
BASE_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLONE_NEWNET = 0x40000000
_LIBC = ctypes.CDLL(None, use_errno=True)

START = time.monotonic()


def say(text: str) -> None:
    print(f"[{time.monotonic() - START:6.1f}s] {text}", flush=True)


class Fatal(RuntimeError):
    """A step that later steps need failed: the rehearsal stops (and cleans up)."""


@contextlib.contextmanager
def step(title: str):
    say(f"{title} ...")
    began = time.monotonic()
    yield
    say(f"{title}: done in {time.monotonic() - began:.1f} s")


# -- names and leftovers ---------------------------------------------------------------------------
def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def netns_list() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def netns_pids(name: str) -> list[int]:
    out = subprocess.run(["ip", "netns", "pids", name], capture_output=True, text=True).stdout
    return [int(p) for p in out.split() if p.isdigit()]


def kill_netns_processes(name: str, timeout_s: float = 15.0) -> int:
    """SIGKILL every process in a namespace until none is left; how many were killed."""
    killed, deadline = set(), time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [p for p in netns_pids(name) if p != os.getpid()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
        time.sleep(0.2)
    return len(killed)


def processes_in(inodes: set[int]) -> list[int]:
    """Processes whose network namespace is one of ``inodes`` (they outlive `ip netns del`)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.stat(entry / "ns" / "net").st_ino in inodes:
                    found.append(int(entry.name))
    return found


def remove_leftovers() -> list[str]:
    """Namespaces and bridges of an earlier rehearsal whose process is gone (killed with SIGKILL,
    which no clean-up survives): their processes killed, then removed, with its default work folder
    (one kept with --keep has no namespaces left: it stays)."""
    removed, dead = [], set()
    for name in netns_list():
        match = re.fullmatch(r"dsr(\d+)-\w+", name)
        if match and not _alive(int(match.group(1))):
            kill_netns_processes(name)
            subprocess.run(["ip", "netns", "del", name], capture_output=True)
            removed.append(name)
            dead.add(match.group(1))
    links = subprocess.run(["ip", "-o", "link", "show", "type", "bridge"], capture_output=True,
                           text=True).stdout  # fmt: skip
    for bridge, pid in re.findall(r"^\d+: (dsrb(\d+))[:@]", links, flags=re.M):
        if not _alive(int(pid)):
            subprocess.run(["ip", "link", "del", bridge], capture_output=True)
            removed.append(bridge)
            dead.add(pid)
    for pid in dead:
        folder = Path(f"/var/tmp/dsr{pid}")
        if folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


def free_subnet() -> int:
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    for third in [os.getpid() % 200 + 20, *range(20, 250)]:
        if f" 10.77.{third}." not in used:
            return third
    raise Fatal("no free 10.77.N.0/24 subnet")


# -- the laptop's SSH tunnel -----------------------------------------------------------------------
class Tunnel:
    """What ``ray dashboard cluster.yaml`` (an SSH ``-L`` forward) gives a laptop: 127.0.0.1:PORT
    here, each connection relayed to 127.0.0.1:``remote_port`` inside the head's namespace (the
    connecting thread enters it with setns; the listening socket stays in the root namespace)."""

    def __init__(self, netns: str, remote_port: int, local_port: int):
        self.remote_port = remote_port
        self.netns_fd = os.open(f"/run/netns/{netns}", os.O_RDONLY)
        self.listener = socket.create_server(("127.0.0.1", local_port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        try:
            if _LIBC.setns(self.netns_fd, CLONE_NEWNET) != 0:  # this thread only
                raise OSError(ctypes.get_errno(), "setns")
            upstream = socket.create_connection(("127.0.0.1", self.remote_port), timeout=10)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        peer = {client: upstream, upstream: client}
        open_ = {client, upstream}
        try:
            while open_:
                readable, _, _ = select.select(list(open_), [], [], 300)
                if not readable:
                    break
                for sock in readable:
                    data = sock.recv(65536)
                    if data:
                        peer[sock].sendall(data)
                    else:
                        open_.discard(sock)
                        with contextlib.suppress(OSError):
                            peer[sock].shutdown(socket.SHUT_WR)
        except OSError:
            pass
        finally:
            client.close()
            upstream.close()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.listener.close()
        with contextlib.suppress(OSError):
            os.close(self.netns_fd)


# -- cluster.yaml's commands -----------------------------------------------------------------------
def _substitute(lines: list[str], changes: list[tuple[str, str]]) -> list[str]:
    """Apply (regex, replacement) to the lines; each must match somewhere, or cluster.yaml changed
    under the rehearsal and it says so instead of rehearsing something else."""
    out = list(lines)
    for pattern, replacement in changes:
        if not any(re.search(pattern, line) for line in out):
            raise Fatal(
                f"cluster.yaml changed: no command matches {pattern!r}; update the rehearsal"
            )
        out = [re.sub(pattern, replacement, line) for line in out]
    return out


def _is_ray_stop(line: str) -> bool:
    return line.split()[:2] == ["ray", "stop"]


def _runs_as_postgres(line: str) -> bool:
    """cluster.yaml's PostgreSQL lines (initdb refuses root; on the cluster they run as `ray`)."""
    return "mlflow server" not in line and ("postgres" in line or "pgpass" in line)


class Rehearsal:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.pid = os.getpid()
        self.failures: list[str] = []
        self.cleaned = False
        self.tunnel: Tunnel | None = None
        self.job: subprocess.Popen | None = None
        self.namespaces: list[str] = []
        self.inodes: set[int] = set()  # of the namespaces: a process left in one is found by it
        self.work_created = False
        self.links: list[str] = []
        self.config = yaml.safe_load(CLUSTER.read_text())
        third = free_subnet()
        self.subnet = f"10.77.{third}"
        self.bridge = f"dsrb{self.pid}"
        self.nodes = {
            role: {"ns": f"dsr{self.pid}-{role}", "ip": f"{self.subnet}.{i}", "veth": f"dsr{self.pid}{i}"}
            for i, role in enumerate(("head", "w1", "w2"), start=1)
        }  # fmt: skip
        self.head_ip = self.nodes["head"]["ip"]
        # Not under /tmp: every node's /tmp is its own. The same path on every node: the "NFS".
        self.work = Path(args.workdir or f"/var/tmp/dsr{self.pid}")
        self.shared = self.work / "shared"
        self.storage = self.shared / "ray_results"
        self.artifacts = self.shared / "mlflow-artifacts"
        self.logs = self.work / "logs"
        self.token = uuid.uuid4().hex + uuid.uuid4().hex
        self.token_file = self.work / "laptop" / "auth_token"
        self.mlflow_uri = f"http://{self.head_ip}:{MLFLOW_PORT}"
        self.node_ips: dict[str, str] = {}  # Ray node id -> address
        self.killed: dict | None = None

    # -- checks --------------------------------------------------------------------------------
    def check(self, ok: bool, what: str, detail: str = "") -> bool:
        if ok:
            say(f"  ok: {what}")
        else:
            say(f"  FAIL: {what}" + (f": {detail}" if detail else ""))
            self.failures.append(what)
        return ok

    # -- network -------------------------------------------------------------------------------
    def _ip(self, *args: str) -> None:
        done = subprocess.run(["ip", *args], capture_output=True, text=True)
        if done.returncode != 0:
            raise Fatal(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def build_network(self) -> None:
        self._ip("link", "add", self.bridge, "type", "bridge")
        self.links.append(self.bridge)
        self._ip("addr", "add", f"{self.subnet}.254/24", "dev", self.bridge)
        self._ip("link", "set", self.bridge, "up")
        for node in self.nodes.values():
            ns, veth = node["ns"], node["veth"]
            self._ip("netns", "add", ns)
            self.namespaces.append(ns)
            self.inodes.add(os.stat(f"/run/netns/{ns}").st_ino)
            self._ip("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
            self.links.append(veth)
            self._ip("link", "set", veth, "master", self.bridge, "up")
            self._ip("-n", ns, "link", "set", "lo", "up")
            self._ip("-n", ns, "addr", "add", f"{node['ip']}/24", "dev", "eth0")
            self._ip("-n", ns, "link", "set", "eth0", "up")
            self._ip("-n", ns, "route", "add", "default", "via", f"{self.subnet}.254")
        say(f"  bridge {self.bridge} {self.subnet}.254/24; "
            + ", ".join(f"{n['ns']} {n['ip']}" for n in self.nodes.values()))  # fmt: skip

    # -- folders -------------------------------------------------------------------------------
    def make_folders(self) -> None:
        if self.work.exists():
            raise Fatal(f"{self.work} exists: give another --workdir")
        self.work.mkdir(parents=True)
        self.work_created = True
        for path in (self.storage, self.artifacts, self.logs, self.token_file.parent):
            path.mkdir(parents=True)
        self.work.chmod(0o755)
        for role, node in self.nodes.items():
            node["home"] = self.work / role / "home"
            node["tmp"] = self.work / role / "tmp"
            node["home"].mkdir(parents=True)
            node["tmp"].mkdir()
            node["tmp"].chmod(0o1777)
            if self.args.auth == "token":  # where Ray looks for it on a node: ~/.ray/auth_token
                (node["home"] / ".ray").mkdir(mode=0o700)
                self._write_secret(node["home"] / ".ray" / "auth_token", self.token)
        self._write_secret(self.token_file, self.token)
        if os.geteuid() == 0:  # the head's PostgreSQL lines run as postgres, in its ~
            import pwd

            owner = pwd.getpwnam("postgres")
            os.chown(self.nodes["head"]["home"], owner.pw_uid, owner.pw_gid)

    @staticmethod
    def _write_secret(path: Path, text: str) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)

    # -- running commands on a node ------------------------------------------------------------
    def node_env(self, role: str, **extra: str) -> dict[str, str]:
        node = self.nodes[role]
        env = {
            "PATH": f"{VENV_BIN}:{BASE_PATH}",
            "HOME": str(node["home"]),
            "LANG": "C.UTF-8",
            "USER": "root",
        }
        if self.args.auth == "token":  # what setup_commands export in every node's ~/.bashrc
            env["RAY_AUTH_MODE"] = "token"
        env.update(extra)
        return env

    def on_node(self, role: str, line: str, env: dict[str, str], user: str | None = None,
                timeout_s: float = 300) -> None:  # fmt: skip
        """One command line in the node's namespace, a clean environment (``env``), its own /tmp;
        output appended to logs/<role>.log. Daemons it starts stay in the namespace."""
        node = self.nodes[role]
        as_user = ["runuser", "-u", user, "--"] if user else []
        inner = [*as_user, "env", "-i", *[f"{k}={v}" for k, v in env.items()], "bash", "-c", line]
        # `ip netns exec` gives each command a mount namespace of its own: /tmp is bound there.
        node_tmp = shlex.quote(str(node["tmp"]))
        # A checkout (and its .venv) under /tmp, as a CI clone may be, would vanish under the
        # node's /tmp: bound into it first, and carried over by the recursive bind.
        keep = ""
        venv = VENV_BIN.parent
        for path in [ROOT] + ([] if venv.is_relative_to(ROOT) else [venv]):
            if path.is_relative_to("/tmp"):
                target = shlex.quote(str(node["tmp"] / path.relative_to("/tmp")))
                keep += f"mkdir -p {target} && mount --bind {shlex.quote(str(path))} {target} && "
        wrapper = f'{keep}mount --rbind {node_tmp} /tmp && cd / && exec "$@"'
        argv = ["ip", "netns", "exec", node["ns"], "bash", "-c", wrapper, "node", *inner]
        log_path = self.logs / f"{role}.log"
        with open(log_path, "a") as log:
            log.write(f"\n$ {line}\n")
            log.flush()
            try:
                done = subprocess.run(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=timeout_s)  # fmt: skip
            except subprocess.TimeoutExpired:
                raise Fatal(f"{role}: timed out after {timeout_s:.0f} s: {line[:120]}") from None
        if done.returncode != 0:
            tail = log_path.read_text()[-3000:]
            raise Fatal(f"{role}: exit {done.returncode}: {line[:200]}\n{tail}")

    # -- the head ------------------------------------------------------------------------------
    def head_lines(self) -> list[str]:
        lines = self.config["head_setup_commands"] + self.config["head_start_ray_commands"]
        return self._auth(_substitute(lines, [
            (r"\s*--autoscaling-config=\S+", ""),
            (r"s3://YOUR-BUCKET/mlflow-artifacts", str(self.artifacts)),
        ]))  # fmt: skip

    def _auth(self, lines: list[str]) -> list[str]:
        """cluster.yaml's lines, or with ``--auth none`` its start commands without token auth."""
        if self.args.auth == "token":
            return lines
        return _substitute(lines, [(r"RAY_AUTH_MODE=token\s+", "")])

    def start_head(self) -> None:
        head_type = self.config["available_node_types"][self.config["head_node_type"]]
        resources = head_type.get("resources") or {}
        extra = {"RAY_USAGE_STATS_ENABLED": "0"}
        if resources:  # what the autoscaler's updater exports before each start command
            extra["RAY_OVERRIDE_RESOURCES"] = json.dumps(resources)
        env = self.node_env("head", **extra)
        for line in self.head_lines():
            if _is_ray_stop(line):
                say("  skipped: ray stop (it stops every Ray on this machine, across namespaces)")
                continue
            user = "postgres" if _runs_as_postgres(line) and os.geteuid() == 0 else None
            shown = " ".join(line.split())
            say(
                f"  head{' (as postgres)' if user else ''}$ {shown[:150]}{' ...' if len(shown) > 150 else ''}"
            )
            began = time.monotonic()
            self.on_node("head", line, env, user=user)
            if time.monotonic() - began > 2:
                say(f"    ({time.monotonic() - began:.1f} s)")

    def wait_for_mlflow(self, timeout_s: float = 240) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.RequestException):
                if requests.get(f"{self.mlflow_uri}/health", timeout=2).ok:
                    return
            time.sleep(1)
        log = self.nodes["head"]["tmp"] / "mlflow.log"
        tail = log.read_text()[-3000:] if log.exists() else "(no log)"
        raise Fatal(f"mlflow server not answering at {self.mlflow_uri}: {tail}")

    # -- workers -------------------------------------------------------------------------------
    def worker_lines(self) -> list[str]:
        lines = self.config["worker_start_ray_commands"]
        return self._auth([line for line in lines if not _is_ray_stop(line)])

    def start_worker(self, role: str) -> None:
        worker_type = next(name for name in self.config["available_node_types"]
                           if name != self.config["head_node_type"])  # fmt: skip
        resources = self.config["available_node_types"][worker_type].get("resources") or {}
        extra = {"RAY_HEAD_IP": self.head_ip}
        if resources:
            extra["RAY_OVERRIDE_RESOURCES"] = json.dumps(resources)
        env = self.node_env(role, **extra)
        for line in self.worker_lines():
            say(f"  {role}$ {line}  (RAY_HEAD_IP={self.head_ip})")
            self.on_node(role, line, env)

    # -- the laptop ----------------------------------------------------------------------------
    def laptop_env(self) -> dict[str, str]:
        env = {**os.environ, "PATH": f"{VENV_BIN}:{os.environ.get('PATH', BASE_PATH)}"}
        env["RAY_AUTH_MODE"] = "token" if self.args.auth == "token" else "disabled"
        if self.args.auth == "token":
            env["RAY_AUTH_TOKEN_PATH"] = str(self.token_file)
        for key in ("RAY_ADDRESS", "RAY_AUTH_TOKEN", "MLFLOW_TRACKING_URI"):
            env.pop(key, None)
        return env

    def dashboard(self, path: str, auth: bool = True, timeout: float = 10) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return requests.get(f"http://127.0.0.1:{self.tunnel.port}{path}", headers=headers,
                            timeout=timeout)  # fmt: skip

    def nodes_now(self) -> list[dict]:
        """Ray's nodes (alive and dead) from the dashboard's state API."""
        response = self.dashboard("/api/v0/nodes?limit=100&detail=true")
        response.raise_for_status()
        found = response.json()["data"]["result"]["result"]
        for node in found:
            self.node_ips[node["node_id"]] = node["node_ip"]
        return found

    def wait_for_nodes(self, alive: int, timeout_s: float = 180) -> list[dict]:
        deadline, last = time.monotonic() + timeout_s, None
        while time.monotonic() < deadline:
            try:
                nodes = self.nodes_now()
                if sum(n["state"] == "ALIVE" for n in nodes) == alive:
                    return nodes
                last = [(n["node_ip"], n["state"]) for n in nodes]
            except (requests.RequestException, KeyError, ValueError) as err:
                last = err
            time.sleep(1)
        raise Fatal(f"Ray did not reach {alive} alive nodes: {last}")

    def submission(self) -> list[str]:
        entry = ["study", "run", "configs/quickstart.yaml", "--address", "auto",
                 "--tracking-uri", self.mlflow_uri, "--storage", str(self.storage)]  # fmt: skip
        for item in SETTINGS:
            entry += ["--set", item]
        return ["ray", "job", "submit", "--address", f"http://127.0.0.1:{self.tunnel.port}",
                "--working-dir", ".", "--submission-id", self.submission_id, "--", *entry]  # fmt: skip

    # -- the study -----------------------------------------------------------------------------
    def journals(self) -> dict[str, list[dict]]:
        found = {}
        for path in self.storage.rglob("tracking_journal.jsonl"):
            records = []
            with contextlib.suppress(OSError):
                for line in path.read_text().splitlines():
                    with contextlib.suppress(ValueError):
                        records.append(json.loads(line))
            found[path.parent.name] = records
        return found

    @staticmethod
    def attempts(records: list[dict]) -> list[dict]:
        """A trial's starts in order: the Ray node of each and the steps it journaled."""
        out: list[dict] = []
        for record in records:
            if record.get("op") == "run":
                out.append({"node": record.get("tags", {}).get("ray_node"), "steps": []})
            elif record.get("op") == "metrics" and out:
                out[-1]["steps"].append(int(record["step"]))
            elif record.get("op") == "end" and out:
                out[-1]["end"] = record.get("status")
        return out

    def ip_of(self, node_id: str | None) -> str:
        if node_id and node_id not in self.node_ips:
            with contextlib.suppress(Exception):
                self.nodes_now()
        return self.node_ips.get(node_id or "", f"?{node_id}")

    def run_job_and_kill_a_worker(self) -> None:
        self.submission_id = f"rehearsal-{self.pid}"
        command = self.submission()
        say(f"  laptop$ {shlex.join(command)}")
        job_log = open(self.logs / "job.log", "w")
        self.job = subprocess.Popen(command, cwd=ROOT, env=self.laptop_env(), stdout=job_log,
                                    stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # fmt: skip
        job_log.close()
        workers = {self.nodes[r]["ip"]: r for r in ("w1", "w2")}
        deadline = time.monotonic() + self.args.job_timeout
        first_trial_at = None
        while self.job.poll() is None and time.monotonic() < deadline:
            if self.killed is None:
                for name, records in self.journals().items():
                    runs = self.attempts(records)
                    if not runs:
                        continue
                    if first_trial_at is None:
                        first_trial_at = time.monotonic()
                        say(f"  first trial started ({name}, on {self.ip_of(runs[-1]['node'])})")
                    ip = self.ip_of(runs[-1]["node"])
                    steps = runs[-1]["steps"]
                    if (
                        ip in workers
                        and "end" not in runs[-1]
                        and 2 <= max(steps, default=0) < EPOCHS - 2
                    ):
                        self.kill_worker(workers[ip], name, max(steps))
                        break
            time.sleep(0.5)
        if self.job.poll() is None:
            self.job.kill()
            self.job.wait()
            raise Fatal(
                f"the job did not end within {self.args.job_timeout:.0f} s: see {self.logs / 'job.log'}"
            )
        say(f"  ray job submit exited {self.job.returncode}")
        tail = (self.logs / "job.log").read_text().splitlines()[-25:]
        print("\n".join(f"    | {line}" for line in tail), flush=True)

    def kill_worker(self, role: str, trial: str, epoch: int) -> None:
        node = self.nodes[role]
        count = kill_netns_processes(node["ns"])
        self.killed = {"role": role, "ip": node["ip"], "trial": trial, "epoch": epoch,
                       "at": time.monotonic()}  # fmt: skip
        say(f"  KILLED {role} ({node['ip']}): SIGKILL to its {count} processes, while trial "
            f"{trial} had journaled epoch {epoch} of {EPOCHS}")  # fmt: skip
        threading.Thread(target=self._watch_node_death, args=(node["ip"],), daemon=True).start()

    def _watch_node_death(self, ip: str) -> None:
        began = time.monotonic()
        while time.monotonic() - began < 120:
            with contextlib.suppress(Exception):
                if any(n["node_ip"] == ip and n["state"] == "DEAD" for n in self.nodes_now()):
                    say(f"  Ray marked {ip} DEAD {time.monotonic() - began:.1f} s after the kill")
                    return
            time.sleep(1)

    # -- checks after the job ------------------------------------------------------------------
    def check_job(self) -> None:
        response = self.dashboard(f"/api/jobs/{self.submission_id}")
        status = response.json().get("status") if response.ok else f"HTTP {response.status_code}"
        self.check(status == "SUCCEEDED", "the job SUCCEEDED", str(status))
        self.check(self.job.returncode == 0, "ray job submit exited 0", str(self.job.returncode))

    def check_journals(self) -> None:
        journals = self.journals()
        self.check(len(journals) == TRIALS, f"{TRIALS} trial journals in the shared storage",
                   str(len(journals)))  # fmt: skip
        workers = {self.nodes["w1"]["ip"], self.nodes["w2"]["ip"]}
        first_ips, resumed = set(), []
        for name, records in sorted(journals.items()):
            runs = self.attempts(records)
            if not runs:
                self.check(False, f"{name} started", "no run record")
                continue
            where = [f"{self.ip_of(r['node'])} epochs {_span(r['steps'])}" for r in runs]
            say(f"    {name}: " + "; then ".join(where) + f" -> {runs[-1].get('end')}")
            first_ips.add(self.ip_of(runs[0]["node"]))
            steps = sorted({s for r in runs for s in r["steps"]})
            self.check(steps == list(range(1, EPOCHS + 1)) and runs[-1].get("end") == "FINISHED",
                       f"{name}: every epoch journaled, FINISHED")  # fmt: skip
            if len(runs) > 1:
                resumed.append((name, runs))
        self.check(first_ips == workers, "trials started on both workers",
                   f"started on {sorted(first_ips)}")  # fmt: skip
        self.check(self.head_ip not in {self.ip_of(r["node"]) for recs in journals.values()
                                        for r in self.attempts(recs)},
                   "no trial ran on the head (CPU 0)")  # fmt: skip
        if self.killed is None:
            self.check(False, "a worker was killed mid-trial", "no trial reached epoch 2 in time")
            return
        lost = [
            (n, runs) for n, runs in resumed if self.ip_of(runs[0]["node"]) == self.killed["ip"]
        ]
        self.check(bool(lost), f"the trial on the killed worker ({self.killed['ip']}) was retried",
                   f"retried: {[n for n, _ in resumed]}")  # fmt: skip
        for name, runs in lost:
            retry = runs[-1]
            ip = self.ip_of(retry["node"])
            survivor = (workers - {self.killed["ip"]}).pop()
            self.check(ip == survivor, f"{name}: retried on the other worker {survivor}", ip)
            first = min(retry["steps"], default=0)
            self.check(first > 1, f"{name}: the retry resumed from a checkpoint (its first epoch "
                       f"{first}, not 1; killed at epoch {runs[0]['steps'][-1] if runs[0]['steps'] else 0})")  # fmt: skip

    def check_mlflow(self) -> None:
        from mlflow.tracking import MlflowClient

        client = MlflowClient(self.mlflow_uri)
        experiment = client.get_experiment_by_name(STUDY)
        if not self.check(experiment is not None, f"MLflow has experiment {STUDY}"):
            return
        runs = client.search_runs([experiment.experiment_id], "tags.role = 'trial'")
        statuses = sorted(r.info.status for r in runs)
        self.check(statuses == ["FINISHED"] * TRIALS, f"MLflow: {TRIALS} trial runs FINISHED",
                   str(statuses))  # fmt: skip
        for run in runs:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, "train/loss")]
            if sorted(steps) != list(range(1, EPOCHS + 1)):
                self.check(
                    False, f"MLflow: {run.info.run_name}: train/loss once per epoch", str(steps)
                )
        self.check(all(len(client.get_metric_history(r.info.run_id, "train/loss")) == EPOCHS
                       for r in runs), "MLflow: each trial run's train/loss logged once per epoch")  # fmt: skip
        launches = client.search_runs([experiment.experiment_id], "tags.role = 'launch'")
        self.check([r.info.status for r in launches] == ["FINISHED"], "MLflow: one launch run, FINISHED",
                   str([r.info.status for r in launches]))  # fmt: skip
        npz = list(self.artifacts.rglob("codes.npz"))
        self.check(
            len(npz) == TRIALS, f"artifacts in the shared bucket folder ({len(npz)} codes.npz)"
        )
        location = experiment.artifact_location
        self.check(
            location.startswith("mlflow-artifacts:"), "artifacts proxied by the server", location
        )

    def check_postgres(self) -> None:
        """Straight from PostgreSQL's tables, on the head, over its socket (as its superuser)."""
        out = self.nodes["head"]["tmp"] / "runs.txt"
        sql = ("SELECT t.value, r.status FROM runs r JOIN tags t ON t.run_uuid = r.run_uuid "
               "AND t.key = 'role' ORDER BY 1, 2")  # fmt: skip
        line = (f"PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1) && $PGBIN/psql -h "
                f"~/mlflow-postgres -p 5432 -d mlflow -tA -F ' ' -c {shlex.quote(sql)} > /tmp/runs.txt")  # fmt: skip
        user = "postgres" if os.geteuid() == 0 else None
        self.on_node("head", line, self.node_env("head"), user=user)
        rows = out.read_text().split("\n")
        rows = sorted(r for r in rows if r.strip())
        expected = sorted(["launch FINISHED"] + ["trial FINISHED"] * TRIALS)
        self.check(
            rows == expected, "PostgreSQL's runs table: 1 launch and 4 trials FINISHED", str(rows)
        )

    def check_cli(self) -> None:
        env = self.laptop_env()
        for args in (["status", STUDY, "--storage", str(self.storage)],
                     ["report", "--study", STUDY, "--tracking-uri", self.mlflow_uri,
                      "--out", str(self.work / "report")]):  # fmt: skip
            say(f"  laptop$ study {shlex.join(args)}")
            began = time.monotonic()
            done = subprocess.run([str(VENV_BIN / "study"), *args], cwd=self.work, env=env,
                                  capture_output=True, text=True, timeout=600)  # fmt: skip
            for line in (done.stdout + done.stderr).strip().splitlines()[-14:]:
                print(f"    | {line}", flush=True)
            self.check(done.returncode == 0, f"study {args[0]} exited 0 ({time.monotonic() - began:.1f} s)",
                       str(done.returncode))  # fmt: skip
            if args[0] == "status":
                self.check(f"{TRIALS} trials:\n{TRIALS} finished" in done.stdout,
                           f"study status: {TRIALS} trials, {TRIALS} finished")  # fmt: skip
        summary = self.work / "report" / "summary.md"
        self.check(summary.is_file() and "multi_head" in summary.read_text(),
                   "study report wrote summary.md")  # fmt: skip

    def check_exposure(self) -> None:
        unauthenticated = self.dashboard("/api/v0/nodes?limit=1", auth=False)
        if self.args.auth == "token":
            self.check(unauthenticated.status_code in (401, 403),
                       "the dashboard refuses a request without the token",
                       f"HTTP {unauthenticated.status_code}")  # fmt: skip
        else:
            say(f"  note: without a token the dashboard answers HTTP {unauthenticated.status_code} "
                "(--auth none: the cluster without Ray authentication)")  # fmt: skip
        with socket.socket() as probe:
            probe.settimeout(3)
            closed = probe.connect_ex((self.head_ip, DASHBOARD_PORT)) != 0
        self.check(
            closed, f"the dashboard is not on the head's address ({self.head_ip}:{DASHBOARD_PORT})"
        )
        # MLflow serves only requests that name the head's address or localhost (--allowed-hosts).
        forged = requests.get(f"{self.mlflow_uri}/api/2.0/mlflow/experiments/search?max_results=1",
                              headers={"Host": "rebind.example:5000"}, timeout=10)  # fmt: skip
        self.check(forged.status_code in (400, 403), "MLflow refuses a request naming another host",
                   f"HTTP {forged.status_code}")  # fmt: skip
        # Secrets in no file the cluster, the study or the report wrote: the database password
        # (only in the head's ~/.pgpass and PostgreSQL's own files) and the Ray token.
        home = self.nodes["head"]["home"]
        secrets = {"the PostgreSQL password": (home / ".pgpass").read_text().strip().split(":")[-1]}
        if self.args.auth == "token":
            secrets["the Ray token"] = self.token
        roots = [
            self.shared,
            self.logs,
            self.work / "report",
            *(n["tmp"] for n in self.nodes.values()),
        ]
        files = [p for root in roots for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
        files.append(home / "mlflow-postgres.log")
        for what, secret in secrets.items():
            holding = [str(p) for p in files if _holds(p, secret.encode())]
            self.check(bool(secret) and not holding, f"{what} is in none of {len(files)} files written",
                       str(holding[:5]))  # fmt: skip

    # -- the whole ------------------------------------------------------------------------------
    def run(self) -> None:
        say(f"rehearsal of {CLUSTER.name} on one machine (Ray token auth: {self.args.auth}); "
            f"work folder {self.work}")  # fmt: skip
        for removed in remove_leftovers():
            say(f"  removed a leftover of an earlier rehearsal: {removed}")
        say(
            "  not as `ray up`: no `ray stop`, no --autoscaling-config, no setup_commands (this .venv "
            "is the image), artifacts to shared/mlflow-artifacts instead of S3"
            + (
                ", RAY_AUTH_MODE=token taken out of its start commands (--auth none)"
                if self.args.auth == "none"
                else ""
            )
        )
        with step("network: a bridge and 3 namespaces"):
            self.make_folders()
            self.build_network()
        with step("head: PostgreSQL, ray start --head, mlflow server (cluster.yaml's lines)"):
            self.start_head()
        with step("laptop: the dashboard's tunnel, waiting for Ray and MLflow"):
            port = DASHBOARD_PORT if _port_free(DASHBOARD_PORT) else 0
            self.tunnel = Tunnel(self.nodes["head"]["ns"], DASHBOARD_PORT, port)
            say(f"  127.0.0.1:{self.tunnel.port} here -> 127.0.0.1:{DASHBOARD_PORT} on the head")
            self.wait_for_nodes(alive=1)
            self.wait_for_mlflow()
            say(f"  MLflow answering at {self.mlflow_uri}")
        with step("workers: cluster.yaml's worker_start_ray_commands"):
            threads = [_Thread(self.start_worker, role) for role in ("w1", "w2")]
            for thread in threads:
                thread.join()
            nodes = self.wait_for_nodes(alive=3)
            for node in nodes:
                cpus = node.get("resources_total", {}).get("CPU", 0)
                say(f"  node {node['node_ip']} {'head' if node['is_head_node'] else 'worker'} "
                    f"CPU {cpus:g} {node['state']}")  # fmt: skip
        with step("study: ray job submit from the laptop; a worker killed mid-study"):
            self.run_job_and_kill_a_worker()
        with step("checks: job, journals, MLflow, PostgreSQL"):
            self.check_job()
            self.check_journals()
            self.check_mlflow()
            self.check_postgres()
        with step("laptop: study status, study report"):
            self.check_cli()
        with step("checks: exposure"):
            self.check_exposure()

    def diagnose(self) -> None:
        """What a failed run leaves to read: the job's last lines, which of each node's daemons are
        still running (a Ray killed from outside, e.g. by someone's `ray stop` on this machine,
        which matches processes by name across namespaces, shows here), and the kept folder."""
        if self.job is not None:
            with contextlib.suppress(OSError):
                tail = (self.logs / "job.log").read_text().splitlines()[-40:]
                print("\n".join(f"    job| {line}" for line in tail), flush=True)
        expected = {"head": ["gcs_server", "raylet", "dashboard.py", "postgres", "mlflow"],
                    "w1": ["raylet"], "w2": ["raylet"]}  # fmt: skip
        for role, node in self.nodes.items():
            if node["ns"] not in self.namespaces:
                continue
            commands = []
            for pid in netns_pids(node["ns"]):
                with contextlib.suppress(OSError):
                    commands.append(
                        Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
                    )
            missing = [name for name in expected[role] if not any(name in c for c in commands)]
            killed = self.killed is not None and self.killed["role"] == role
            say(f"  diagnosis: {role} has {len(commands)} processes"
                + (" (killed by the rehearsal)" if killed else f"; missing: {missing or 'none'}"))  # fmt: skip
        if self.work_created and not self.args.keep:
            self.args.keep = True
            say(f"  diagnosis: keeping {self.work} (logs/, <node>/tmp/ray/session_latest/logs/)")

    def cleanup(self) -> None:
        if self.cleaned:
            return
        self.cleaned = True
        began = time.monotonic()
        if self.job is not None and self.job.poll() is None:
            self.job.kill()
            with contextlib.suppress(Exception):
                self.job.wait(timeout=10)
        if self.tunnel is not None:
            self.tunnel.close()
        data = self.nodes["head"].get("home", Path("/nonexistent")) / "mlflow-postgres"
        if (
            "head" in [n.rsplit("-", 1)[1] for n in self.namespaces]
            and (data / "postmaster.pid").exists()
        ):
            as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
            subprocess.run(["ip", "netns", "exec", self.nodes["head"]["ns"], *as_user,
                            str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                           capture_output=True, timeout=60)  # fmt: skip
        killed = 0
        for ns in self.namespaces:
            killed += kill_netns_processes(ns)
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        for link in reversed(self.links):  # veths go with their namespace; the bridge does not
            subprocess.run(["ip", "link", "del", link], capture_output=True)
        left = [ns for ns in netns_list() if ns in self.namespaces]
        links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
        left += [link for link in self.links if re.search(rf"^\d+: {link}[:@]", links, re.M)]
        survivors = processes_in(self.inodes)
        if self.work_created and not self.args.keep:
            shutil.rmtree(self.work, ignore_errors=True)
        say(f"cleaned up: {killed} processes killed, {len(self.namespaces)} namespaces and "
            f"{len(self.links)} links removed, {len(survivors)} processes and {len(left)} "
            f"namespaces or links left{f' {survivors} {left}' if survivors or left else ''}; "
            f"{'kept ' + str(self.work) if self.args.keep else 'work folder removed'} "
            f"({time.monotonic() - began:.1f} s)")  # fmt: skip


class _Thread(threading.Thread):
    """A thread whose exception is raised again by join()."""

    def __init__(self, target, *args):
        super().__init__(daemon=True)
        self._call, self._args, self.error = target, args, None
        self.start()

    def run(self) -> None:
        try:
            self._call(*self._args)
        except BaseException as err:  # noqa: BLE001 - handed to join()
            self.error = err

    def join(self, timeout: float | None = None) -> None:
        super().join(timeout)
        if self.error is not None:
            raise self.error


def _span(steps: list[int]) -> str:
    return f"{min(steps)}-{max(steps)}" if steps else "none"


def _holds(path: Path, needle: bytes) -> bool:
    try:
        return needle in path.read_bytes()
    except OSError:
        return False


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def preflight() -> None:
    if os.geteuid() != 0:
        raise Fatal("needs root: it creates network namespaces, veth pairs and a bridge")
    if shutil.which("ip") is None:
        raise Fatal("needs iproute2's `ip`")
    if not (PG_BIN / "initdb").is_file() and not list(
        Path("/usr/lib/postgresql").glob("*/bin/initdb")
    ):
        raise Fatal(f"needs PostgreSQL (no initdb at {PG_BIN}): apt-get install postgresql-15")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--auth", choices=["token", "none"], default="token",
                        help="token: cluster.yaml as written, Ray token authentication on every "
                             "node and the laptop (default); none: RAY_AUTH_MODE taken out")  # fmt: skip
    parser.add_argument("--workdir", help="work folder (default /var/tmp/dsr<pid>; not under /tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (logs, storage)")
    parser.add_argument("--job-timeout", type=float, default=600, help="seconds for the study job")
    args = parser.parse_args(argv)

    try:
        preflight()
    except Fatal as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rehearsal = Rehearsal(args)
    atexit.register(rehearsal.cleanup)

    def stop(signum, frame):  # Ctrl-C, SIGTERM, SIGHUP: stop, then clean up
        raise KeyboardInterrupt(f"signal {signum}")

    # SIGINT too: a shell without job control starts `cmd &` with SIGINT ignored, and Python then
    # installs no KeyboardInterrupt handler of its own.
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, stop)
    code = 0
    try:
        rehearsal.run()
    except KeyboardInterrupt:
        say("interrupted")
        code = 130
    except Exception as err:  # Fatal: a step failed; anything else: a bug or a broken cluster
        say(f"FAILED: {err}" if isinstance(err, Fatal) else f"FAILED: {traceback.format_exc()}")
        code = 1
    finally:
        if code == 1 or (code == 0 and rehearsal.failures):
            rehearsal.diagnose()
        rehearsal.cleanup()
    if code == 0 and rehearsal.failures:
        code = 1
    total = time.monotonic() - START
    if code == 0:
        say(f"rehearsal passed: every check ok, {total:.0f} s in all")
    elif code == 130:
        say(f"rehearsal interrupted after {total:.0f} s")
    else:
        say(f"rehearsal FAILED ({len(rehearsal.failures)} checks failed: {rehearsal.failures}), "
            f"{total:.0f} s in all")  # fmt: skip
    return code


if __name__ == "__main__":
    sys.exit(main())
