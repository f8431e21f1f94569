"""Tracking that outlives the tracking server: every trial journals what it logs, then sends it.

A trial appends each record (its run's tags and params, metrics with their steps, its artifacts, its
end) to ``tracking_journal.jsonl`` in its own Ray trial folder, on the study's storage, *before*
anything goes to MLflow. ``Sender`` then applies unsent records in order, each idempotently: the run
is found again by its ``trial_id`` tag, a (metric, step) already in the run's history is skipped,
artifacts overwrite themselves, ending twice is ending once. A server that cannot be reached only
delays sending: the trial trains on while a thread beside it retries with back-off, its end waits
for what is left (within a budget), and
``study sync NAME`` replays whatever is left, as often as wanted, without duplicating anything.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from trainables.errors import UserError

from . import causes

log = logging.getLogger(__name__)

JOURNAL = "tracking_journal.jsonl"
SENT = "tracking_journal.sent"  # how many records of the journal are known to be in MLflow
ARTIFACTS = "artifacts"
_OBJECT_STORES = frozenset({"s3", "gcs", "abfs"})  # pyarrow type names: whole objects at close


class Journal:
    """The append-only record file of one trial, on any pyarrow file system (local, NFS, S3)."""

    def __init__(self, fs: pafs.FileSystem, directory: str):
        self.fs, self.directory = fs, directory.rstrip("/")
        self._records: list[dict[str, Any]] | None = None

    def _path(self, name: str) -> str:
        return f"{self.directory}/{name}"

    def _read(self, name: str) -> str | None:
        try:
            with self.fs.open_input_stream(self._path(name)) as handle:
                return handle.read().decode()
        except (FileNotFoundError, OSError):
            return None

    def _write(self, name: str, text: str) -> None:
        """Replace a whole file (object stores cannot append; journals stay small, a line a
        report) so that no reader ever sees it cut short.

        Written in place, the file is empty or partial between open and close: a reader (``study
        status``, ``study sync``, the trial retried after a kill there) found records missing
        that the trial's newest checkpoint had passed. On a file system (local, NFS) it is
        written beside and renamed over; an object store publishes an object whole at close.
        """
        self.fs.create_dir(self.directory, recursive=True)
        path = self._path(name)
        if self.fs.type_name in _OBJECT_STORES:
            with self.fs.open_output_stream(path) as handle:
                handle.write(text.encode())
            return
        partial = f"{path}.{os.getpid()}.{threading.get_ident()}.partial"
        with self.fs.open_output_stream(partial) as handle:
            handle.write(text.encode())
        self.fs.move(partial, path)

    def records(self) -> list[dict[str, Any]]:
        if self._records is None:
            text = self._read(JOURNAL) or ""
            lines = text.splitlines()
            records = []
            for number, line in enumerate(lines, 1):
                try:
                    record = json.loads(line)
                except ValueError:
                    if number == len(lines):  # a torn last line from a killed writer
                        break
                    record = None
                if not (isinstance(record, dict) and isinstance(record.get("op"), str)):
                    raise JournalError(
                        f"{self.directory}/{JOURNAL}: line {number} is not a journal record (the "
                        "file was cut or overwritten); move the trial folder away to rerun it"
                    )
                records.append(record)
            self._records = records
        return self._records

    def append(self, record: dict[str, Any]) -> None:
        records = self.records()
        # On disk first: a sending thread sees (and counts as sent) only records the file holds.
        self._write(JOURNAL, "".join(json.dumps(r) + "\n" for r in [*records, record]))
        records.append(record)

    @property
    def sent(self) -> int:
        text = self._read(SENT)
        return int(text) if text and text.strip().isdigit() else 0

    def mark_sent(self, count: int) -> None:
        # Never backwards: two senders of one journal (a trial's, a sync) may finish out of order.
        self._write(SENT, str(max(count, self.sent)))

    @property
    def exists(self) -> bool:
        return self.fs.get_file_info(self._path(JOURNAL)).type == pafs.FileType.File

    def copy_artifacts(self, local_dir: Path) -> str:
        """Put a trial's artifacts in its folder, where a later sync can still find them."""
        target = self._path(ARTIFACTS)
        self.fs.create_dir(target, recursive=True)
        pafs.copy_files(str(local_dir), target, destination_filesystem=self.fs)
        return ARTIFACTS


class JournalError(UserError):
    """A trial journal that is not one (cut in the middle, overwritten): one line, exit 2."""


