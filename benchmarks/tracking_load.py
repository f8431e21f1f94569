"""How many trials can log to one MLflow tracking server at once: SQLite behind it, or PostgreSQL?

For each store and each number N of writers, a fresh store and a fresh real ``mlflow server`` on
127.0.0.1 (``--workers 4``, MLflow's default and what the cluster's head runs; ``--serve-artifacts``
into a temporary folder, as the head proxies to S3), then N writer processes started together. Each
writer is one trial's tracking, through the project's own path and nothing else: a ``Journal`` in
a folder of its own and a ``Sender`` sending beside it on its thread, with the trials' fail-fast
HTTP settings (``tracking.FAIL_FAST``: no MLflow retries, a 10 s timeout; the sender retries
with back-off itself). What it journals, as ``RayContext`` does:

- the run record (``tracking.run_record``: tags and 34 params), then ``Sender.start``;
- a metrics record per epoch, ``--epochs`` of them (100), of 10 metrics each, ``notify`` after each;
- the final metrics (50 values) at the last epoch's step, as ``trainables.core.loop`` reports them;
- as ``RayContext.finish``: stop the thread, copy 3 artifact files of 50 KB each to the journal's
  folder (``Journal.copy_artifacts``) and journal them, journal the end, then
  ``flush_with_backoff`` with the trials' budget (120 s).

Writers report as fast as the sender takes their records (``--epoch-s 0``, the default: a flood,
each writer keeping one request in flight, so N is the server's concurrency) or one epoch every
``--epoch-s`` seconds. Writers are forked from a server process that imported the tracking stack
once (multiprocessing's ``forkserver``, preloaded): a writer then costs tens of MB, where a spawned
one imports MLflow, pandas and pyarrow itself (about 165 MB, 2 s of CPU). Nothing here imports
torch or Ray.

Printed per store and N:

- records/s: journal records whose MLflow calls returned (a run, an epoch's metrics, the finals,
  the artifacts, an end: N x (epochs + 4) in all) per second of wall (from the start signal to the
  last writer's end); calls/s: HTTP requests the writers made (each ``log_batch``, the run's
  search/create/params, each artifact upload...) per second.
- record latency p50/p95: from a writer calling ``Journal.append`` to its sender's MLflow call(s)
  for that record returning. In a flood it includes the wait behind the writer's own earlier
  records; paced (``--epoch-s``), it is what a report waits to be in MLflow.
- call latency p50/p95: each HTTP request's round trip, as the writer saw it.
- errors: exceptions the senders saw (each aborts a flush, retried after a back-off), by kind:
  timeout (no answer within the trials' 10 s), pool (the server's database connection pool had
  none free for 30 s), locked ("database is locked"), telemetry (MLflow's client-side telemetry
  thread), other; HTTP 4xx/5xx: error responses the writers got; "log locked": the server log's
  "database is locked" lines.
- unsent: records still unsent when a writer's last flush gave up (``flush_with_backoff`` for
  the trials' 120 s: a trial leaves them in its journal for ``study sync``); lost: what the store
  lacks once the server has worked through what it was sent, counted through ``MlflowClient``,
  not from the writers' own accounts: runs absent, params absent, (metric, epoch) points absent
  from each of the 10 metrics' histories, final metrics absent, artifacts absent or of another
  size, runs not FINISHED; then, if any, the journals are replayed as ``study sync`` does
  (``journal.sync_experiment``) and the store counted again: lost for good. Duplicates (a
  second run for one trial, a point twice) are printed too. Goal: 0.
- CPU ms per record: CPU time the server used (its process group: workers, job runners) plus,
  for PostgreSQL, the database's own processes, from the start signal to the last writer's end,
  less what they use at rest over as long (measured for 5 s before the start, once the server
  has settled: MLflow's job runners import for a minute after it answers), per record sent;
  and the writers' own (journal writes, the sender, the HTTP client). Unlike
  wall time, the machine's other work hardly changes it: 1000 / (server CPU ms per record) is
  about what one free core serves per second.
- memory: the writers' summed PSS at its peak (sampled every 2 s) and the machine's available
  memory at its lowest; load: the machine's load average meanwhile.

Judged: the goal is 128 writers on PostgreSQL with zero errors and zero losses (nothing unsent or
lost, before or after a sync). SQLite's breaking
point is the smallest N with errors, unsent or lost records, or a p95 call latency over
``LATENCY_BOUND_S`` (1 s: slower than that, a trial that reports every second falls behind); a
latency the PostgreSQL server crosses at the same N is the machine's (its shared cores), not the
store's, and is printed as such.

Run: python benchmarks/tracking_load.py            (16, 64, 128 writers x 100 epochs, both stores)
     python benchmarks/tracking_load.py --quick    (4 and 16 writers x 20 epochs)
Options: --writers 16 64 128, --epochs 100, --backends sqlite postgresql, --epoch-s 0,
--server-workers 4, --server-pool (MLflow's connections per server worker), --json FILE (the
rows, written after each point), --workdir DIR (keep stores, logs, journals). The exit status is
0 either way (a benchmark, not a test).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import multiprocessing
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import requests
from local_servers import PG_BIN, Postgres, mlflow_server
from mlflow.tracking import MlflowClient

from study import tracking
from study.journal import Journal, Sender, sync_experiment

STUDY = "tracking_load"
FAMILY = "load"
DATASET = {"name": "dsprites", "split_seed": 0}
# Ten metrics per epoch, named as families name them.
METRIC_NAMES = (
    "train/loss", "train/reconstruction", "train/kl", "train/tc", "val/loss",
    "val/reconstruction", "val/kl", "val/rmse", "lr", "epoch",
)  # fmt: skip
# Fifty final metrics: scores and the test split's losses, as a multi-metric study ends.
FINAL_NAMES = tuple(
    f"{score}{suffix}"
    for score in ("mig", "sap", "dci_disentanglement", "dci_completeness", "dci_informativeness",
                  "modularity", "explicitness", "factor_vae", "beta_vae", "irs")
    for suffix in ("", "_sampled", "_train", "_std", "_rank")
)  # fmt: skip
ARTIFACT_FILES = {"codes.npz": 50_000, "umap.png": 50_000, "dci_importance.npy": 50_000}
SERVER_WORKERS = 4  # MLflow's default, and what cluster.yaml's head runs
LATENCY_BOUND_S = 1.0  # p95 per HTTP call: slower, a trial reporting every second falls behind
BUDGET_S = 120.0  # a trial's end waits this long for what is unsent (STUDY_TRACKING_RETRY_S)
SETUP_TIMEOUT_S = 600.0
PATIENCE_S = 900.0  # the benchmark's own calls wait this long for a server still busy
TRIALS = "trials"  # the writers' journals, one folder each, as a launch's trial folders
IDLE_S = 5.0  # the servers' CPU at rest is measured over this long, writers ready
SETTLED = 0.1  # CPU s/s: a server at rest (MLflow's job runners import for a minute after start)
SETTLE_TIMEOUT_S = 300.0
PRELOAD = ["study.journal", "study.tracking", "mlflow.tracking", "mlflow.entities", "requests",
           "pyarrow.fs"]  # fmt: skip


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def trial_params(index: int, epochs: int) -> dict[str, Any]:
    """A family config's worth of params (34 once flattened with the dataset's)."""
    return {
        "variant": "beta_vae", "seed": index, "epochs": epochs, "batch_size": 64, "lr": 1e-3,
        "weight_decay": 0.0, "latent_dim": 10, "beta": 4.0, "gamma": 10.0, "capacity": 25.0,
        "anneal_steps": 100_000, "encoder": {"channels": [32, 32, 64, 64], "hidden": 256},
        "decoder": {"channels": [64, 64, 32, 32], "hidden": 256}, "activation": "relu",
        "optimizer": "adam", "betas": [0.9, 0.999], "eps": 1e-8, "grad_clip": 0.0,
        "metric_train_points": 10_000, "metric_test_points": 5_000, "metric_mode": "reference",
        "umap_points": 2_000, "pictures": True, "checkpoint_every": 10, "n_tasks": 2,
        "task_weights": [1.0, 1.0], "dropout": 0.0, "batch_norm": False,
        "subset": "", "split": [0.8, 0.2],
    }  # fmt: skip


def _info(uri: str, experiment_id: str, parent_run_id: str) -> tracking.TrackingInfo:
    return tracking.TrackingInfo(
        uri=uri, experiment_id=experiment_id, parent_run_id=parent_run_id, study=STUDY,
        family=FAMILY, dataset=DATASET,
    )  # fmt: skip


# -- a writer: one trial's tracking --------------------------------------------------------------
class _Stats:
    """What one writer saw; written to its result file at the end."""

    def __init__(self) -> None:
        self.appended: dict[int, float] = {}  # id(record) -> when the trial appended it
        self.record_s: list[float] = []  # append -> its MLflow call(s) returned
        self.report_s: list[float] = []  # the trial's own cost per report: append + notify
        self.call_s: list[float] = []  # each HTTP request's round trip
        self.http_status: Counter[str] = Counter()  # responses of status >= 400
        self.errors: Counter[str] = Counter()  # exceptions the sender saw, by kind
        self.messages: list[str] = []  # the first few, to say what failed
        self.warnings = 0  # the sender's "not sent yet; will retry" (failed flushes)

    def saw(self, err: BaseException) -> None:
        text = f"{type(err).__name__}: {err}"
        self.errors[_kind(text)] += 1
        if len(self.messages) < 5:
            self.messages.append(text.splitlines()[0][:300])


def _kind(text: str) -> str:
    lowered = text.lower()
    if "database is locked" in lowered:
        return "locked"
    if "queuepool limit" in lowered:  # the server's SQLAlchemy pool: no connection for 30 s
        return "pool"
    if "_mlflow_telemetry_session_id" in lowered:  # MLflow's telemetry thread, in the client
        return "telemetry"
    if "timeout" in lowered or "timed out" in lowered:
        return "timeout"
    if "connectionerror" in lowered or "connection refused" in lowered or "aborted" in lowered:
        return "connection"
    return "other"


class _TimedSender(Sender):
    """The project's Sender, timing each record from its append to its MLflow call(s) returning
    and counting the exceptions it saw (it retries them; the class changes nothing else)."""

    def __init__(self, uri: str, journal: Journal, stats: _Stats):
        super().__init__(uri, journal)
        self.stats = stats

    def _resolve(self, record: dict[str, Any]) -> None:
        try:
            super()._resolve(record)
        except Exception as err:
            self.stats.saw(err)
            raise

    def _apply(self, record: dict[str, Any]) -> None:
        try:
            super()._apply(record)
        except Exception as err:
            self.stats.saw(err)
            raise
        appended = self.stats.appended.pop(id(record), None)
        if appended is not None:
            self.stats.record_s.append(time.perf_counter() - appended)


def _count_http(stats: _Stats) -> None:
    """Time every HTTP request of this process (MLflow's REST calls and artifact uploads all go
    through ``requests.Session.request``) and count the error statuses."""
    original = requests.Session.request

    def request(session: requests.Session, method: str, url: str, *args: Any, **kwargs: Any):
        started = time.perf_counter()
        try:
            response = original(session, method, url, *args, **kwargs)
        finally:
            stats.call_s.append(time.perf_counter() - started)
        if response.status_code >= 400:
            stats.http_status[str(response.status_code)] += 1
        return response

    requests.Session.request = request  # type: ignore[method-assign]


class _CountWarnings(logging.Handler):
    def __init__(self, stats: _Stats):
        super().__init__(logging.WARNING)
        self.stats = stats

    def emit(self, record: logging.LogRecord) -> None:
        self.stats.warnings += 1


def _own_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _writer(spec: dict[str, Any], ready: Any, go: Any) -> None:
    """One trial's tracking (the module's docstring says what); its result as JSON in
    ``spec["out"]``."""
    out = Path(spec["out"])
    try:
        result = _write(spec, ready, go)
    except BaseException:
        result = {"index": spec["index"], "crashed": traceback.format_exc()[-3000:]}
    out.write_text(json.dumps(result))


def _write(spec: dict[str, Any], ready: Any, go: Any) -> dict[str, Any]:
    os.environ.update(tracking.FAIL_FAST)  # as ray_entry sets them for every trial
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"  # no "View run" line each
    stats = _Stats()
    _count_http(stats)
    quiet = logging.getLogger("study.journal")  # counted, not printed 128 times
    quiet.addHandler(_CountWarnings(stats))
    quiet.propagate = False
    folder = Path(spec["folder"])
    local = folder / "local_artifacts"  # what a trial writes in its working folder
    local.mkdir(parents=True, exist_ok=True)
    for name, size in ARTIFACT_FILES.items():
        (local / name).write_bytes(os.urandom(size))
    journal = Journal(pafs.LocalFileSystem(), spec["journal"])
    sender = _TimedSender(spec["uri"], journal, stats)
    info = _info(spec["uri"], spec["experiment_id"], spec["parent_run_id"])
    epochs = spec["epochs"]
    run = tracking.run_record(
        info, spec["trial_id"], spec["trial_id"], trial_params(spec["index"], epochs)
    )

    def append(record: dict[str, Any]) -> None:
        started = time.perf_counter()
        stats.appended[id(record)] = started
        journal.append(record)
        sender.notify()
        stats.report_s.append(time.perf_counter() - started)

    with ready.get_lock():
        ready.value += 1
    go.wait()
    started, cpu = time.time(), _own_cpu_s()
    stats.appended[id(run)] = time.perf_counter()
    journal.append(run)  # RayContext: append, start the thread, notify
    sender.start()
    sender.notify()
    next_epoch = time.monotonic()
    for step in range(1, epochs + 1):
        if spec["epoch_s"]:
            next_epoch += spec["epoch_s"]
            time.sleep(max(0.0, next_epoch - time.monotonic()))
        metrics = {name: 1.0 / (step + i + 1) for i, name in enumerate(METRIC_NAMES)}
        append({"op": "metrics", "step": step, "metrics": metrics,
                "time": int(time.time() * 1000)})  # fmt: skip
    finals = {name: 0.5 + i / 1000 for i, name in enumerate(FINAL_NAMES)}
    append({"op": "metrics", "step": epochs, "metrics": finals, "time": int(time.time() * 1000)})
    # RayContext.finish: stop the thread, journal the artifacts and the end, send with back-off.
    sender.stop()
    record = {"op": "artifacts", "path": journal.copy_artifacts(local)}
    stats.appended[id(record)] = time.perf_counter()
    journal.append(record)
    record = {"op": "end", "status": "FINISHED", "reason": ""}
    stats.appended[id(record)] = time.perf_counter()
    journal.append(record)
    all_sent = sender.flush_with_backoff(spec["budget_s"])
    ended, cpu = time.time(), _own_cpu_s() - cpu
    return {
        "index": spec["index"], "started": started, "ended": ended, "all_sent": all_sent,
        "records": len(journal.records()), "sent": journal.sent,
        "record_s": stats.record_s, "report_s": stats.report_s, "call_s": stats.call_s,
        "http_status": dict(stats.http_status), "errors": dict(stats.errors),
        "messages": stats.messages, "warnings": stats.warnings,
        "maxrss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "cpu_s": cpu,
    }  # fmt: skip


# -- the parent: start writers together, then count what reached the store -----------------------
_TICK = os.sysconf("SC_CLK_TCK")


def _group_cpu_s(pgid: int) -> float:
    """CPU seconds used by the processes of a process group (and their reaped children): a
    server's cost, which the machine's other work does not inflate as it does wall time."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rpartition(")")[2].split()
        except OSError:  # ended meanwhile
            continue
        if int(fields[2]) == pgid:  # state, ppid, pgrp, ..., utime, stime, cutime, cstime
            total += sum(int(f) for f in fields[11:15])
    return total / _TICK


