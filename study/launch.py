"""Launch a study on Ray Tune: data once into the object store, one trial per grid point, MLflow runs.

The only module that imports Ray. Families stay Ray-agnostic: ``_ray_entry`` adapts
``family.fit(cfg, data, ctx)`` to a Tune function trainable through ``RayContext``.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import io
import json
import logging
import math
import os
import re
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from mlflow.tracking import MlflowClient
from ray import tune

from trainables import NonFiniteLoss, get_family
from trainables._context import check_metric_names

from . import sources, space, tracking
from .journal import (
    Journal,
    Sender,
    launch_summary,
    read_trial,
    sync_experiment,
    trial_folders,
)
from .spec import SpecError, StudySpec, data_params, family_params, view_key
from .storage import StoragePath, storage_path

log = logging.getLogger(__name__)
_STATE_FILE = "state.pt"
_KEEP = 2  # the newest checkpoint may be cut short by a kill: the one before stays


@dataclass(frozen=True)
class LaunchInfo:
    family: str
    threads: int
    tracking: tracking.TrackingInfo
    grid: tuple[dict[str, Any], ...] = ()
    """Optuna: the grid combinations a point's repeats stand for (``__trial_index__`` -> one)."""
    by_index: dict[str, list[Any]] | None = None
    """Optuna: categorical axes whose values are sent as indices (e.g. subsets as mappings)."""
    search_metric: str | None = None
    """What the searcher ranks by: a trial whose final report lacks it fails, saying so."""
    sampled: tuple[str, ...] = ()
    """Sampled axes: journaled as the trial's ``point`` (an extension warm-starts from them)."""

    def trial_params(self, config: dict[str, Any]) -> dict[str, Any]:
        """A trial's parameters from Tune's config: drawn points, grid repeats and indices decoded."""
        params = dict(config["params"])
        params.update(params.pop(space.SAMPLED_KEY, None) or {})
        params.update(params.pop(space.GRID_KEY, None) or {})
        if self.grid:
            params.update(self.grid[int(config.get(TRIAL_INDEX, 0))])
        for name, values in (self.by_index or {}).items():
            params[name] = values[int(params[name])]
        return params


TRIAL_INDEX = "__trial_index__"  # ray.tune.search.repeater.TRIAL_INDEX
PROGRESS = "progress"  # Tune only: each report's explicit step (epoch, or optimiser step)


def _trial_storage() -> tuple[pafs.FileSystem, str]:
    """The trial's folder on the study's storage (local, NFS or a cloud URI) and its file system.

    Ray has no public accessor for it (``get_trial_dir`` is the node-local working folder), so
    this reads the Train session's storage context.
    """
    from ray.train._internal.session import get_session

    storage = get_session().storage
    return storage.storage_filesystem, storage.trial_fs_path


