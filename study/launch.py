"""Launch a study on Ray Tune: data once into the object store, one trial per grid point, MLflow runs.

The only module that imports Ray. Families stay Ray-agnostic: ``_ray_entry`` adapts
``family.fit(cfg, data, ctx)`` to a Tune function trainable through ``RayContext``.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import logging
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

from . import sources, tracking
from .journal import Journal, Sender, launch_summary, sync_experiment
from .space import to_param_space
from .spec import SpecError, StudySpec

log = logging.getLogger(__name__)
_STATE_FILE = "state.pt"
_KEEP = 2  # the newest checkpoint may be cut short by a kill: the one before stays


@dataclass(frozen=True)
class LaunchInfo:
    family: str
    threads: int
    tracking: tracking.TrackingInfo


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

    def __init__(self, launch: LaunchInfo, params: dict[str, Any]):
        context = tune.get_context()
        self._workdir = Path(tempfile.mkdtemp(prefix="trial-"))
        self.artifact_dir = self._workdir / "artifacts"
        self.artifact_dir.mkdir()
        self.fs, self.trial_path = _trial_storage()
        self.journal = Journal(self.fs, self.trial_path)
        self.tracking_uri = launch.tracking.uri
        self.sender = Sender(launch.tracking.uri, self.journal)
        self.journal.append(
            tracking.run_record(
                launch.tracking, context.get_trial_id(), context.get_trial_name(), params
            )
        )
        self.sender.flush()

    def report(
        self, metrics: dict[str, float], *, step: int, state: dict[str, Any] | None = None
    ) -> None:
        check_metric_names(metrics)
        now = int(time.time() * 1000)
        self.journal.append({"op": "metrics", "step": step, "metrics": metrics, "time": now})
        self.sender.flush()  # fails fast while the server is away: the journal keeps it
        if state is not None:
            self._checkpoint(state, step)
        tune.report(metrics)

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
        if status == "FINISHED" and any(self.artifact_dir.iterdir()):
            self.journal.append({"op": "artifacts", "path": self.journal.copy_artifacts(self.artifact_dir)})
        self.journal.append({"op": "end", "status": status, "reason": reason})
        budget = float(os.environ.get("STUDY_TRACKING_RETRY_S", "120"))
        sent = self.sender.flush_with_backoff(budget)
        if not sent:
            log.warning("tracking server unreachable: run `study sync` once it is back")
        return sent

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
    # Fail fast on an unreachable tracking server: the journal keeps the records and the trial
    # retries at its next report, instead of blocking training in MLflow's own retry loop.
    for key, value in tracking.FAIL_FAST.items():
        os.environ.setdefault(key, value)
    torch.set_num_threads(launch.threads)
    family = get_family(launch.family)
    cfg = family.Config(**config["params"])
    ctx = RayContext(launch, cfg.model_dump(mode="json"))
    try:
        family.fit(cfg, data, ctx)
    except NonFiniteLoss as err:
        # Diverged: rerunning from the checkpoint would diverge again. End this trial, FAILED
        # with the reason, and let the study go on (no exception, so Tune does not retry).
        ctx.finish("FAILED", str(err))
        tune.report({"diverged": 1.0})
        return
    ctx.finish()


class _CloseRuns(tune.Callback):
    """End child runs that trial processes could not end themselves."""

    def __init__(self, info: tracking.TrackingInfo):
        self.info = info

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


def launches(storage: Path, study: str) -> list[Path]:
    """The ``<study>_<stamp>`` folders, oldest first; a study ``a`` must not pick up ``a_b``'s."""
    pattern = re.compile(rf"{re.escape(study)}_\d{{8}}-\d{{6}}")
    return sorted(p for p in storage.glob(f"{study}_*") if p.is_dir() and pattern.fullmatch(p.name))


def latest_experiment(storage: Path, study: str) -> Path | None:
    runs = launches(storage, study)
    return runs[-1] if runs else None


@dataclass
class SyncResult:
    launch: str
    trials: int
    records_sent: int
    trials_failing: int
    launch_closed: bool


