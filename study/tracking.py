"""MLflow tracking: one experiment per study, one parent run per launch, one child run per trial.

Trials log from their own process (so any node can reach a tracking server), in one ``log_batch`` call
per report. A child run is found again by its ``trial_id`` tag when a trial retries or a study resumes,
so a trial never owns two runs. The driver closes runs a scheduler stopped or an error killed, which
trial processes cannot do themselves (DESIGN section 8).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from mlflow.entities import RunStatus, RunTag
from mlflow.tracking import MlflowClient

from analysis import stores
from trainables.core.outputs import TAG as OUTPUTS_TAG

from . import database
from .causes import TAG as CAUSE_TAG
from .params import flatten, trial_label, upstream_label

T = TypeVar("T")
DEFAULT_ARTIFACTS = "mlartifacts"
ROLE_TAG = "role"
MAX_RUN_NAME = 250  # MLflow's runs.name column: enforced by every database but SQLite


def artifact_location(uri: str, study: str, storage: Any = None) -> str | None:
    """Where a new experiment keeps its artifacts: a local SQLite store's sibling folder; with a
    database, the study's storage (``study.database``); a server decides its own."""
    if uri.startswith("sqlite:///"):
        return (Path(uri.removeprefix("sqlite:///")).parent / DEFAULT_ARTIFACTS / study).as_uri()
    if stores.is_database(uri) and storage is not None:
        return database.artifact_location(storage, study)
    return None


def retry_on_conflict(action: Callable[[], T], attempts: int = 8) -> T:
    """Run ``action``, retrying when another process races it: two launches creating the same
    SQLite store (schema migration), the same experiment, or writing while the file is locked."""
    rng = random.Random()
    for attempt in range(attempts):
        try:
            return action()
        except Exception as err:  # MlflowException, sqlalchemy OperationalError / IntegrityError
            text = str(err).lower()
            racing = any(
                word in text
                for word in ("already exists", "locked", "unique constraint", "alembic", "table")
            )
            if not racing or attempt == attempts - 1:
                raise
            time.sleep(rng.uniform(0.1, 0.5) * (attempt + 1))
    raise AssertionError("unreachable")


_READY: set[str] = set()  # stores this process has seen initialised


def ensure_store(uri: str) -> None:
    """Create a store's schema once: a SQLite file under an exclusive file lock beside it, a
    PostgreSQL database under an advisory lock.

    MLflow creates and migrates a SQLite store on first use; several processes doing that at once
    (launches started together into a store not yet there) race in the schema migration and all
    but one fail ("Online migration expected to match one row ... in 'alembic_version'"). Under
    the lock the first one creates it and the rest find it ready. A PostgreSQL database races the
    same way when empty: there the lock is an advisory lock in the database itself
    (``study.database``). Other databases migrate with ``mlflow db upgrade`` once, by hand."""
    sqlite = uri.startswith("sqlite:///")
    if uri in _READY or not (sqlite or stores.is_database(uri)):
        return
    # MLflow says "Creating initial MLflow database tables..." at INFO: nothing to act on.
    quiet = logging.getLogger("mlflow.store.db.utils")
    level = quiet.level
    quiet.setLevel(max(level, logging.WARNING))

    def create() -> None:
        MlflowClient(uri).search_experiments(max_results=1)

    try:  # the first call creates and migrates the store if needed
        if sqlite:
            path = Path(uri.removeprefix("sqlite:///"))
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_name(path.name + ".lock"), "a") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
                create()
        else:
            database.create_store(uri, create)
    finally:
        quiet.setLevel(level)
    _READY.add(uri)


def get_or_create_experiment(
    client: MlflowClient, study: str, uri: str, storage: Any = None
) -> str:
    """The study's experiment; a new one keeps its artifacts where ``artifact_location`` says."""
    ensure_store(uri)
    location = artifact_location(uri, study, storage)

    def attempt() -> str:
        experiment = client.get_experiment_by_name(study)
        if experiment is not None:
            return experiment.experiment_id
        return client.create_experiment(study, artifact_location=location)

    return retry_on_conflict(attempt)


@dataclass(frozen=True)
class TrackingInfo:
    """What a trial needs to log: passed to trials with the data (env vars set later don't reach)."""

    uri: str
    experiment_id: str
    parent_run_id: str
    study: str
    family: str
    dataset: dict[str, Any]
    upstreams: dict[str, dict[str, str]] = field(default_factory=dict)
    """Probes: upstream run id -> the provenance tags of the runs trained on it."""
    outputs: str = ""
    """The family's declared outputs and pictures (``Declared.to_tag``), made once on the driver:
    every trial run carries them, so analysis ranks by them without importing the family."""
    axes: tuple[str, ...] = ()
    """What sets the study's trials apart (its sweep axes, expansions, upstream): a trial run is
    named by its values of them."""