class RayContext:
    """TrialContext backed by Tune (results), the trial folder (checkpoints) and MLflow via the journal."""

    def __init__(
        self,
        launch: LaunchInfo,
        params: dict[str, Any],
        dataset: dict[str, Any] | None = None,
        point: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
    ):
        context = tune.get_context()
        self._workdir = Path(tempfile.mkdtemp(prefix="trial-"))
        self.artifact_dir = self._workdir / "artifacts"
        self.artifact_dir.mkdir()
        self.fs, self.trial_path = _trial_storage()
        self.journal = Journal(self.fs, self.trial_path)
        self.tracking_uri = launch.tracking.uri
        self.sender = Sender(launch.tracking.uri, self.journal)
        record = tracking.run_record(
            launch.tracking, context.get_trial_id(), context.get_trial_name(), params, dataset
        )
        if point:
            record["point"] = point
        record["tags"].update(tags or {})
        self.journal.append(record)
        self.sender.start()
        self.sender.notify()

    def report(
        self, metrics: dict[str, float], *, step: int, state: dict[str, Any] | None = None
    ) -> None:
        check_metric_names(metrics)
        now = int(time.time() * 1000)
        self.journal.append({"op": "metrics", "step": step, "metrics": metrics, "time": now})
        self.sender.notify()  # sent beside training; the journal keeps it until then
        if state is not None:
            self._checkpoint(state, step)
        tune.report({**metrics, PROGRESS: step})

    def _checkpoint(self, state: dict[str, Any], step: int) -> None:
        """Write ``checkpoint_<step>/state.pt`` in the trial folder; keep the newest ``_KEEP``.

        Tune is not told: its experiment snapshot lags the checkpoints it deletes, so a driver
        killed between the two resumes from a checkpoint that no longer exists (and fails). The
        trial finds its own newest checkpoint in its folder instead (``restore``).
        """
        buffer = io.BytesIO()
        torch.save(state, buffer)
        folder = f"{self.trial_path}/checkpoint_{step:012d}"
        self.fs.create_dir(folder, recursive=True)
        partial = f"{folder}/{_STATE_FILE}.partial"
        with self.fs.open_output_stream(partial) as handle:
            handle.write(buffer.getvalue())
        self.fs.move(partial, f"{folder}/{_STATE_FILE}")  # a reader never sees half a file
        for old in self._checkpoint_folders()[:-_KEEP]:
            self.fs.delete_dir(old)

    def _checkpoint_folders(self) -> list[str]:
        """This trial's checkpoint folders, oldest first (names carry the zero-padded step)."""
        selector = pafs.FileSelector(self.trial_path, allow_not_found=True)
        return sorted(
            info.path
            for info in self.fs.get_file_info(selector)
            if info.type == pafs.FileType.Directory and info.base_name.startswith("checkpoint_")
        )

    def finish(self, status: str = "FINISHED", reason: str = "") -> bool:
        """Journal the artifacts and the end, then send with back-off; True if all was sent."""
        self.sender.stop()
        if status == "FINISHED" and any(self.artifact_dir.iterdir()):
            self.journal.append(
                {"op": "artifacts", "path": self.journal.copy_artifacts(self.artifact_dir)}
            )
        self.journal.append({"op": "end", "status": status, "reason": reason})
        budget = float(os.environ.get("STUDY_TRACKING_RETRY_S", "120"))
        sent = self.sender.flush_with_backoff(budget)
        if not sent:
            log.warning("tracking server unreachable: run `study sync` once it is back")
        return sent

    def close(self, send: bool = False) -> None:
        """End the sending thread of a trial that ends without ``finish`` (an error, a stop).

        Waits at most a second for a record in flight: a scheduler's stop must not hold the
        actor past Tune's wait for a reused actor's trial thread (2 s), or the next trial on it
        fails. ``send``: then try once, fail-fast, to send what is left (the driver's replay at
        the end of the launch, and ``study sync``, send whatever still is).
        """
        if self.sender.stop(timeout_s=1.0) and send:
            self.sender.flush()

    def restore(self) -> dict[str, Any] | None:
        """The newest readable checkpoint in the trial folder (one cut short by a kill is skipped)."""
        for folder in reversed(self._checkpoint_folders()):
            state = _load_state(self.fs, f"{folder}/{_STATE_FILE}")
            if state is not None:
                return state
        return None


def _load_state(fs: pafs.FileSystem, path: str) -> dict[str, Any] | None:
    """A checkpoint's state, or None if missing or incomplete (a trial killed while writing it).

    ``weights_only=True``: a crafted checkpoint raises instead of running code.
    """
    try:
        with fs.open_input_stream(path) as handle:
            return torch.load(io.BytesIO(handle.read()), weights_only=True)
    except (OSError, EOFError, RuntimeError) as err:
        log.warning("skipping unreadable checkpoint %s (%s)", path, err)
        return None