def sync_study(study: str, uri: str, storage: Path) -> list[SyncResult]:
    """Replay every trial journal of every launch of ``study`` into MLflow, then end each launch
    as it ended (or was interrupted). Idempotent: a second sync sends nothing."""
    folders = launches(storage.resolve(), study)
    if not folders:
        raise SpecError(f"sync: no launch of study {study!r} under {storage}")
    tracking.check_reachable(uri)
    results = []
    for folder in folders:
        record = read_launch(folder)
        trials, sent, failing = sync_experiment(uri, pafs.LocalFileSystem(), str(folder))
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
    experiment_path: Path
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


LAUNCH_FILE = "study_launch.json"  # in the Ray experiment folder: what a resume must continue


def _check_storage(storage: Path) -> None:
    """A storage the driver cannot write fails now, in one line, without creating anything."""
    existing = storage
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError
        with tempfile.TemporaryFile(dir=existing):  # a real write: os.access trusts root blindly
            pass
    except OSError:
        raise SpecError(f"--storage {storage}: {existing} is not a writable folder") from None


@contextlib.contextmanager
def study_lock(storage: Path, study: str) -> Iterator[None]:
    """One launch of a study at a time per storage: a second one is refused, in one line."""
    locks = storage / ".locks"
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


def read_launch(experiment: Path) -> dict[str, Any]:
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
    storage: str | Path,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    verbose: int = 1,
) -> StudyResult:
    """Validate, prepare data, start Ray, run every trial, and track everything in MLflow.

    ``resume`` continues the study's latest launch: the same parent run, no finished trial rerun,
    unfinished ones from their latest checkpoint; a spec that differs from that launch's is refused.
    """
    family = get_family(spec.family)
    storage = Path(storage).resolve()
    _check_storage(storage)
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
    tracking.check_reachable(tracking_uri)

    # Everything that can fail on bad input happens before Ray starts and before MLflow is written.
    configs = spec.family_configs()
    started = time.perf_counter()
    data = family.prepare_data(spec.dataset, configs)
    log.info("prepared data in %.1fs", time.perf_counter() - started)
    with study_lock(storage, spec.name):
        return _run_locked(
            spec, data, effective, previous, launch_record, config_text, tracking_uri, storage,
            address, num_cpus, verbose,
        )  # fmt: skip


def _run_locked(
    spec, data, effective, previous, launch_record, config_text, tracking_uri, storage, address,
    num_cpus, verbose,
) -> StudyResult:  # fmt: skip
    _init_ray(address, num_cpus)
    check_resources(spec)

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
                {"parent_run_id": parent_run_id, "spec": effective, "config_text": config_text}
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
    launch = LaunchInfo(spec.family, max(1, int(spec.resources.cpu)), info)
    # with_parameters puts the data into the object store once; trials read it from there.
    trainable = tune.with_resources(
        tune.with_parameters(_ray_entry, data=data, launch=launch),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    run_config = tune.RunConfig(
        name=experiment_path.name,
        storage_path=str(storage),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        callbacks=[_CloseRuns(info)],
        verbose=verbose,
    )
    status, interrupted, results = "FAILED", None, None
    with _Signals() as signals:
        try:
            if previous is not None:
                tuner = tune.Tuner.restore(
                    str(previous), trainable, resume_errored=True, param_space=to_param_space(spec)
                )
            else:
                tuner = tune.Tuner(
                    trainable,
                    param_space=to_param_space(spec),
                    tune_config=tune.TuneConfig(
                        max_concurrent_trials=spec.max_concurrent_trials, reuse_actors=True
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
            ended = launch_summary(pafs.LocalFileSystem(), str(experiment_path))
            n_finished = ended.get("FINISHED", 0)
            if n_finished + ended.get("FAILED", 0) + n_errors < n_trials:
                interrupted = interrupted or signals.received or "SIGINT"
            n_diverged = sum(
                1 for r in (results or []) if r.metrics and r.metrics.get("diverged")
            )
            if interrupted:
                status = "KILLED"
            elif n_errors == 0 and n_diverged == 0:
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
                            tracking_uri, pafs.LocalFileSystem(), str(experiment_path)
                        )[2]
                    except Exception as err:  # never hide the study's outcome behind this
                        log.warning("could not replay the trial journals: %s", err)
                        failing = 1
                synced = failing == 0
    return StudyResult(
        experiment_path, parent_run_id, n_trials, n_errors, n_diverged, interrupted, n_finished,
        tracking_pending=not synced,
    )  # fmt: skip


def _update_launch(experiment: Path, **fields: Any) -> None:
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
