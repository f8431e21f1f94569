"""cluster.yaml rehearsed on this machine (benchmarks/cluster_rehearsal.py): a head and two workers in
network namespaces, started with cluster.yaml's own commands (PostgreSQL, mlflow server, Ray with
token authentication), a study submitted with `ray job submit` as docs/cluster.md says, one worker
killed mid-study and its trial finished on the other from its checkpoint, then `study status` and
`study report` from outside. About 5-6 minutes on 2 busy cores. Needs root (namespaces, veths, a
bridge) and PostgreSQL; afterwards nothing of it is left: namespaces, links, processes, folders."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]

SCRIPT = Path(__file__).parents[2] / "benchmarks" / "cluster_rehearsal.py"


def _netns_unavailable() -> str | None:
    """Why network namespaces cannot be made here, or None: root, `ip`, and a namespace that can
    really be added (a container without CAP_SYS_ADMIN / CAP_NET_ADMIN cannot)."""
    if os.geteuid() != 0:
        return "needs root: the rehearsal creates network namespaces, veth pairs and a bridge"
    if shutil.which("ip") is None:
        return "iproute2's `ip` is not installed"
    probe = f"dsrprobe{os.getpid()}"
    added = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if added.returncode != 0:
        return f"`ip netns add` is not allowed here: {added.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def test_cluster_yaml_rehearsed_on_three_namespaces(tmp_path):
    reason = _netns_unavailable()
    if reason:
        pytest.skip(reason)
    if not list(Path("/usr/lib/postgresql").glob("*/bin/initdb")) and os.environ.get(
        "DS_SKIP_POSTGRES"
    ):
        pytest.skip("no PostgreSQL and DS_SKIP_POSTGRES is set")
    result = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                            timeout=1500)  # fmt: skip
    output = result.stdout + result.stderr
    print(output[-6000:])  # what `pytest -s` shows: each step and check with its time
    assert result.returncode == 0, output[-8000:]
    assert "rehearsal passed" in result.stdout
    for check in ("trials started on both workers", "retried on the other worker",
                  "the retry resumed from a checkpoint", "study status exited 0",
                  "study report exited 0", "the dashboard refuses a request without the token"):  # fmt: skip
        assert re.search(rf"ok: (.*: )?{check}", result.stdout), check
    # Everything it made is gone: the processes in its namespaces (found by the namespaces' inodes),
    # the namespaces (named by its pid), bridge and veths, its work folder.
    assert "0 processes and 0 namespaces or links left" in result.stdout
    pid = re.search(r"bridge dsrb(\d+)", result.stdout).group(1)
    namespaces = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert f"dsr{pid}-" not in namespaces
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert f"dsrb{pid}" not in links and f"dsr{pid}" not in links
    assert not Path(f"/var/tmp/dsr{pid}").exists()
