"""The Ray side of a trial: what a launch hands each trial, its context and its checkpoints.

``ray_entry`` adapts ``family.fit(cfg, data, ctx)`` to a Tune function trainable through
``RayContext``: reports go to Tune and to the trial's journal (sent to MLflow beside training),
checkpoints to the trial's folder on the study's storage. Families stay Ray-agnostic.
"""

from __future__ import annotations

import io
import json
import logging
import os
import pickle  # for its error type only: nothing here unpickles
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import torch
from ray import tune

from trainables import NonFiniteLoss, check_metric_names, get_family

from . import causes, space, tracking
from .journal import Journal, Sender
from .records import CHECKPOINT_FILE as STATE_FILE
from .resume import RESUMES, TRIAL_INDEX
from .spec import data_params, family_params, view_key

log = logging.getLogger(__name__)
_KEEP = 2  # the newest checkpoint may be cut short by a kill: the one before stays
VIEWS = "__views__"  # data of a study with data axes: view key -> object ref


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
    resumed: dict[str, dict[str, str]] | None = None
    """A resume: trial id continued -> its folder and run name (``study.resume``)."""

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


PROGRESS = "progress"  # Tune only: each report's explicit step (epoch, or optimiser step)


def _trial_storage(resumed: dict[str, str] | None = None) -> tuple[pafs.FileSystem, str]:
    """The trial's folder on the study's storage (local, NFS or a cloud URI) and its file system:
    Tune's folder for it, or the folder of the trial it continues (``resumed``).

    Ray has no public accessor for it (``get_trial_dir`` is the node-local working folder), so
    this reads the Train session's storage context.
    """
    from ray.train._internal.session import get_session

    storage = get_session().storage
    return storage.storage_filesystem, resumed["path"] if resumed else storage.trial_fs_path


class RayContext:
    """TrialContext backed by Tune (results), the trial folder (checkpoints) and MLflow via the journal."""

    def __init__(
        self,
        launch: LaunchInfo,
        params: dict[str, Any],
        dataset: dict[str, Any] | None = None,
        point: dict[str, Any] | None = None,
        tags: dict[str, str] | None = None,
        config: dict[str, Any] | None = None,
        continues: str | None = None,
    ):
        """``config``: Tune's, journaled (a resume plans from it); ``continues``: the id of the
        trial of an earlier run of the launch this one continues (its folder, run, checkpoint)."""
        context = tune.get_context()
        self._workdir = Path(tempfile.mkdtemp(prefix="trial-"))
        self.artifact_dir = self._workdir / "artifacts"
        self.artifact_dir.mkdir()
        resumed = (launch.resumed or {}).get(continues) if continues else None
        if continues and resumed is None:
            raise RuntimeError(f"trial {continues!r} is not among the trials this resume continues")
        self.fs, self.trial_path = _trial_storage(resumed)
        self.journal = Journal(self.fs, self.trial_path)
        self.tracking_uri = launch.tracking.uri
        self.sender = Sender(launch.tracking.uri, self.journal)
        trial_id = continues or context.get_trial_id()
        name = resumed["run_name"] if resumed else context.get_trial_name()
        record = tracking.run_record(launch.tracking, trial_id, name, params, dataset)
        if config is not None:
            record["config"] = config
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
        partial = f"{folder}/{STATE_FILE}.partial"
        with self.fs.open_output_stream(partial) as handle:
            handle.write(buffer.getvalue())
        self.fs.move(partial, f"{folder}/{STATE_FILE}")  # a reader never sees half a file
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

    def finish(self, status: str = "FINISHED", reason: str = "", cause: str = "") -> bool:
        """Journal the artifacts and the end (its ``cause``: ``study.causes``), then send with
        back-off; True if all was sent."""
        self.sender.stop()
        if status == "FINISHED" and any(self.artifact_dir.iterdir()):
            self.journal.append(
                {"op": "artifacts", "path": self.journal.copy_artifacts(self.artifact_dir)}
            )
        end = {"op": "end", "status": status, "reason": reason}
        if cause:
            end["tags"] = {causes.TAG: cause}
        self.journal.append(end)
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
            state = _load_state(self.fs, f"{folder}/{STATE_FILE}")
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
    except (OSError, EOFError, RuntimeError, ValueError, pickle.UnpicklingError) as err:
        log.warning("skipping unreadable checkpoint %s (%s)", path, err)
        return None


def ray_entry(config: dict[str, Any], data: dict[str, Any], launch: LaunchInfo) -> None:
    continues = config.get(RESUMES)
    config = {key: value for key, value in config.items() if key != RESUMES}
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
    journaled = json.loads(json.dumps(config, default=str))
    ctx = RayContext(
        launch, cfg.model_dump(mode="json"), dataset, point, where, journaled, continues
    )
    try:
        final = family.fit(cfg, data, ctx)
    except NonFiniteLoss as err:
        # Diverged: rerunning from the checkpoint would diverge again. End this trial, FAILED
        # with the reason, and let the study go on (no exception, so Tune does not retry).
        ctx.finish("FAILED", str(err), causes.DIVERGED)
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
        ctx.finish("FAILED", reason, causes.MISCONFIGURED)
        tune.report({"diverged": 0.0, "misconfigured": 1.0})
        return
    ctx.finish()
