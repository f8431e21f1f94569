"""Starting or joining Ray for a launch: a local Ray on loopback only, no credentials copied into
runtime envs, no notice a user cannot act on; and a refusal of what the cluster cannot run."""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator

import ray
from ray._private import ray_constants

from .errors import SpecError
from .spec import StudySpec


def _no_credentials_in_runtime_envs() -> None:
    """Tune copies the driver's ``AWS_*`` variables into every trial actor's runtime env
    (``ray.tune.execution.class_cache.ENV_VARS_TO_PROPAGATE``), and Ray writes runtime envs in
    plain text into its session logs (``runtime_env_agent.log``). Trials need none of them: a
    local Ray's workers inherit the driver's environment, and cluster nodes get credentials from
    instance roles or credential files (docs/cluster.md)."""
    from ray.tune.execution import class_cache

    class_cache.ENV_VARS_TO_PROPAGATE = frozenset(
        name for name in class_cache.ENV_VARS_TO_PROPAGATE if not name.startswith("AWS_")
    )


def init_ray(address: str | None, num_cpus: int | None) -> None:
    _no_credentials_in_runtime_envs()
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        # Ray enables token authentication for a local start (kept) and warns so at every launch:
        # nothing there for a user to act on.
        logging.getLogger("ray._private.authentication.authentication_token_setup").addFilter(
            _token_notice
        )
        with loopback_only():
            ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)


def _token_notice(record: logging.LogRecord) -> bool:
    """False for Ray's notice that a local start enabled token authentication."""
    return "Token authentication is enabled" not in record.getMessage()


@contextlib.contextmanager
def loopback_only() -> Iterator[None]:
    """A local Ray that listens on 127.0.0.1 only (GCS, raylet, workers, agents), not on every
    interface: nothing on the network can submit work to a workstation's study.

    Ray resolves "localhost" to the machine's routable address unless clusters are disabled
    (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read by the driver at import and by every Ray
    process it starts). Set for this start only: a cluster node must keep it, or it cannot be
    joined (docs/cluster.md). tests/study_tests/test_loopback.py lists the listeners.
    """
    name = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    saved_env, saved_flag = os.environ.get(name), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[name] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = saved_flag
        if saved_env is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved_env


def check_resources(spec: StudySpec) -> None:
    """A request the cluster cannot meet would leave trials PENDING forever: fail now instead."""
    total = ray.cluster_resources()
    for key, wanted in (("CPU", spec.resources.cpu), ("GPU", spec.resources.gpu)):
        if wanted > total.get(key, 0.0):
            raise SpecError(
                f"resources.{key.lower()}={wanted} per trial, but the Ray cluster has "
                f"{total.get(key, 0.0):g} {key}"
            )