def start_parent_run(
    uri: str, study: str, family: str, config_text: str, extra_tags: dict[str, str],
    description: str = "", storage: Any = None,
) -> tuple[str, str]:  # fmt: skip
    """Create the launch's parent run; returns (experiment_id, run_id). Safe from several
    processes at once (a new store, a new experiment). ``description`` (the study's) becomes the
    experiment's description in MLflow's UI; ``storage`` (the study's) holds the artifacts when
    the store is a database."""
    ensure_store(uri)
    client = MlflowClient(uri)
    experiment_id = get_or_create_experiment(client, study, uri, storage)
    # MLflow's UI opens an experiment of this kind in its model-training view (runs, params,
    # metrics and logged models), not the GenAI one (traces, prompts, judges).
    retry_on_conflict(
        lambda: client.set_experiment_tag(
            experiment_id, "mlflow.experimentKind", "custom_model_development"
        )
    )
    if description:
        retry_on_conflict(
            lambda: client.set_experiment_tag(experiment_id, "mlflow.note.content", description)
        )
    run = retry_on_conflict(
        lambda: client.create_run(
            experiment_id,
            run_name=f"{study} launch {time.strftime('%Y-%m-%d %H:%M:%S')}",  # its study, when
            tags={ROLE_TAG: "launch", "study": study, "family": family, **extra_tags},
        )
    )
    retry_on_conflict(lambda: client.log_text(run.info.run_id, config_text, "config.yaml"))
    return experiment_id, run.info.run_id


def end_run(uri: str, run_id: str, status: str) -> None:
    MlflowClient(uri).set_terminated(run_id, status)


FAIL_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


@contextlib.contextmanager
def fail_fast() -> Iterator[None]:
    """MLflow calls that fail at once instead of retrying for minutes: we retry ourselves, and
    whatever could not be sent waits in a journal or the launch file for ``study sync``."""
    saved = {k: os.environ.get(k) for k in FAIL_FAST}
    os.environ.update(FAIL_FAST)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


class TrackingUnreachable(RuntimeError):
    """The tracking server cannot be reached; the message is one line."""


def check_reachable(uri: str) -> None:
    """Fail in one line, before Ray starts, when the tracking store cannot be reached."""
    if stores.is_database(uri):
        reason = stores.unreachable(uri)
        if reason is not None:
            raise TrackingUnreachable(
                f"tracking database {stores.shown_uri(uri)} is not reachable ({reason}); "
                "start it or pass --tracking-uri"
            )
        return
    if not uri.startswith(("http://", "https://")):
        return
    import requests

    try:
        requests.get(f"{uri.rstrip('/')}/health", timeout=5).raise_for_status()
    except requests.RequestException as err:
        reason = type(err).__name__
        raise TrackingUnreachable(
            f"tracking server {stores.shown_uri(uri)} is not reachable ({reason}); start it or "
            "pass --tracking-uri"
        ) from None


def reopen_parent_run(uri: str, run_id: str) -> tuple[str, str]:
    """Resume: the launch's parent run continues (RUNNING again); returns (experiment_id, run_id)."""
    client = MlflowClient(uri)
    run = client.get_run(run_id)
    client.update_run(run_id, "RUNNING")
    client.set_tag(run_id, "resumed", str(int(run.data.tags.get("resumed", "0") or 0) + 1))
    return run.info.experiment_id, run_id


def _launch_runs(client: MlflowClient, experiment_id: str, status: str) -> list[Any]:
    return client.search_runs(
        [experiment_id],
        filter_string=f"tags.{ROLE_TAG} = 'launch' and attributes.status = '{status}'",
    )