def _ray_entry(config: dict[str, Any], data: dict[str, Any], launch: LaunchInfo) -> None:
    # Fail fast on an unreachable tracking server: the journal keeps the records and the sending
    # thread retries with back-off, instead of sitting in MLflow's own retry loop.
    for key, value in tracking.FAIL_FAST.items():
        os.environ.setdefault(key, value)
    torch.set_num_threads(launch.threads)
    family = get_family(launch.family)
    params = launch.trial_params(config)
    dataset = None
    if VIEWS in data:  # a data axis: this trial's view, mapped from the node's object store once
        data = ray.get(data[VIEWS][view_key(params)])
        dataset = {**launch.tracking.dataset, **data_params(params)}
    cfg = family.Config(**family_params(params))
    point = {name: params[name] for name in launch.sampled}
    flags = getattr(data.get("images"), "flags", None)
    where = {
        "ray_node": ray.get_runtime_context().get_node_id(),
        # read-only: mapped from this node's object store, not a private copy of the data
        "data_mapped": str(flags is not None and not flags.writeable).lower(),
    }
    ctx = RayContext(launch, cfg.model_dump(mode="json"), dataset, point, where)
    try:
        final = family.fit(cfg, data, ctx)
    except NonFiniteLoss as err:
        # Diverged: rerunning from the checkpoint would diverge again. End this trial, FAILED
        # with the reason, and let the study go on (no exception, so Tune does not retry).
        ctx.finish("FAILED", str(err))
        tune.report({"diverged": 1.0})
        return
    except BaseException as err:  # an error, or a stop (SystemExit from tune.report)
        ctx.close(send=isinstance(err, Exception))
        raise
    if launch.search_metric and launch.search_metric not in (final or {}):
        reason = (
            f"search.metric {launch.search_metric!r} is not among the final metrics of family "
            f"{launch.family!r}: {sorted(final or {})}"
        )
        ctx.finish("FAILED", reason)
        tune.report({"diverged": 0.0, "misconfigured": 1.0})
        return
    ctx.finish()


VIEWS = "__views__"  # data of a study with data axes: view key -> object ref


class _CloseRuns(tune.Callback):
    """End child runs that trial processes could not end themselves."""

    # A stopped trial's own sending thread ends within about a second (RayContext.close): the
    # driver sends the end it journals for such a trial only after this, never beside it.
    SEND_AFTER_S = 5.0

    def __init__(self, info: tracking.TrackingInfo, scheduler: bool = False):
        self.info = info
        self.scheduler = scheduler
        self._to_send: list[tuple[float, Journal]] = []

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # A trial that returned journaled its end; one without an end was stopped by the
        # scheduler (ASHA) between reports: record it as stopped, not finished.
        if not self.scheduler:
            return
        try:
            journal = Journal(trial.storage.storage_filesystem, trial.storage.trial_fs_path)
            records = journal.records()
            if any(r["op"] == "end" for r in records):
                return
            reports = sum(r["op"] == "metrics" for r in records)
            reason = f"stopped early by the scheduler after {reports} reports"
            journal.append(
                {"op": "end", "status": "KILLED", "reason": reason, "tags": {"stopped": "asha"}}
            )
            self._to_send.append((time.monotonic() + self.SEND_AFTER_S, journal))
        except Exception as err:  # never stop the study over bookkeeping; `study sync` retries
            log.warning("could not record the early stop of trial %s: %s", trial.trial_id, err)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        # What is still here when the launch ends goes with its final replay of the journals.
        now = time.monotonic()
        due = [journal for at, journal in self._to_send if at <= now]
        self._to_send = [(at, journal) for at, journal in self._to_send if at > now]
        for journal in due:
            try:
                with tracking.fail_fast():
                    Sender(self.info.uri, journal).flush()
            except Exception as err:
                log.warning("could not send the early stop in %s: %s", journal.directory, err)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        # The trial cannot journal its own end any more: the driver does, for `status` and `sync`.
        try:
            journal = Journal(trial.storage.storage_filesystem, trial.storage.trial_fs_path)
            journal.append({"op": "end", "status": "FAILED", "reason": "trial error (see Ray)"})
        except Exception as err:  # never stop the study over bookkeeping
            log.warning("could not journal the end of trial %s: %s", trial.trial_id, err)
        try:
            with tracking.fail_fast():
                tracking.close_trial_run(self.info, trial.trial_id, "FAILED", "trial error")
        except Exception as err:  # the tracking server may be away: never stop the study for it
            log.warning("could not mark trial %s FAILED in MLflow: %s", trial.trial_id, err)


