"""What is exposed: the cluster's tracking server is bound to the private address with no wildcard
hosts, the dashboard to localhost; configs are read with safe_load only (see test_spec_fuzz)."""

from __future__ import annotations

from pathlib import Path

import yaml

CLUSTER = Path(__file__).parents[2] / "cluster.yaml"


def _head_commands() -> str:
    cluster = yaml.safe_load(CLUSTER.read_text())
    return "\n".join(cluster["head_start_ray_commands"])


def test_cluster_mlflow_is_bound_to_the_private_address_without_wildcard_hosts():
    commands = _head_commands()
    assert "mlflow server" in commands
    assert "0.0.0.0" not in commands and "'*'" not in commands and '"*"' not in commands
    assert "--host $HEAD_IP" in commands and "--allowed-hosts" in commands
    allowed = commands.split("--allowed-hosts", 1)[1].split()[0]
    assert "*" not in allowed and "$HEAD_IP:5000" in allowed


def test_cluster_dashboard_listens_on_localhost_only():
    assert "--dashboard-host=127.0.0.1" in _head_commands()