def child_statuses(uri: str, experiment_id: str, parent_run_id: str) -> dict[str, int]:
    """How many trial runs of a launch are in each status."""
    runs = MlflowClient(uri).search_runs(
        [experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=50_000,
    )
    counts: dict[str, int] = {}
    for run in runs:
        counts[run.info.status] = counts.get(run.info.status, 0) + 1
    return counts


def close_running_children(
    uri: str, experiment_id: str, parent_run_id: str, reason: str, cause: str = ""
) -> int:
    """End every trial run of a launch still RUNNING as KILLED (the driver stopped early)."""
    client = MlflowClient(uri)
    runs = client.search_runs(
        [experiment_id],
        filter_string=(
            f"tags.mlflow.parentRunId = '{parent_run_id}' and attributes.status = 'RUNNING'"
        ),
    )
    tags = [RunTag("end_reason", reason)] + ([RunTag(CAUSE_TAG, cause)] if cause else [])
    for run in runs:
        client.log_batch(run.info.run_id, tags=tags)
        client.set_terminated(run.info.run_id, "KILLED")
    return len(runs)


def close_stale_launches(uri: str, study: str, storage: str, keep: str | None = None) -> int:
    """Launches of ``study`` under ``storage`` left RUNNING by a driver that died (SIGKILL, power):
    the caller holds the study's lock, so none of them is alive. They and their running trial runs
    end KILLED; ``keep`` (the launch being resumed) is left to be reopened."""
    ensure_store(uri)  # the first call of a launch: the store may not exist yet
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        return 0
    closed = 0
    for run in _launch_runs(client, experiment.experiment_id, "RUNNING"):
        if run.info.run_id == keep:
            continue
        if run.data.tags.get("storage", storage) != storage:
            continue  # another storage's launch: its own lock, not ours
        reason = "driver stopped without ending the launch (found by a later launch)"
        close_running_children(uri, experiment.experiment_id, run.info.run_id, reason)
        client.log_batch(run.info.run_id, tags=[RunTag("end_reason", reason)])
        client.set_terminated(run.info.run_id, "KILLED")
        closed += 1
    if keep:
        close_running_children(
            uri, experiment.experiment_id, keep, "driver stopped; trial resumed by a later launch"
        )
    return closed


def find_trial_run(client: MlflowClient, experiment_id: str, trial_id: str) -> Any | None:
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.trial_id = '{trial_id}'", max_results=1
    )
    return runs[0] if runs else None


def run_record(
    info: TrackingInfo,
    trial_id: str,
    trial_name: str,
    params: dict[str, Any],
    dataset: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The journal record that creates (or finds again) a trial's child run."""
    dataset = info.dataset if dataset is None else dataset  # a data axis gives each trial its own
    tags = {
        ROLE_TAG: "trial",
        "mlflow.parentRunId": info.parent_run_id,
        "study": info.study,
        "family": info.family,
        "dataset": str(dataset.get("name", "")),
        "trial_id": trial_id,
    }
    if info.outputs:
        tags[OUTPUTS_TAG] = info.outputs
    for key in ("variant", "seed"):
        if key in params:
            tags[key] = str(params[key])
    if params.get("metrics"):  # how each score is estimated, where the literature differs
        from trainables.metrics import describe_estimator

        for name in params["metrics"]:
            tags[f"estimator.{name}"] = describe_estimator(
                name, params.get("metric_options"), params.get("metric_mode", "reference")
            )
    if "upstream" in params:  # a probe: which representation it was trained on, and why
        tags.update(info.upstreams.get(str(params["upstream"]), {}))
    return {
        "op": "run",
        "experiment_id": info.experiment_id,
        # Named by what sets it apart in the study (MLflow's run list shows names, not params).
        "run_name": _fit_name(
            trial_label(trial_id, _point_of(info, params, dataset)) if info.axes else trial_name,
            trial_id,
        ),
        "tags": tags,
        "params": {**flatten(params), **flatten(dataset, "dataset.")},
    }


def _fit_name(name: str, trial_id: str) -> str:
    """A run name MLflow's column holds: the values cut short, the trial id kept at the end."""
    if len(name) <= MAX_RUN_NAME:
        return name
    suffix = f"... ({trial_id})"
    return name[: MAX_RUN_NAME - len(suffix)] + suffix


def _point_of(info: TrackingInfo, params: dict[str, Any], dataset: dict[str, Any]) -> dict:
    values = {**params, **{f"dataset.{k}": v for k, v in dataset.items()}}
    point = {axis: values[axis] for axis in info.axes if axis in values}
    named = upstream_label(info.upstreams.get(str(point.get("upstream")), {}))
    if named:  # a probe: its upstream by family and point, not a run id
        point["upstream"] = named
    return point


def close_trial_run(
    info: TrackingInfo, trial_id: str, status: str, reason: str = "", cause: str = ""
) -> None:
    """Driver side: end a trial's run left RUNNING (stopped early, errored, killed)."""
    client = MlflowClient(info.uri)
    run = find_trial_run(client, info.experiment_id, trial_id)
    if run is None or run.info.status != "RUNNING":
        return
    tags = ([RunTag("end_reason", reason)] if reason else []) + (
        [RunTag(CAUSE_TAG, cause)] if cause else []
    )
    if tags:
        client.log_batch(run.info.run_id, tags=tags)
    client.set_terminated(run.info.run_id, RunStatus.to_string(RunStatus.from_string(status)))