@dataclass
class SearchSetup:
    param_space: dict[str, Any]
    algorithm: Any = None  # a Tune searcher (Optuna), None for the grid
    scheduler: Any = None
    num_samples: int = 1
    grid: tuple[dict[str, Any], ...] = ()
    by_index: dict[str, list[Any]] | None = None
    metric: str | None = None


def _search_setup(spec: StudySpec, extend_from: list[StoragePath]) -> SearchSetup:
    """Tune's param space, searcher and scheduler for the spec's ``search`` block.

    The grid algorithm's drawn points continue past those of earlier launches (``extend_from``);
    Optuna starts from what they measured (or from its own storage, when one is given).
    """
    search = spec.search
    scheduler = None
    if search.scheduler is not None:
        from ray.tune.schedulers import ASHAScheduler

        asha = search.scheduler
        # Time is the trials' own progress (epochs, or optimiser steps), which a resumed trial
        # continues from its checkpoint (Tune's iteration count restarts at 0). A trial that
        # reaches max_t finishes: only rungs below it stop trials.
        scheduler = ASHAScheduler(
            time_attr=PROGRESS, metric=asha.metric, mode=asha.mode,
            grace_period=asha.grace_period, reduction_factor=asha.reduction_factor,
            max_t=asha.max_t or _trial_length(spec), stop_last_trials=False,
        )  # fmt: skip
    # The final metric is in the last report only, ASHA's in every report but the last: Tune's
    # check that every report holds both would fail every trial. The trial checks the final one.
    if search.algorithm == "optuna" or scheduler is not None:
        os.environ["TUNE_DISABLE_STRICT_METRIC_CHECKING"] = "1"
    else:
        os.environ.pop("TUNE_DISABLE_STRICT_METRIC_CHECKING", None)
    offset = sum(_launch_points(folder) for folder in extend_from)  # points drawn before
    if search.algorithm == "grid":
        return SearchSetup(space.to_param_space(spec, offset), scheduler=scheduler)

    import optuna
    from ray.tune.search import Repeater
    from ray.tune.search.optuna import OptunaSearch

    domains, by_index = space.tune_domains(spec.sampled_axes)
    points, rewards = [], []
    if search.storage is None:  # warm start from the earlier launches' finished trials
        points, rewards = _measured_points(spec, extend_from, by_index)
    searcher = OptunaSearch(
        metric=search.metric,
        mode=search.mode,
        # An extension's sampler must not replay the random start of the launches before it.
        sampler=optuna.samplers.TPESampler(
            seed=search.seed + offset, n_startup_trials=search.startup_points
        ),
        study_name=spec.name,
        storage=optuna.storages.RDBStorage(search.storage) if search.storage else None,
        points_to_evaluate=points or None,
        evaluated_rewards=rewards or None,
    )
    grid = tuple(spec.grid_combinations())
    # Each point runs once per grid combination (seeds): Optuna sees the mean of the repeats.
    # Always wrapped, even for one combination: the bare searcher reads search.metric from every
    # report, and only the final one holds it.
    algorithm = Repeater(searcher, repeat=len(grid), set_index=True)
    return SearchSetup(
        {"params": {**spec.base_params, **domains}}, algorithm, scheduler,
        spec.n_points * len(grid), grid, by_index, search.metric,
    )  # fmt: skip


def _trial_length(spec: StudySpec) -> int:
    """A full trial's progress (the longest config's): epochs, or optimiser steps."""
    return max(
        int(cfg.steps if getattr(cfg, "steps", None) is not None else getattr(cfg, "epochs", 1))
        for cfg in spec.family_configs()
    )


def _launch_points(folder: StoragePath) -> int:
    """How many points of the sampled axes a launch drew (its spec's ``n_points``)."""
    record = read_launch(folder)
    return int(record.get("n_points", 0))