def _available_mb() -> float:
    with open("/proc/meminfo") as handle:
        for line in handle:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _pss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/smaps_rollup") as handle:
            for line in handle:
                if line.startswith("Pss:"):
                    return int(line.split()[1]) / 1024
    except OSError:  # ended
        pass
    return 0.0


class _Memory(threading.Thread):
    """The writers' summed PSS at its peak, the machine's available memory at its lowest and its
    load average (1 minute's) on average."""

    def __init__(self, pids: list[int], every_s: float = 2.0):
        super().__init__(daemon=True)
        self.pids, self.every_s = pids, every_s
        self.peak_pss_mb, self.min_available_mb = 0.0, _available_mb()
        self.loads: list[float] = []
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.wait(self.every_s):
            self.peak_pss_mb = max(self.peak_pss_mb, sum(_pss_mb(p) for p in self.pids))
            self.min_available_mb = min(self.min_available_mb, _available_mb())
            self.loads.append(os.getloadavg()[0])

    def stop(self) -> None:
        self._stop_event.set()
        self.join()


_STARTED: set[str] = set()


def _settle(
    groups: dict[str, int], what: str = "servers at rest"
) -> tuple[dict[str, float], dict[str, float]]:
    """Wait until the servers are at rest: ``mlflow server`` answers a minute before the job
    runners it starts beside its workers have finished importing (half a core here), which would
    compete with the writers. Returns their CPU s/s at rest and their CPU seconds now."""
    if not groups:
        return {}, {}
    started = time.monotonic()
    before = {name: _group_cpu_s(group) for name, group in groups.items()}
    while True:
        time.sleep(IDLE_S)
        now = {name: _group_cpu_s(group) for name, group in groups.items()}
        rate = {name: (now[name] - before[name]) / IDLE_S for name in groups}
        waited = time.monotonic() - started
        if sum(rate.values()) < SETTLED or waited > SETTLE_TIMEOUT_S:
            _log(f"{what} after {waited:.0f} s ({sum(rate.values()):.2f} CPU s/s)")
            return rate, now
        before = now


