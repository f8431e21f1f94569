"""A local study's Ray listens on loopback only: every listening socket of every process of its Ray
(GCS, raylet, workers, agents) is on 127.0.0.1 or ::1. Read from /proc, so a Ray upgrade that
binds elsewhere again fails here."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.ray]

REPO = Path(__file__).parents[2]

# Starts the local Ray exactly as `study run` does, runs one task (so a worker exists), then lists
# the listening sockets of its own process tree.
SCRIPT = r"""
import json, os, socket, struct
import ray
from study.ray_start import init_ray as _init_ray

def descendants(root):
    parents = {}
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = open(f"/proc/{pid}/stat").read()
        except OSError:
            continue
        parents[int(pid)] = int(stat.rsplit(")", 1)[1].split()[1])
    tree, grew = {root}, True
    while grew:
        new = {p for p, parent in parents.items() if parent in tree} - tree
        tree |= new
        grew = bool(new)
    return tree

def address(hex_address, family):
    host, port = hex_address.split(":")
    raw = bytes.fromhex(host)
    if family == socket.AF_INET:
        raw = raw[::-1]
    else:  # four little-endian 32-bit words
        raw = b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4))
    return socket.inet_ntop(family, raw), int(port, 16)

def listening():
    by_inode = {}
    for name, family in (("tcp", socket.AF_INET), ("tcp6", socket.AF_INET6)):
        for line in open(f"/proc/net/{name}").read().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                by_inode[fields[9]] = address(fields[1], family)
    found = []
    for pid in descendants(os.getpid()):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
            name = open(f"/proc/{pid}/comm").read().strip()
        except OSError:
            continue
        for fd in fds:
            try:
                target = os.readlink(f"/proc/{pid}/fd/{fd}")
            except OSError:
                continue
            if target.startswith("socket:[") and target[8:-1] in by_inode:
                found.append([name, pid, *by_inode[target[8:-1]]])
    return found

_init_ray(None, 1)
ray.get(ray.remote(lambda: 1).remote())
print(json.dumps(listening()))
ray.shutdown()
"""


def test_every_listener_of_a_local_study_is_on_loopback(tmp_path):
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listeners = json.loads(done.stdout.strip().splitlines()[-1])
    names = {name for name, *_ in listeners}
    assert {"gcs_server", "raylet"} <= names, listeners  # the check saw Ray's own processes
    exposed = [entry for entry in listeners if not _loopback(entry[2])]
    assert exposed == [], exposed


def _loopback(host: str) -> bool:
    address = ipaddress.ip_address(host)
    mapped = getattr(address, "ipv4_mapped", None)  # ::ffff:127.0.0.1, as gRPC binds it
    return address.is_loopback or (mapped is not None and mapped.is_loopback)


def test_loopback_reading():
    assert _loopback("127.0.0.1") and _loopback("::1") and _loopback("::ffff:127.0.0.1")
    assert not _loopback("0.0.0.0") and not _loopback("::") and not _loopback("10.1.2.3")