def _measured_points(
    spec: StudySpec, folders: list[StoragePath], by_index: dict[str, list[Any]]
) -> tuple[list[dict[str, Any]], list[float]]:
    """Points of earlier launches with their metric, averaged over their finished trials, in
    the Optuna space's terms (``params/<axis>``; index-coded axes as indices)."""
    metric = spec.search.metric
    measured: dict[str, list[float]] = {}
    for folder in folders:
        for path in trial_folders(folder.fs, folder.path):
            trial = read_trial(Journal(folder.fs, path), metric)
            point = (trial.run or {}).get("point")
            if point and trial.value is not None and trial.status == "FINISHED":
                key = json.dumps(point, sort_keys=True)
                measured.setdefault(key, []).append(trial.value)
    points, rewards = [], []
    for key, values in measured.items():
        point = json.loads(key)
        reward = sum(values) / len(values)
        if not math.isfinite(reward) or not _inside(point, spec.sampled_axes):
            continue  # Optuna refuses NaN, and points outside today's space
        for name, choices in by_index.items():
            point[name] = choices.index(point[name])
        points.append({f"params/{name}": value for name, value in point.items()})
        rewards.append(reward)
    return points, rewards


def _inside(point: dict[str, Any], axes: list[space.Axis]) -> bool:
    """Whether a measured point lies in the space the sampled axes span today."""
    if set(point) != {a.name for a in axes}:
        return False
    for axis in axes:
        value = point[axis.name]
        if axis.categorical:
            if value not in axis.values:
                return False
        elif not isinstance(value, int | float) or not axis.low <= value <= axis.high:
            return False
    return True


def _init_ray(address: str | None, num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)


def check_resources(spec: StudySpec) -> None:
    """A request the cluster cannot meet would leave trials PENDING forever: fail now instead."""
    total = ray.cluster_resources()
    for key, wanted in (("CPU", spec.resources.cpu), ("GPU", spec.resources.gpu)):
        if wanted > total.get(key, 0.0):
            raise SpecError(
                f"resources.{key.lower()}={wanted} per trial, but the Ray cluster has "
                f"{total.get(key, 0.0):g} {key}"
            )


LAUNCH_STAMP = "%Y%m%d-%H%M%S"


def launches(storage: StoragePath | Path, study: str) -> list[StoragePath]:
    """The ``<study>_<stamp>`` folders, oldest first; a study ``a`` must not pick up ``a_b``'s."""
    pattern = re.compile(rf"{re.escape(study)}_\d{{8}}-\d{{6}}")
    storage = storage_path(storage)
    return sorted(p for p in storage.glob(f"{study}_*") if pattern.fullmatch(p.name) and p.is_dir())


def latest_experiment(storage: StoragePath | Path, study: str) -> StoragePath | None:
    runs = launches(storage, study)
    return runs[-1] if runs else None


@dataclass
class SyncResult:
    launch: str
    trials: int
    records_sent: int
    trials_failing: int
    launch_closed: bool


def sync_study(study: str, uri: str, storage: StoragePath | Path) -> list[SyncResult]:
    """Replay every trial journal of every launch of ``study`` into MLflow, then end each launch
    as it ended (or was interrupted). Idempotent: a second sync sends nothing."""
    storage = storage_path(storage)
    folders = launches(storage, study)
    if not folders:
        raise SpecError(f"sync: no launch of study {study!r} under {storage}")
    tracking.check_reachable(uri)
    results = []
    for folder in folders:
        record = read_launch(folder)
        trials, sent, failing = sync_experiment(uri, folder.fs, folder.path)
        closed = True
        if record.get("status"):  # the driver got to the end; None: it is running or was killed
            experiment_id = MlflowClient(uri).get_run(record["parent_run_id"]).info.experiment_id
            closed = close_launch(
                uri, experiment_id, record["parent_run_id"], record["status"],
                record.get("interrupted"),
            )  # fmt: skip
        results.append(SyncResult(folder.name, trials, sent, failing, closed))
    return results


@dataclass
class StudyResult:
    experiment_path: StoragePath
    parent_run_id: str
    n_trials: int
    n_errors: int
    n_diverged: int = 0
    """Trials ended by a non-finite loss (their runs are FAILED with an ``end_reason`` tag)."""
    interrupted: str | None = None
    """The signal that stopped the launch early (``SIGINT``, ``SIGTERM``), None if it ran out."""
    n_finished: int = 0
    tracking_pending: bool = False
    """Something could not be sent to MLflow (server away): ``study sync`` sends it later."""
    n_stopped: int = 0
    """Trials the scheduler (ASHA) stopped early: KILLED runs tagged ``stopped``."""
    n_misconfigured: int = 0
    """Trials whose final report lacked ``search.metric`` (FAILED, with the reason)."""