def _context(start_method: str) -> Any:
    context = multiprocessing.get_context(start_method)
    if start_method == "forkserver" and start_method not in _STARTED:
        context.set_forkserver_preload(PRELOAD)  # only before the fork server first starts
        _STARTED.add(start_method)
    return context


def _patiently(action: Any, what: str) -> Any:
    """The benchmark's own MLflow calls (not measured): retried with back-off while a server is
    still working through what writers gave up on (a busy server's pool refuses for a while)."""
    deadline, wait = time.monotonic() + PATIENCE_S, 2.0
    while True:
        try:
            return action()
        except Exception as err:
            if time.monotonic() + wait > deadline:
                raise
            _log(f"{what}: {str(err).splitlines()[0][:120]}; again in {wait:.0f} s")
            time.sleep(wait)
            wait = min(2 * wait, 30.0)


def _warm_up(uri: str, experiment_id: str, requests_at_once: int = 16, rounds: int = 3) -> None:
    """Every server worker past its first request (each opens its store then), untimed."""
    client = MlflowClient(uri)

    def search() -> None:
        client.search_runs([experiment_id], max_results=1)

    for _ in range(rounds):
        threads = [threading.Thread(target=search) for _ in range(requests_at_once)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()


def run_point(
    uri: str, writers: int, epochs: int, folder: Path, epoch_s: float = 0.0,
    budget_s: float = BUDGET_S, start_method: str = "forkserver",
    cpu_groups: dict[str, int] | None = None,
) -> dict[str, Any]:  # fmt: skip
    """N writers against the tracking server at ``uri``, started together; their stats, and
    ``expected``: what ``count_lost`` checks the store for. ``cpu_groups``: name -> process
    group whose CPU seconds from the start to the last writer's end are returned in ``cpu_s``
    (by default the server's, when ``uri`` says its process)."""
    if cpu_groups is None:
        pid = getattr(uri, "pid", None)
        cpu_groups = {"server": os.getpgid(pid)} if pid else {}
    folder.mkdir(parents=True, exist_ok=True)
    experiment_id, parent_run_id = _patiently(
        lambda: tracking.start_parent_run(uri, STUDY, FAMILY, "", {"benchmark": "tracking_load"}),
        "parent run",
    )
    _patiently(lambda: _warm_up(uri, experiment_id), "warm-up")
    token = uuid.uuid4().hex[:8]
    specs = [
        {"index": i, "uri": uri, "experiment_id": experiment_id, "parent_run_id": parent_run_id,
         "trial_id": f"load_{token}_{i:04d}", "epochs": epochs, "epoch_s": epoch_s,
         "budget_s": budget_s, "folder": str(folder / f"w{i:04d}"),
         "journal": str(folder / TRIALS / f"w{i:04d}"),  # as Tune's trial folders: `study sync`
         "out": str(folder / f"w{i:04d}.json")}
        for i in range(writers)
    ]  # fmt: skip
    context = _context(start_method)
    ready, go = context.Value("i", 0), context.Event()
    processes = [
        context.Process(target=_writer, args=(spec, ready, go), daemon=True) for spec in specs
    ]
    setup = time.perf_counter()
    available_before = _available_mb()
    for process in processes:
        process.start()
    memory = _Memory([p.pid for p in processes])
    memory.start()
    try:
        deadline = time.monotonic() + SETUP_TIMEOUT_S
        while ready.value < writers:
            dead = [p for p in processes if p.exitcode is not None]
            if dead or time.monotonic() > deadline:
                out = Path(specs[processes.index(dead[0])]["out"]) if dead else None
                detail = out.read_text()[-2000:] if out and out.exists() else ""
                raise RuntimeError(f"{ready.value}/{writers} writers got ready: {detail}")
            time.sleep(0.05)
        _log(f"{writers} writers ready after {time.perf_counter() - setup:.1f} s; go")
        idle, cpu = _settle(cpu_groups)
        released = time.time()
        go.set()
        finish_by = time.monotonic() + epochs * epoch_s + budget_s + 3600  # then: hung
        for process in processes:
            process.join(max(0.0, finish_by - time.monotonic()))
        cpu = {name: _group_cpu_s(group) - cpu[name] for name, group in cpu_groups.items()}
    finally:
        hung = [p for p in processes if p.is_alive()]
        for process in hung:
            process.terminate()
        for process in processes:
            process.join()
        memory.stop()
    results = []
    for spec in specs:
        out = Path(spec["out"])
        results.append(json.loads(out.read_text()) if out.exists() else {"index": spec["index"],
                       "crashed": "no result (killed)"})  # fmt: skip
    _settle(cpu_groups, "servers done with what was sent")  # what writers gave up on, too
    _patiently(lambda: tracking.end_run(uri, parent_run_id, "FINISHED"), "end of the parent run")
    expected = {
        "experiment_id": experiment_id, "parent_run_id": parent_run_id, "epochs": epochs,
        "trial_ids": [s["trial_id"] for s in specs],
        "params": sorted(tracking.run_record(_info(uri, experiment_id, parent_run_id), "x", "x",
                                             trial_params(0, epochs))["params"]),
    }  # fmt: skip
    return {
        "writers": writers, "epochs": epochs, "released": released, "results": results,
        "hung": len(hung), "expected": expected, "peak_pss_mb": memory.peak_pss_mb,
        "cpu_s": cpu, "idle_cpu": idle,
        "min_available_mb": memory.min_available_mb, "available_before_mb": available_before,
        "load": sum(memory.loads) / len(memory.loads) if memory.loads else os.getloadavg()[0],
    }  # fmt: skip


def count_lost(uri: str, expected: dict[str, Any]) -> dict[str, Any]:
    """What the store lacks of what the writers were to log, read back through MlflowClient:
    ``lost`` by kind (runs, params, metric points, finals, artifacts, ends), their total, and
    ``duplicated`` (second runs of a trial, a metric point twice)."""
    client = MlflowClient(uri)
    epochs = expected["epochs"]
    runs = client.search_runs(
        [expected["experiment_id"]],
        filter_string=f"tags.mlflow.parentRunId = '{expected['parent_run_id']}'",
        max_results=50_000,
    )
    by_trial: dict[str, list[Any]] = {}
    for run in runs:
        by_trial.setdefault(run.data.tags.get("trial_id", ""), []).append(run)
    lost: Counter[str] = Counter()
    duplicated: Counter[str] = Counter()
    for trial_id in expected["trial_ids"]:
        found = by_trial.get(trial_id, [])
        if not found:
            lost["runs"] += 1
            lost["params"] += len(expected["params"])
            lost["metric points"] += epochs * len(METRIC_NAMES)
            lost["finals"] += len(FINAL_NAMES)
            lost["artifacts"] += len(ARTIFACT_FILES)
            lost["ends"] += 1
            continue
        duplicated["runs"] += len(found) - 1  # a create_run retried after it timed out
        run = max(found, key=lambda r: len(r.data.metrics))  # the one the sender logged to
        lost["params"] += len(set(expected["params"]) - set(run.data.params))
        lost["ends"] += run.info.status != "FINISHED"
        for key in METRIC_NAMES:
            steps = [m.step for m in client.get_metric_history(run.info.run_id, key)]
            lost["metric points"] += len(set(range(1, epochs + 1)) - set(steps))
            duplicated["metric points"] += len(steps) - len(set(steps))
        lost["finals"] += len([k for k in FINAL_NAMES if k not in run.data.metrics])
        sizes = {a.path: a.file_size for a in client.list_artifacts(run.info.run_id)}
        lost["artifacts"] += len([n for n, s in ARTIFACT_FILES.items() if sizes.get(n) != s])
    lost = Counter({k: v for k, v in lost.items() if v})
    return {
        "lost": dict(lost), "total": sum(lost.values()),
        "duplicated": {k: v for k, v in duplicated.items() if v},
    }  # fmt: skip


def _p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def summarize(point: dict[str, Any], counted: dict[str, Any], server_log: str) -> dict[str, Any]:
    """One row: throughput, latencies, errors, unsent, lost, memory."""
    results = point["results"]
    ok = [r for r in results if "crashed" not in r]
    wall = max((r["ended"] for r in ok), default=point["released"]) - point["released"]
    record_s = [x for r in ok for x in r["record_s"]]
    call_s = [x for r in ok for x in r["call_s"]]
    errors: Counter[str] = Counter()
    status: Counter[str] = Counter()
    for r in ok:
        errors.update(r["errors"])
        status.update(r["http_status"])
    messages = list(dict.fromkeys(m[:200] for r in ok for m in r["messages"]))  # distinct
    sent = sum(r["sent"] for r in ok)
    per_record = 1e3 / sent if sent else float("nan")
    return {
        "writers": point["writers"], "epochs": point["epochs"], "wall_s": wall,
        "records_per_s": sent / wall if wall > 0 else float("nan"),
        "calls_per_s": len(call_s) / wall if wall > 0 else float("nan"),
        "record_p50": _p(record_s, 0.5), "record_p95": _p(record_s, 0.95),
        "call_p50": _p(call_s, 0.5), "call_p95": _p(call_s, 0.95),
        "report_p95": _p([x for r in ok for x in r["report_s"]], 0.95),
        "errors": sum(errors.values()), "error_kinds": dict(errors),
        "http_5xx": sum(v for k, v in status.items() if k.startswith("5")),
        "http_4xx": sum(v for k, v in status.items() if k.startswith("4")),
        "http_status": dict(status),
        "server_locked": server_log.count("database is locked"),
        "server_5xx": len(re.findall(r'HTTP/1\.1" 5\d\d', server_log)),  # its access log
        "unsent": sum(r["records"] - r["sent"] for r in ok),
        "crashed": len(results) - len(ok) + point["hung"],
        "crashes": [r["crashed"][-500:] for r in results if "crashed" in r][:2],
        "lost": counted["total"], "lost_kinds": counted["lost"],
        "duplicated": sum(counted["duplicated"].values()), "dup_kinds": counted["duplicated"],
        "peak_pss_mb": point["peak_pss_mb"],
        "max_writer_rss_mb": max((r["maxrss_mb"] for r in ok), default=float("nan")),
        "memory_drop_mb": point["available_before_mb"] - point["min_available_mb"],
        "min_available_mb": point["min_available_mb"], "messages": messages[:3],
        "load": point["load"],
        # CPU ms per record sent: the server's (and the database's, PostgreSQL's own processes;
        # SQLite works inside the server) and the writers' (journal, sender, HTTP client).
        # Less what they use at rest over as long (MLflow's job runners poll, PostgreSQL's
        # background writers run): the CPU the records cost.
        "server_cpu_ms": (sum(point["cpu_s"].values()) - sum(point["idle_cpu"].values()) * wall)
        * per_record,
        "idle_cpu": point["idle_cpu"],
        "cpu_s": point["cpu_s"],
        "writer_cpu_ms": sum(r["cpu_s"] for r in ok) * per_record,
    }  # fmt: skip


# -- stores and the sweep ------------------------------------------------------------------------
@contextlib.contextmanager
def _store(backend: str, folder: Path, postgres: Postgres | None) -> Iterator[str]:
    """A fresh store, its schema created (untimed, before the server's workers start on it)."""
    if backend == "sqlite":
        uri = f"sqlite:///{folder / 'mlflow.db'}"
    else:
        assert postgres is not None
        uri = postgres.create_database(folder.name)
    tracking.ensure_store(uri)
    yield uri


def _sync(uri: str, trials: Path, expected: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    """Replay the writers' journals as ``study sync`` does (``journal.sync_experiment``: one
    trial after another, fail-fast), until none fails; how many records it sent, and the store
    counted again: what is lost for good."""
    sent, deadline = 0, time.monotonic() + PATIENCE_S
    with tracking.fail_fast():
        while True:
            _, now, failing = sync_experiment(uri, pafs.LocalFileSystem(), str(trials))
            sent += now
            if not failing or time.monotonic() > deadline:
                break
            _log(f"sync: {failing} journals not all sent; again")
            time.sleep(10)
    _log(f"sync sent {sent} records")
    return sent, _patiently(lambda: count_lost(uri, expected), "counting after the sync")


def measure(
    backend: str, writers: int, epochs: int, folder: Path, postgres: Postgres | None = None,
    server_workers: int = SERVER_WORKERS, epoch_s: float = 0.0, budget_s: float = BUDGET_S,
    start_method: str = "forkserver",
) -> dict[str, Any]:  # fmt: skip
    """One point: a fresh store and server, N writers, the store counted afterwards."""
    folder.mkdir(parents=True, exist_ok=True)
    with (
        _store(backend, folder, postgres) as store,
        mlflow_server(folder, store, server_workers, artifacts=folder / "artifacts") as uri,
    ):
        groups = {"server": os.getpgid(uri.pid)}
        if backend == "postgresql":
            assert postgres is not None
            groups["database"] = os.getpgid(postgres.pid)
        point = run_point(uri, writers, epochs, folder / "writers", epoch_s, budget_s,
                          start_method, groups)  # fmt: skip
        counted = _patiently(lambda: count_lost(uri, point["expected"]), "counting")
        synced, after = 0, counted
        if counted["total"] or any(r.get("sent") != r.get("records") for r in point["results"]):
            synced, after = _sync(uri, folder / "writers" / TRIALS, point["expected"])
    row = summarize(point, counted, (folder / "server.log").read_text(errors="replace"))
    row.update(backend=backend, synced=synced, lost_after_sync=after["total"],
               lost_after_sync_kinds=after["lost"])  # fmt: skip
    _log(
        f"{backend} N={writers}: {row['wall_s']:.1f} s, {row['records_per_s']:.0f} records/s, "
        f"call p95 {1e3 * row['call_p95']:.0f} ms, server CPU {row['server_cpu_ms']:.0f} ms/record "
        f"{ {k: round(v, 1) for k, v in row['cpu_s'].items()} } s (at rest "
        f"{ {k: round(v, 2) for k, v in row['idle_cpu'].items()} } s/s), "
        f"{row['errors']} errors {row['error_kinds']}, "
        f"{row['unsent']} unsent, {row['lost']} lost {row['lost_kinds']} "
        f"({row['synced']} records sent by a sync, then {row['lost_after_sync']} lost), "
        f"{row['duplicated']} duplicated {row['dup_kinds']}"
        + (f"; first error: {row['messages'][0]}" if row["messages"] else "")
        + (f"; crashed: {row['crashes'][0]}" if row["crashes"] else "")
    )
    return row


def _failures(row: dict[str, Any]) -> list[str]:
    """Errors, 5xx, crashed writers, unsent or lost records: what the goal allows none of."""
    why = []
    if row.get("failed"):
        return [f"the point failed: {row['failed']}"]
    if row["errors"] or row["http_5xx"] or row["server_5xx"] or row["crashed"]:
        why.append(f"{row['errors']} errors ({row['error_kinds'].get('locked', 0)} database is "
                   f"locked), {max(row['http_5xx'], row['server_5xx'])} HTTP 5xx"
                   + (f", {row['crashed']} writers crashed" if row["crashed"] else ""))  # fmt: skip
    if row["unsent"] or row["lost"] or row["lost_after_sync"]:
        why.append(f"{row['unsent']} unsent, {row['lost']} lost ({row['lost_after_sync']} after "
                   "a sync)")  # fmt: skip
    return why


def _slow(row: dict[str, Any]) -> bool:
    return row.get("call_p95", 0.0) > LATENCY_BOUND_S


def _ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b and b == b and a == a else "n/a"


def print_tables(rows: list[dict[str, Any]], epochs: int) -> None:
    print(
        f"\nThroughput and latency ({epochs} epochs per writer; p50/p95; PSS: the writers' "
        "summed, at its peak; CPU ms/rec: the server's (and PostgreSQL's) / the writers' per "
        "record; avail: the machine's available memory at its lowest; load: its load "
        f"average meanwhile, on {os.cpu_count()} cores shared with other work):"
    )
    print(f"{'store':<11}{'N':>4}{'wall s':>8}{'records/s':>10}{'calls/s':>8}{'record s':>13}"
          f"{'call ms':>13}{'report ms':>10}{'CPU ms/rec':>11}{'PSS MB':>8}{'avail GB':>9}"
          f"{'load':>6}")  # fmt: skip
    for r in rows:
        if r.get("failed"):
            print(f"{r['backend']:<11}{r['writers']:>4}  failed: {r['failed']}")
            continue
        record = f"{r['record_p50']:.2f}/{r['record_p95']:.2f}"
        call = f"{1e3 * r['call_p50']:.0f}/{1e3 * r['call_p95']:.0f}"
        cpu = f"{r['server_cpu_ms']:.0f}/{r['writer_cpu_ms']:.0f}"
        print(f"{r['backend']:<11}{r['writers']:>4}{r['wall_s']:>8.1f}{r['records_per_s']:>10.0f}"
              f"{r['calls_per_s']:>8.0f}{record:>13}{call:>13}{1e3 * r['report_p95']:>10.1f}"
              f"{cpu:>11}"
              f"{r['peak_pss_mb']:>8.0f}{r['min_available_mb'] / 1024:>9.1f}"
              f"{r['load']:>6.1f}")  # fmt: skip
    print(
        "\nErrors and losses (errors: exceptions the senders saw and retried; of them timeout: "
        "no answer in the trials' 10 s, pool: the server's database connection pool refused, "
        "locked: database is locked, telemetry: MLflow's client telemetry thread; 4xx/5xx: "
        "responses the writers got; log locked: the server log's 'database is locked'; unsent: "
        "left in journals when writers gave up; lost: absent from the store after the run, "
        "then after `study sync`'s replay of the journals; dup: second runs of a trial, points "
        "twice):"
    )
    print(f"{'store':<11}{'N':>4}{'errors':>7}{'timeout':>8}{'pool':>6}{'locked':>7}"
          f"{'telemetry':>10}{'4xx/5xx':>9}{'log locked':>11}{'unsent':>7}{'lost':>8}"
          f"{'after sync':>11}{'dup':>5}")  # fmt: skip
    for r in rows:
        if r.get("failed"):
            print(f"{r['backend']:<11}{r['writers']:>4}  failed: {r['failed']}")
            continue
        kinds = r["error_kinds"]
        http = f"{r['http_4xx']}/{r['http_5xx']}"
        print(f"{r['backend']:<11}{r['writers']:>4}{r['errors']:>7}{kinds.get('timeout', 0):>8}"
              f"{kinds.get('pool', 0):>6}{kinds.get('locked', 0):>7}"
              f"{kinds.get('telemetry', 0):>10}{http:>9}{r['server_locked']:>11}"
              f"{r['unsent']:>7}{r['lost']:>8}{r['lost_after_sync']:>11}"
              f"{r['duplicated']:>5}")  # fmt: skip
    sqlite = {r["writers"]: r for r in rows if r["backend"] == "sqlite"}
    postgres = {r["writers"]: r for r in rows if r["backend"] == "postgresql"}
    both = sorted(set(sqlite) & set(postgres))
    if both:
        print("\nPostgreSQL against SQLite, same N:")
        print(f"{'N':>4}{'records/s PG/SQLite':>21}{'call p95 SQLite/PG':>20}"
              f"{'record p95 SQLite/PG':>22}{'server CPU/rec SQLite/PG':>26}"
              f"{'errors SQLite / PG':>20}")  # fmt: skip
        for n in both:
            q, p = sqlite[n], postgres[n]
            if q.get("failed") or p.get("failed"):
                continue
            errors = f"{q['errors']} / {p['errors']}"
            print(f"{n:>4}{_ratio(p['records_per_s'], q['records_per_s']):>21}"
                  f"{_ratio(q['call_p95'], p['call_p95']):>20}"
                  f"{_ratio(q['record_p95'], p['record_p95']):>22}"
                  f"{_ratio(q['server_cpu_ms'], p['server_cpu_ms']):>26}{errors:>20}")  # fmt: skip
    print()
    if 128 in postgres:
        why = _failures(postgres[128])
        print("goal, 128 writers on PostgreSQL with zero errors and zero losses: "
              + ("met" if not why else f"NOT met ({'; '.join(why)})"))  # fmt: skip
    else:
        print("goal (128 writers on PostgreSQL): not measured in this run")
    for name, points in (("SQLite", sqlite), ("PostgreSQL", postgres)):
        if not points:
            continue
        failed = [n for n in sorted(points) if _failures(points[n])]
        slow = [n for n in sorted(points) if _slow(points[n])]
        top = max(points)
        print(f"{name}: errors or losses from N={failed[0]} ({'; '.join(_failures(points[failed[0]]))})"
              if failed else f"{name}: no errors, no losses up to N={top}")  # fmt: skip
        print(f"{name}: call p95 over {LATENCY_BOUND_S:g} s from N={slow[0]} "
              f"({1e3 * points[slow[0]].get('call_p95', 0):.0f} ms)"
              if slow else f"{name}: call p95 under {LATENCY_BOUND_S:g} s up to N={top}")  # fmt: skip
    if sqlite:
        broke = [n for n in sorted(sqlite) if _failures(sqlite[n]) or _slow(sqlite[n])]
        if not broke:
            print(f"SQLite's breaking point: not reached up to N={max(sqlite)}")
        else:
            n = broke[0]
            why = _failures(sqlite[n]) + (
                [f"call p95 {sqlite[n].get('call_p95', 0):.1f} s > {LATENCY_BOUND_S:g} s"]
                if _slow(sqlite[n]) else []
            )  # fmt: skip
            note = ""
            if not _failures(sqlite[n]) and n in postgres and _slow(postgres[n]):
                note = (
                    " (PostgreSQL's server is as slow at this N: the machine's limit, not SQLite's)"
                )
            print(f"SQLite's breaking point: N={n}: {'; '.join(why)}{note}")
    for r in rows:
        if r["lost"] or r["duplicated"]:
            print(f"  {r['backend']} N={r['writers']}: lost {r['lost_kinds']}, duplicated "
                  f"{r['dup_kinds']}")  # fmt: skip
        if r["messages"]:
            print(f"  {r['backend']} N={r['writers']} first errors: {' | '.join(r['messages'])}")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--writers", type=int, nargs="+", help="N (default 16 64 128; quick 4 16)")
    parser.add_argument("--epochs", type=int, help="metrics records per writer (100; quick 20)")
    parser.add_argument("--backends", nargs="+", choices=["sqlite", "postgresql"],
                        default=["sqlite", "postgresql"])  # fmt: skip
    parser.add_argument("--quick", action="store_true", help="4 and 16 writers x 20 epochs")
    parser.add_argument("--epoch-s", type=float, default=0.0,
                        help="seconds between a writer's epochs (0: as fast as sent)")  # fmt: skip
    parser.add_argument("--server-workers", type=int, default=SERVER_WORKERS)
    parser.add_argument("--budget-s", type=float, default=BUDGET_S,
                        help="a writer's end waits this long for what is unsent")  # fmt: skip
    parser.add_argument("--start-method", choices=["forkserver", "spawn"], default="forkserver")
    parser.add_argument("--server-pool", type=int,
                        help="the server's database connections per worker "
                        "(MLFLOW_SQLALCHEMYSTORE_POOL_SIZE; MLflow's default: 5, and 10 more "
                        "when busy)")  # fmt: skip
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument("--workdir", type=Path,
                        help="keep stores, server logs and journals here (default: a temporary "
                        "folder, removed)")  # fmt: skip
    args = parser.parse_args()
    os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] = "true"
    if args.server_pool:  # the servers started below inherit it
        os.environ["MLFLOW_SQLALCHEMYSTORE_POOL_SIZE"] = str(args.server_pool)
    ns = args.writers or ([4, 16] if args.quick else [16, 64, 128])
    epochs = args.epochs or (20 if args.quick else 100)
    if "postgresql" in args.backends and not (PG_BIN / "initdb").is_file():
        parser.error(f"no PostgreSQL at {PG_BIN} (install postgresql-15 or set DS_POSTGRES_BIN)")
    print(f"tracking load: N = {' / '.join(map(str, ns))} writers x {epochs} epochs (10 metrics "
          f"each), 50 finals, 3 x 50 KB artifacts; mlflow server --workers "
          f"{args.server_workers}{f' (pool {args.server_pool})' if args.server_pool else ''} on "
          f"{', '.join(args.backends)}; epoch every "
          f"{args.epoch_s:g} s{' (flood)' if not args.epoch_s else ''}; {os.cpu_count()} cores, "
          f"load average {os.getloadavg()[0]:.1f} (shared machine: noisy)", flush=True)  # fmt: skip
    # A kill (SIGTERM) ends the sweep as Ctrl-C does: servers, PostgreSQL and writers stopped.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    rows: list[dict[str, Any]] = []
    with contextlib.ExitStack() as stack:
        if args.workdir:
            tmp = args.workdir
            tmp.mkdir(parents=True, exist_ok=True)
        else:
            tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tracking_load_")))
        postgres = None
        if "postgresql" in args.backends:
            postgres = Postgres(durable=True)
            stack.callback(postgres.stop)
        # The stores take turns at each N: both see about the same load from the machine's other
        # work, which comes and goes.
        for n in ns:
            for backend in args.backends:
                _log(f"{backend}, {n} writers")
                try:
                    rows.append(measure(backend, n, epochs, tmp / f"{backend}_{n}", postgres,
                                        args.server_workers, args.epoch_s, args.budget_s,
                                        args.start_method))  # fmt: skip
                except Exception as err:  # the sweep goes on; the table says which failed
                    _log(f"{backend} N={n} failed: {traceback.format_exc()[-1500:]}")
                    failed = f"{type(err).__name__}: {str(err).splitlines()[0][:150]}"
                    rows.append({"backend": backend, "writers": n, "failed": failed})
                if args.json:  # after each point: a sweep cut short keeps what it measured
                    args.json.write_text(json.dumps(rows, indent=1))
    print_tables(rows, epochs)


if __name__ == "__main__":
    main()