class Sender:
    """Applies a journal's unsent records to MLflow, in order, each one idempotently."""

    def __init__(self, uri: str, journal: Journal):
        from mlflow.tracking import MlflowClient  # only senders need MLflow (status reads journals)

        self.uri, self.journal = uri, journal
        self.client = MlflowClient(uri)
        self.run_id: str | None = None
        self.run_record: dict[str, Any] | None = None  # the record the run was made from
        self.logged: dict[str, int] = {}  # metric -> last step in the run's history
        self._thread: threading.Thread | None = None
        self._wake, self._stopping = threading.Event(), threading.Event()

    def flush(self, stoppable: bool = False) -> bool:
        """Send what is unsent; False (and a warning) if the store failed, to be retried later.

        ``stoppable`` (the sending thread): end early, between records, once ``stop`` is called.
        """
        records = self.journal.records()
        done = sent = self.journal.sent
        try:
            if done < len(records) and self.run_id is None:
                self._resolve(next(r for r in records if r["op"] == "run"))
            for record in records[done:]:
                if stoppable and self._stopping.is_set():  # the caller sends the rest
                    break
                self._apply(record)
                done += 1
        except Exception as err:  # any store failure: unreachable, 5xx, locked database
            log.warning(
                "tracking: %d record(s) not sent yet (%s); will retry",
                len(records) - done,
                str(err).splitlines()[0][:200] if str(err) else type(err).__name__,
            )
            return False
        finally:
            if done > sent:
                self.journal.mark_sent(done)
        return True

    # -- sending beside training ----------------------------------------------------------------
    def start(self) -> None:
        """Send on a thread of its own from now on: ``notify`` after each journal append.

        A report then costs the trial the journal write only; the HTTP round trip (tens of ms to
        a busy server, a fail-fast timeout while it is away) overlaps training. The journal is
        written before ``notify``, so nothing is lost if the process dies with records unsent.
        """
        if self._thread is not None:
            return
        self._stopping.clear()
        self._thread = threading.Thread(target=self._loop, name="tracking-sender", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """New records are in the journal (sent now if not started)."""
        if self._thread is None:
            self.flush()
        else:
            self._wake.set()

    def stop(self, timeout_s: float | None = None) -> bool:
        """End the sending thread (it stops between records); later sends are the caller's.

        Waits up to ``timeout_s`` (None: until it has ended) for a record in flight; True if the
        thread has ended. One that has not is kept, so a later ``stop()`` still waits for it.
        """
        if self._thread is None:
            return True
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive():
            return False
        self._thread = None
        return True

    def _loop(self) -> None:
        wait = 1.0
        while True:
            self._wake.wait()
            if self._stopping.is_set():
                return
            self._wake.clear()
            try:
                sent = self.flush(stoppable=True)
            except Exception as err:  # the journal's storage failed: keep training, retry later
                log.warning("tracking: could not read or mark the journal (%s)", err)
                sent = False
            if sent:
                wait = 1.0
                continue
            # The server is away: back off instead of trying at every report.
            if self._stopping.wait(wait):
                return
            wait = min(wait * 2, 60.0)
            self._wake.set()

    def flush_with_backoff(self, budget_s: float, first_wait_s: float = 1.0) -> bool:
        """Retry ``flush`` with exponential back-off for up to ``budget_s`` seconds."""
        deadline, wait = time.monotonic() + budget_s, first_wait_s
        while not self.flush():
            if time.monotonic() + wait > deadline:
                return False
            time.sleep(wait)
            wait = min(wait * 2, 60.0)
        return True

    # -- records ------------------------------------------------------------------------------
    def _resolve(self, record: dict[str, Any]) -> None:
        """Find the trial's run by trial_id (after a retry, a resume or a sync), or create it;
        then log the params it lacks.

        ``run_id`` is set only once they are in: when the params call fails after the run was
        made (a busy server's timeout, a 5xx), the next flush finds the run again and sends them,
        instead of sending the rest to a run without params.
        """
        from mlflow.entities import Param

        self.run_record = record
        found = self.client.search_runs(
            [record["experiment_id"]],
            filter_string=f"tags.trial_id = '{record['tags']['trial_id']}'",
            max_results=1,
        )
        if found:
            run = found[0]
            for key in run.data.metrics:
                history = self.client.get_metric_history(run.info.run_id, key)
                self.logged[key] = max((m.step for m in history), default=-1)
        else:
            run = self.client.create_run(
                record["experiment_id"], run_name=record["run_name"], tags=record["tags"]
            )
        present = run.data.params
        params = [Param(k, v[:6000]) for k, v in record["params"].items() if k not in present]
        for start in range(0, len(params), 100):  # MLflow's per-call param limit
            self.client.log_batch(run.info.run_id, params=params[start : start + 100])
        self.run_id = run.info.run_id

    def _apply(self, record: dict[str, Any]) -> None:
        from mlflow.entities import Metric, RunTag

        assert self.run_id is not None
        op = record["op"]
        if op == "run":
            if self.client.get_run(self.run_id).info.status != "RUNNING":
                self.client.update_run(self.run_id, "RUNNING")  # a retried or resumed trial
        elif op == "metrics":
            step = int(record["step"])
            batch = [
                Metric(k, float(v), int(record["time"]), step)
                for k, v in record["metrics"].items()
                if step > self.logged.get(k, -1)
            ]
            for start in range(0, len(batch), 1000):  # MLflow's per-call metric limit
                self.client.log_batch(self.run_id, metrics=batch[start : start + 1000])
            for metric in batch:
                self.logged[metric.key] = step
        elif op == "artifacts":
            self._log_artifacts(record["path"])
        elif op == "end":
            tags = [RunTag(k, str(v)) for k, v in (record.get("tags") or {}).items()]
            if record.get("reason"):
                tags.append(RunTag("end_reason", record["reason"][:5000]))
            if tags:
                self.client.log_batch(self.run_id, tags=tags)
            self.client.set_terminated(self.run_id, record["status"])
        else:
            raise ValueError(f"unknown journal record {op!r}")

    def _log_artifacts(self, relative: str) -> None:
        source = f"{self.journal.directory}/{relative}"
        if isinstance(self.journal.fs, pafs.LocalFileSystem):
            self.client.log_artifacts(self.run_id, source)
            self._log_model(Path(source))
            return
        with tempfile.TemporaryDirectory() as local:
            pafs.copy_files(source, local, source_filesystem=self.journal.fs)
            self.client.log_artifacts(self.run_id, local)
            self._log_model(Path(local))

    def _log_model(self, artifacts: Path) -> None:
        """The trained model (``model/``, if the family saved one) as an MLflow logged model."""
        from . import mlflow_model

        model_dir = artifacts / "model"
        if not (model_dir / "config.json").is_file() or self.run_record is None:
            return
        tags = {k: v for k, v in self.run_record["tags"].items() if not k.startswith("mlflow.")}
        try:
            mlflow_model.log_model(
                self.client, self.run_id, self.run_record["experiment_id"], model_dir, tags
            )
        except mlflow_model.PackagingError as err:  # the run keeps model/ all the same
            log.warning("could not log the model of run %s to MLflow: %s", self.run_id, err)


def trial_folders(fs: pafs.FileSystem, experiment: str) -> list[str]:
    """Trial folders of a Ray experiment folder that hold a journal."""
    selector = pafs.FileSelector(experiment, recursive=False, allow_not_found=True)
    folders = [i.path for i in fs.get_file_info(selector) if i.type == pafs.FileType.Directory]
    return sorted(f for f in folders if Journal(fs, f).exists)


def sync_experiment(uri: str, fs: pafs.FileSystem, experiment: str) -> tuple[int, int, int]:
    """Replay every trial journal of a launch: (trials, records sent now, trials still failing)."""
    trials = sent = failing = 0
    for folder in trial_folders(fs, experiment):
        journal = Journal(fs, folder)
        before = journal.sent
        ok = Sender(uri, journal).flush()
        trials += 1
        sent += Journal(fs, folder).sent - before
        failing += not ok
    return trials, sent, failing


@dataclass(frozen=True)
class TrialRecord:
    """What a trial's journal says of it (one reading for status, summaries and the search)."""

    run: dict[str, Any] | None  # its last run record: tags, params and, if sampled, its point
    status: str  # ``end_status`` of its last end record, or RUNNING without one
    reason: str  # that end's reason
    step: int | None  # of its last metrics record
    value: float | None  # the last value it reported of the metric asked for, if any
    cause: str = ""  # why it did not finish (``study.causes``), from its end's tags


def read_trial(journal: Journal, metric: str | None = None) -> TrialRecord:
    records = journal.records()
    runs = [r for r in records if r["op"] == "run"]
    ends = [r for r in records if r["op"] == "end"]
    reports = [r for r in records if r["op"] == "metrics"]
    values = [r["metrics"][metric] for r in reports if metric in r["metrics"]] if metric else []
    return TrialRecord(
        run=runs[-1] if runs else None,
        status=end_status(ends[-1]) if ends else "RUNNING",
        reason=ends[-1].get("reason", "") if ends else "",
        cause=end_cause(ends[-1]) if ends else "",
        step=int(reports[-1]["step"]) if reports else None,
        value=float(values[-1]) if values else None,
    )


def launch_ends(fs: pafs.FileSystem, experiment: str) -> tuple[dict[str, int], dict[str, int]]:
    """How many trials of a launch ended in each status, and, of those that did not finish, how
    many by cause (``study.causes``): one reading of each journal's last end record."""
    trials = [read_trial(Journal(fs, f)) for f in trial_folders(fs, experiment)]
    statuses = dict(Counter(t.status for t in trials))
    ended = dict(Counter(t.cause for t in trials if t.status not in ("FINISHED", "RUNNING")))
    return statuses, ended


def end_cause(record: dict[str, Any]) -> str:
    """The cause an end record names; ends journaled before causes were: read from their status."""
    tags = record.get("tags") or {}
    if tags.get(causes.TAG):
        return str(tags[causes.TAG])
    if tags.get("stopped"):
        return causes.STOPPED
    return "" if record["status"] == "FINISHED" else causes.ERROR


def end_status(record: dict[str, Any]) -> str:
    """A trial's end as ``study status`` counts it: STOPPED (by the scheduler) apart from KILLED."""
    return "STOPPED" if (record.get("tags") or {}).get("stopped") else record["status"]