LAUNCH_FILE = "study_launch.json"  # in the Ray experiment folder: what a resume must continue


@contextlib.contextmanager
def study_lock(storage: StoragePath | Path, study: str) -> Iterator[None]:
    """One launch of a study at a time per storage: a second one is refused, in one line.

    The lock file lives in the storage when it is a folder (an NFS folder locks across machines);
    for a bucket, on this machine (one driver per study is the supported setup there).
    """
    storage = storage_path(storage)
    if storage.is_local:
        locks = storage.local / ".locks"
    else:
        digest = hashlib.sha256(storage.uri.encode()).hexdigest()[:16]
        locks = Path(tempfile.gettempdir()) / "disentangle-study-locks" / digest
    try:
        locks.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise SpecError(f"--storage {storage}: cannot write there ({err.strerror})") from None
    path = locks / f"{study}.lock"
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise SpecError(
                f"study {study!r} is already running ({holder}); wait for it or stop it first"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()} on {socket.gethostname()}")
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def read_launch(experiment: StoragePath | Path) -> dict[str, Any]:
    path = experiment / LAUNCH_FILE
    if not path.is_file():
        raise SpecError(f"{experiment}: no {LAUNCH_FILE}; this launch cannot be resumed")
    return json.loads(path.read_text())


def first_difference(a: Any, b: Any, prefix: str = "") -> str | None:
    """The first key (dotted) whose value differs between two JSON-like trees, or None."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            name = f"{prefix}.{key}" if prefix else str(key)
            if key not in a or key not in b:
                return name
            found = first_difference(a[key], b[key], name)
            if found:
                return found
        return None
    return None if a == b else (prefix or "spec")


class _Signals:
    """SIGTERM stops a launch as Ctrl-C does (Tune saves its state, then returns early)."""

    def __init__(self) -> None:
        self.received: str | None = None

    def __enter__(self) -> _Signals:
        self._term = signal.signal(signal.SIGTERM, self._on_term)
        return self

    def _on_term(self, signum: int, frame: Any) -> None:
        self.received = "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)  # Tune's handler: a graceful stop

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGTERM, self._term)


def run_study(
    spec: StudySpec,
    *,
    config_text: str,
    tracking_uri: str,
    storage: str | Path | StoragePath,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    extend: bool = False,
    verbose: int = 1,
) -> StudyResult:
    """Validate, prepare data, start Ray, run every trial, and track everything in MLflow.

    ``resume`` continues the study's latest launch: the same parent run, no finished trial rerun,
    unfinished ones from their latest checkpoint; a spec that differs from that launch's is refused.
    ``extend`` adds ``search.num_samples`` new points to a study with sampled axes, as a new launch
    that continues the earlier ones (new draws; Optuna warm-started from what they measured).
    """
    family = get_family(spec.family)
    storage = storage_path(storage)
    storage.check_writable()
    if spec.source is not None and spec.resolved_source is None:
        tracking.check_reachable(tracking_uri)
        spec = sources.resolve(spec, tracking_uri)
    effective = json.loads(spec.model_dump_json())
    previous = latest_experiment(storage, spec.name) if resume else None
    launch_record: dict[str, Any] | None = None
    if resume:
        if previous is None:
            raise SpecError(f"resume: no earlier launch of study {spec.name!r} under {storage}")
        launch_record = read_launch(previous)
        key = first_difference(launch_record["spec"], effective)
        if key is not None:
            raise SpecError(
                f"resume: {key} differs from the launch being resumed ({previous.name}); "
                f"resume it with `study resume {spec.name}` or give the study a new name"
            )
    extend_from: list[StoragePath] = []
    if launch_record is not None:  # a resumed extension draws / warm-starts as it did
        extend_from = [storage / name for name in launch_record.get("extends", [])]
    if extend:
        if resume:
            raise SpecError("--extend starts a new launch; --resume continues one: give one")
        extend_from = _check_extension(spec, effective, storage)
    tracking.check_reachable(tracking_uri)

    # Everything that can fail on bad input happens before Ray starts and before MLflow is written.
    configs = spec.family_configs()
    started = time.perf_counter()
    # Each distinct data view once, on the driver; trials take theirs from the object store.
    views = {key: family.prepare_data(view, configs) for key, view in spec.views().items()}
    data = views.pop("") if "" in views else {VIEWS: views}
    log.info("prepared %d data view(s) in %.1fs", len(views) or 1, time.perf_counter() - started)
    with study_lock(storage, spec.name):
        return _run_locked(
            spec, data, effective, previous, launch_record, config_text, tracking_uri, storage,
            address, num_cpus, verbose, extend_from,
        )  # fmt: skip


def _check_extension(
    spec: StudySpec, effective: dict[str, Any], storage: StoragePath
) -> list[StoragePath]:
    """The launches an extension continues; refused unless they searched the same space."""
    if not spec.sampled_axes:
        raise SpecError("--extend adds sampled points; this study's axes are all grids")
    earlier = launches(storage, spec.name)
    if not earlier:
        raise SpecError(f"--extend: no earlier launch of study {spec.name!r} under {storage}")
    record = read_launch(earlier[-1])
    last = record["spec"]
    ignore = {"search": {**last.get("search", {}), "num_samples": None}}
    mine = {**effective, "search": {**effective["search"], "num_samples": None}}
    key = first_difference({**last, **ignore}, mine)
    if key is not None:
        raise SpecError(
            f"--extend: {key} differs from the study's last launch ({earlier[-1].name}); "
            "an extension searches the same space (only search.num_samples may change)"
        )
    return [storage / name for name in record.get("extends", [])] + [earlier[-1]]


def _run_locked(
    spec, data, effective, previous, launch_record, config_text, tracking_uri, storage, address,
    num_cpus, verbose, extend_from,
) -> StudyResult:  # fmt: skip
    _init_ray(address, num_cpus)
    check_resources(spec)

    search = _search_setup(spec, extend_from)  # before MLflow is written: it can fail
    experiment_path = previous or storage / f"{spec.name}_{time.strftime(LAUNCH_STAMP)}"
    # The lock is ours: any launch of this study still RUNNING under this storage lost its driver.
    tracking.close_stale_launches(
        tracking_uri, spec.name, str(storage), keep=launch_record and launch_record["parent_run_id"]
    )
    if launch_record is not None:
        experiment_id, parent_run_id = tracking.reopen_parent_run(
            tracking_uri, launch_record["parent_run_id"]
        )
        _update_launch(previous, status=None, interrupted=None, ended_at=None)  # running again
    else:
        experiment_id, parent_run_id = tracking.start_parent_run(
            tracking_uri,
            spec.name,
            spec.family,
            config_text,
            {"ray_experiment": str(experiment_path), "storage": str(storage)},
        )
        experiment_path.mkdir(parents=True, exist_ok=True)
        (experiment_path / LAUNCH_FILE).write_text(
            json.dumps(
                {
                    "parent_run_id": parent_run_id,
                    "spec": effective,
                    "config_text": config_text,
                    "n_points": spec.n_points if spec.sampled_axes else 0,
                    "extends": [p.name for p in extend_from],
                }  # fmt: skip
            )
        )
    info = tracking.TrackingInfo(
        uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study=spec.name,
        family=spec.family,
        dataset=json.loads(spec.dataset.model_dump_json()),
        upstreams=sources.provenance_tags(spec) if spec.source is not None else {},
    )
    launch = LaunchInfo(
        spec.family, max(1, int(spec.resources.cpu)), info, search.grid, search.by_index,
        search.metric, tuple(a.name for a in spec.sampled_axes),
    )  # fmt: skip
    if VIEWS in data:  # one object per view: a node maps only the views its trials use
        data = {VIEWS: {key: ray.put(view) for key, view in data[VIEWS].items()}}
    # with_parameters puts the data into the object store once; trials read it from there.
    trainable = tune.with_resources(
        tune.with_parameters(_ray_entry, data=data, launch=launch),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    run_config = tune.RunConfig(
        name=experiment_path.name,
        storage_path=storage.uri,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        callbacks=[_CloseRuns(info, scheduler=search.scheduler is not None)],
        verbose=verbose,
    )
    status, interrupted, results = "FAILED", None, None
    with _Signals() as signals:
        try:
            if previous is not None:
                tuner = tune.Tuner.restore(
                    str(previous), trainable, resume_errored=True, param_space=search.param_space
                )
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space=search.param_space,
                    tune_config=tune.TuneConfig(
                        max_concurrent_trials=spec.max_concurrent_trials,
                        reuse_actors=True,
                        search_alg=search.algorithm,
                        scheduler=search.scheduler,
                        num_samples=search.num_samples,
                    ),
                    run_config=run_config,
                )
            results = tuner.fit()
        except KeyboardInterrupt:  # a second Ctrl-C skips Tune's graceful stop
            interrupted = signals.received or "SIGINT"
        finally:
            n_trials = len(results) if results is not None else spec.n_trials
            n_errors = len(results.errors) if results is not None else 0
            # Tune returns normally after a Ctrl-C: the study ended only if every trial did. The
            # trials' journals say so even while the tracking server is away.
            ended = launch_summary(experiment_path.fs, experiment_path.path)
            n_finished = ended.get("FINISHED", 0)
            n_stopped = ended.get("STOPPED", 0)
            # A trial that errored is journaled FAILED by _CloseRuns: counted once, there.
            if n_finished + ended.get("FAILED", 0) + n_stopped < n_trials:
                interrupted = interrupted or signals.received or "SIGINT"
            n_diverged = sum(1 for r in (results or []) if r.metrics and r.metrics.get("diverged"))
            n_misconfigured = sum(
                1 for r in (results or []) if r.metrics and r.metrics.get("misconfigured")
            )
            if interrupted:
                status = "KILLED"
            elif n_errors == 0 and n_diverged == 0 and n_misconfigured == 0:
                status = "FINISHED"
            # Recorded first: `study sync` finishes the job if the server is away right now.
            _update_launch(
                experiment_path, status=status, interrupted=interrupted, ended_at=time.time()
            )
            synced = close_launch(tracking_uri, experiment_id, parent_run_id, status, interrupted)
            if synced:  # a record still in a journal is not in MLflow: the study is not done
                with tracking.fail_fast():
                    try:
                        failing = sync_experiment(
                            tracking_uri, experiment_path.fs, experiment_path.path
                        )[2]
                    except Exception as err:  # never hide the study's outcome behind this
                        log.warning("could not replay the trial journals: %s", err)
                        failing = 1
                synced = failing == 0
    return StudyResult(
        experiment_path, parent_run_id, n_trials, n_errors, n_diverged, interrupted, n_finished,
        tracking_pending=not synced, n_stopped=n_stopped, n_misconfigured=n_misconfigured,
    )  # fmt: skip


def _update_launch(experiment: StoragePath, **fields: Any) -> None:
    path = experiment / LAUNCH_FILE
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


def close_launch(
    uri: str, experiment_id: str, parent_run_id: str, status: str, interrupted: str | None
) -> bool:
    """End the parent run (and, if interrupted, the trial runs still RUNNING); False if the
    tracking server could not be reached after a few tries."""
    for wait in (0, 2, 5, 10):
        time.sleep(wait)
        try:
            with tracking.fail_fast():
                _close_launch(uri, experiment_id, parent_run_id, status, interrupted)
            return True
        except Exception as err:  # unreachable, 5xx, locked database
            log.warning("could not end the launch in MLflow (%s); retrying", err)
    return False


def _close_launch(uri, experiment_id, parent_run_id, status, interrupted) -> None:
    if interrupted:
        reason = f"{interrupted}: study interrupted"
        tracking.close_running_children(uri, experiment_id, parent_run_id, reason)
    tracking.end_run(uri, parent_run_id, status)
