"""Launch records: the folders of a study's launches, ``study_launch.json`` (what a resume must
continue), the one-launch-at-a-time lock, and ending a launch in MLflow (also from ``study sync``).

Imports neither Ray nor torch: ``study status`` and ``study sync`` read these without starting Ray.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import re
import socket
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from trainables.core.outputs import Declared

from . import causes
from .errors import SpecError
from .journal import sync_experiment, trial_folders
from .storage import StoragePath, storage_path

log = logging.getLogger(__name__)

LAUNCH_STAMP = "%Y%m%d-%H%M%S"


def launches(storage: StoragePath | Path, study: str) -> list[StoragePath]:
    """The ``<study>_<stamp>`` folders, oldest first; a study ``a`` must not pick up ``a_b``'s."""
    pattern = re.compile(rf"{re.escape(study)}_\d{{8}}-\d{{6}}")
    storage = storage_path(storage)
    return sorted(p for p in storage.glob(f"{study}_*") if pattern.fullmatch(p.name) and p.is_dir())


CHECKPOINT_FILE = "state.pt"  # what study.trial writes in each checkpoint_<step> folder


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
    from . import tracking  # MLflow: only where a store is written

    tracking.check_reachable(uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        # A new empty store would take the records but not the launch's parent run: refuse.
        raise SpecError(
            f"sync: no tracking store at {uri}; give the --tracking-uri the study ran with "
            "(sync sends to the store that holds its parent run, it never creates one)"
        )
    results = []
    for folder in folders:
        record = read_launch(folder)
        trials, sent, failing = sync_experiment(uri, folder.fs, folder.path)
        closed = True
        if record.get("status"):  # the driver got to the end; None: it is running or was killed
            from mlflow.tracking import MlflowClient

            experiment_id = MlflowClient(uri).get_run(record["parent_run_id"]).info.experiment_id
            closed = close_launch(
                uri, experiment_id, record["parent_run_id"], record["status"],
                record.get("interrupted"),
            )  # fmt: skip
        results.append(SyncResult(folder.name, trials, sent, failing, closed))
    return results


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

    def refuse(holder: str) -> None:
        raise SpecError(
            f"study {study!r} is already running ({holder}); wait for it or stop it first"
        )

    with _holding(path, f"pid {os.getpid()} on {socket.gethostname()}", refuse):
        yield


@contextlib.contextmanager
def _holding(path: Path, holder: str, busy: Any) -> Iterator[None]:
    """An exclusive kernel lock on ``path`` (released when its holder dies), recording ``holder``
    in it; if another holds it, ``busy(their holder)`` first: raise to refuse, return to wait."""
    with open(path, "a+") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            busy(handle.read().strip() or "another process")
            fcntl.flock(handle, fcntl.LOCK_EX)
        handle.seek(0)
        handle.truncate()
        handle.write(holder)
        handle.flush()
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _to_stderr(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


@contextlib.contextmanager
def local_ray_turn(study: str, say: Any = _to_stderr) -> Iterator[None]:
    """One local study's trials at a time on this machine (``study run`` without ``--address``).

    Each local study starts a Ray sized to every core, so two at once would run twice as many
    trials as there are cores (and, with large models, run out of memory). Ray arbitrates only
    within one Ray; a local Ray lives and dies with its driver, so a second study cannot borrow
    the first's. The second waits for its turn instead (``say`` tells the user once, naming the
    study it waits for); studies that should share a machine's cores run on one Ray cluster
    (``--address``). The lock is the kernel's: a killed driver releases it."""
    path = Path(tempfile.gettempdir()) / "disentangle-study-locks" / "local-ray.lock"
    path.parent.mkdir(parents=True, exist_ok=True)

    def wait(holder: str) -> None:
        say(f"waiting for the local Ray of {holder} to finish (one local study at a time uses "
            "this machine's cores; share a cluster with --address instead)")  # fmt: skip

    with _holding(path, f"study {study!r} (pid {os.getpid()})", wait):
        yield


def launch_plan(spec: Any, declared: Declared | None = None) -> dict[str, Any]:
    """What ``study status`` reads of the spec, derived here once so that it need not validate
    the spec again (which would import every family, and torch): trials, axes, ranking metric,
    and the family's ``declared`` outputs (the directions of metrics it may rank by instead)."""
    from trainables.metrics import get_metric
    from trainables.metrics.selection import default_mode

    declared = declared or Declared()
    metric = (
        spec.search.metric or get_metric(spec.base_params.get("metrics", ["mig"])[0]).outputs[0]
    )
    if spec.source is not None and not spec.search.metric and declared.primary:
        # A probe ranks by its own headline (an error, a reconstruction), not by a score of
        # the upstream's codes that it re-measures.
        metric = declared.primary[0]
    return {
        "n_trials": spec.n_trials,
        "axes": [*spec.sweep, *spec.expanded_keys, *(["upstream"] if spec.source else [])],
        "metric": metric,
        "mode": spec.search.mode if spec.search.metric else None,
        # Its direction, known now: `study status` ranks by it without loading the registry.
        "metric_mode": spec.search.mode
        if spec.search.metric
        else default_mode(metric, declared.direction),
        "outputs": declared.as_dict(descriptions=False),
    }


def read_launch(experiment: StoragePath | Path) -> dict[str, Any]:
    path = experiment / LAUNCH_FILE
    if not path.is_file():
        raise SpecError(f"{experiment}: no {LAUNCH_FILE}; this launch cannot be resumed")
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise SpecError(
            f"{path}: not a readable launch record (cut short or overwritten); start the study "
            "under a new name, or remove this launch folder"
        ) from None
    if not isinstance(record, dict) or not isinstance(record.get("spec"), dict):
        raise SpecError(
            f"{path}: not a launch record of `study run` (no spec); remove this launch folder"
        )
    return record


def check_checkpoints(experiment: StoragePath) -> None:
    """Refuse a resume whose trials' checkpoints are not ``torch.save`` archives (empty, cut, or
    another file in their place), naming the first; read from the zip index only, unpickling
    nothing. A kill cannot cut one: trials write ``state.pt.partial`` and rename it."""
    fs = experiment.fs
    for trial in trial_folders(fs, experiment.path):
        selector = pafs.FileSelector(trial, recursive=True, allow_not_found=True)
        for info in fs.get_file_info(selector):
            if info.base_name != CHECKPOINT_FILE or "/checkpoint_" not in info.path:
                continue
            try:
                with fs.open_input_file(info.path) as handle, zipfile.ZipFile(handle) as archive:
                    ours = any(name.endswith("/data.pkl") for name in archive.namelist())
            except (OSError, zipfile.BadZipFile, ValueError):
                ours = False
            if not ours:
                raise SpecError(
                    f"{info.path}: not a readable checkpoint (empty, cut, or another file); "
                    "delete its checkpoint folder to resume that trial from an earlier one"
                )


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


def update_launch(experiment: StoragePath, **fields: Any) -> None:
    path = experiment / LAUNCH_FILE
    record = json.loads(path.read_text())
    record.update(fields)
    path.write_text(json.dumps(record))


def close_launch(
    uri: str, experiment_id: str, parent_run_id: str, status: str, interrupted: str | None
) -> bool:
    """End the parent run (and, if interrupted, the trial runs still RUNNING); False if the
    tracking server could not be reached after a few tries."""
    from . import tracking

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
    from . import tracking

    if interrupted:
        cause, reason = causes.interruption(
            None if interrupted == causes.ENDED_EARLY else interrupted
        )
        tracking.close_running_children(uri, experiment_id, parent_run_id, reason, cause)
    tracking.end_run(uri, parent_run_id, status)
