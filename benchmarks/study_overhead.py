"""What does running trials as a study cost beyond the trials' own compute, and what does tracking cost
per reported result?

Three measurements, on a local Ray of ``--num-cpus`` CPUs (1 CPU per trial, so that many trials
run at once: the parallelism P):

- Study overhead. A real ``run_study`` of N short ``multitask`` trials (a seed sweep; 384 dSprites
  images: 3 shapes x 2 scales x 8 x 8 positions, orientation fixed; 2 epochs, 2 tasks, metrics
  [mig] on 200 / 100 points, no pictures) into a temporary SQLite MLflow store (created, and its
  schema migrated, before the clock starts) and a temporary storage folder, ``verbose=0``; then
  the same N trials at 24 epochs (about 7 s each here; not with ``--quick``). Each launch pays a
  fixed start (its trial processes import torch, MLflow and the metric stack: ~3 s of CPU each,
  which neither Ray's worker setup hook nor warm-up tasks move off the critical path: Tune's
  actors get fresh workers) and a little per trial; the two lengths show how it amortises. Ray is
  started first, timed apart (row "Ray start"): the study wall does NOT include it, but does include
  everything else ``run_study`` does (data preparation, the parent run, Tune, worker processes,
  the final journal replay). A trial's compute is Tune's ``time_total_s`` of its last result (from
  its function's start to its last ``tune.report``) plus what it does after that report (ending
  its run: from the journal time of its last metrics record to its MLflow run's ``end_time``).
  Overhead = wall / (sum of trial compute / P) - 1; goal under 10%. Trials per hour = N / wall.
  The overhead seconds are split, roughly, by the MLflow trial runs' start and end times: from the
  study's start to the first trial's run (data, parent run, Tune set-up, worker processes) and
  from the last trial run's end to the study's end (Tune wind-down, journal replay, parent run);
  the rest is between trials (scheduling, uneven trial lengths at the end).
  Trials' per-report tracking and Tune round trips are inside their compute, so they are not in
  this overhead; the next two rows price them.
- Trial-side tracking per report. What ``RayContext.report`` does before handing the result to
  Tune (metric-name check, ``Journal.append`` of a metrics record of 10 metrics on a local pyarrow
  file system, ``Sender.notify()``: the sending thread beside training does the MLflow calls),
  without Tune, timed M times in a row (no training in between: the sending thread competes for the
  GIL at every report, a worst case) after the trial's run record was journaled and sent: (a) to a
  local SQLite store, (b) to a real ``mlflow server`` (1 worker) on 127.0.0.1, with the trials'
  fail-fast HTTP settings. Median and p95 ms per report; goal: median under 20 ms. The journal
  rewrites its whole file per append, so the cost can grow with the reports already made: the
  first and last 10 reports' means are printed too (the first ones also pay for cold caches).
  The sending thread's own cost is printed beside it ("sending thread"): the time from the first
  report until MLflow holds all M, per report.
- Driver-side cost per result. The driver does no tracking work per result (our ``_CloseRuns``
  callback acts only when a trial ends), so its per-result cost is Tune's own result processing
  (its loggers writing result.json / progress.csv / events, experiment-state snapshots, the event
  loop, the actor call that fetches the next result). ``tune.report`` blocks the trial until the
  driver asks for the next result, so trials wait for it. Measured with a trivial function
  trainable reporting 10 metrics K times, through ``tune.Tuner`` with the study's run settings
  (reuse_actors, the ``_CloseRuns`` callback, verbose=0): (wall(K2) - wall(K1)) / (K2 - K1), minus
  one iteration of the same loop without Tune (the start-up costs cancel). Goal under 20 ms. The
  median time a trial spent blocked in ``tune.report`` (timed inside the K2 trial) is printed too.

The machine may be shared with other work: the numbers are noisy, and trial compute stretches with
the load (which also inflates the overhead's denominator). Every goal is printed as met or NOT met;
the exit status is 0 either way (a benchmark, not a test).

Run: python benchmarks/study_overhead.py            (2 x 16 trials, 300 reports, K 20 / 420; minutes)
     python benchmarks/study_overhead.py --quick    (6 trials, 50 reports, K 10 / 110)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
import requests
from mlflow.tracking import MlflowClient
from ray import tune

from study import launch, tracking
from study.journal import Journal, Sender
from study.spec import parse_spec
from trainables import get_family
from trainables._context import check_metric_names

OVERHEAD_GOAL = 0.10  # study wall over trial compute / parallelism, minus 1
PER_RESULT_GOAL_MS = 20.0  # tracking per reported result, trial side and driver side
FAMILY = "multitask"
DATASET = {
    "name": "dsprites",
    "subset": {"scale": [0, 5], "orientation": 0, "posX": "0:32:4", "posY": "0:32:4"},
    "split_seed": 0,
}
FIXED = {
    "n_tasks": 2,
    "epochs": 2,
    "batch_size": 64,
    "metric_train_points": 200,
    "metric_test_points": 100,
    "pictures": False,
    "umap_points": 10,
}
# The second study: the same trials trained longer (about 7 s each here), to show how the fixed
# start of a launch (trial processes importing torch, MLflow and the metric stack, ~3 s) amortises.
LONGER = 24
# Ten metrics, named as families name them (an epoch report of an auto-encoder with extras).
METRIC_NAMES = (
    "train/loss", "train/reconstruction", "train/kl", "train/tc", "val/loss",
    "val/reconstruction", "val/kl", "val/rmse", "lr", "epoch",
)  # fmt: skip


def _log(text: str) -> None:
    print(f"  {text}", file=sys.stderr, flush=True)


def _metrics(step: int) -> dict[str, float]:
    return {name: 1.0 / (step + i + 1) for i, name in enumerate(METRIC_NAMES)}


def _ms(seconds: float) -> float:
    return 1e3 * seconds


def _p95(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]


# -- 1. study overhead --------------------------------------------------------------------------
def _trial_compute(
    experiment: Path, uri: str, parent_run_id: str
) -> tuple[list[float], float, float, float]:
    """Per trial: Tune's time_total_s plus the time from its last report to its run's end; the sum
    of Tune's time_total_s alone; when the first trial run started and the last one ended (epoch s).
    """
    client = MlflowClient(uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=10_000,
    )  # fmt: skip
    ended = {r.data.tags.get("trial_id"): r.info.end_time for r in runs}
    first_start = min(r.info.start_time for r in runs) / 1e3
    last_end = max(r.info.end_time or 0 for r in runs) / 1e3
    fs = pafs.LocalFileSystem()
    computes, tune_total = [], 0.0
    for path in sorted(experiment.rglob("result.json")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        total = float(json.loads(lines[-1])["time_total_s"])
        tune_total += total
        records = Journal(fs, str(path.parent)).records()
        trial_ids = [r["tags"]["trial_id"] for r in records if r["op"] == "run"]
        reported = [r["time"] for r in records if r["op"] == "metrics"]
        end_ms = ended.get(trial_ids[-1]) if trial_ids else None
        tail = max(0.0, (end_ms - reported[-1]) / 1e3) if end_ms and reported else 0.0
        computes.append(total + tail)
    return computes, tune_total, first_start, last_end


def study_overhead(n_trials: int, num_cpus: int, tmp: Path, epochs: int) -> dict[str, Any]:
    spec = parse_spec(
        {
            "name": f"bench_overhead_{epochs}",
            "family": FAMILY,
            "dataset": DATASET,
            "fixed": {**FIXED, "epochs": epochs},
            "metrics": ["mig"],
            "sweep": {"seed": list(range(n_trials))},
            "resources": {"cpu": 1, "gpu": 0},
        },
        "<study_overhead>",
    )
    uri = f"sqlite:///{tmp / 'study.db'}"
    MlflowClient(uri).search_experiments(max_results=1)  # create + migrate the store, untimed

    started = time.perf_counter()  # what run_study does first, timed apart (it is in the wall too)
    get_family(FAMILY).prepare_data(spec.dataset, spec.family_configs())
    prep_s = time.perf_counter() - started

    started = time.perf_counter()
    if not ray.is_initialized():  # the second study reuses Ray, but not its trial processes
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)
    ray_s = time.perf_counter() - started
    _log(f"Ray started in {ray_s:.1f} s; running {n_trials} trials of {epochs} epochs")

    started, started_epoch = time.perf_counter(), time.time()
    result = launch.run_study(
        spec, config_text="", tracking_uri=uri, storage=tmp / "ray_results", num_cpus=num_cpus,
        verbose=0,
    )  # fmt: skip
    wall, ended_epoch = time.perf_counter() - started, time.time()
    # experiment_path: a Path or a StoragePath; on local storage its str() is the folder
    experiment = Path(str(result.experiment_path))
    computes, tune_total, first_start, last_end = _trial_compute(
        experiment, uri, result.parent_run_id
    )
    _log(
        f"study: {wall:.1f} s wall, {result.n_finished}/{result.n_trials} finished, "
        f"{result.n_errors} errors; trial compute {sum(computes):.1f} s "
        f"(Tune time_total_s {tune_total:.1f} s), per trial {min(computes):.1f}-"
        f"{max(computes):.1f} s"
    )
    return {
        "ray_s": ray_s, "prep_s": prep_s, "wall": wall, "computes": computes,
        "parallelism": num_cpus, "result": result,
        "to_first": first_start - started_epoch, "after_last": ended_epoch - last_end,
    }  # fmt: skip


# -- 2. trial-side tracking per report ----------------------------------------------------------
def report_times(uri: str, folder: Path, reports: int) -> tuple[list[float], float]:
    """Seconds of each of ``reports`` trial-side report paths (journal + notify), after the run
    record was journaled and sent (a trial's start, untimed); and the seconds from the first
    report until the sending thread had sent them all, per report."""
    experiment_id, parent_run_id = tracking.start_parent_run(
        uri, "bench_tracking", FAMILY, "", {"benchmark": "study_overhead"}
    )
    info = tracking.TrackingInfo(
        uri=uri, experiment_id=experiment_id, parent_run_id=parent_run_id,
        study="bench_tracking", family=FAMILY, dataset=DATASET,
    )  # fmt: skip
    params = get_family(FAMILY).Config(**FIXED, metrics=["mig"]).model_dump(mode="json")
    journal = Journal(pafs.LocalFileSystem(), str(folder))
    sender = Sender(uri, journal)
    journal.append(tracking.run_record(info, f"bench{time.time_ns()}", "bench_trial", params))
    if not sender.flush():
        raise RuntimeError(f"could not create the trial run in {uri}")
    times = []
    sender.start()
    first = time.perf_counter()
    for step in range(1, reports + 1):
        metrics = _metrics(step)
        started = time.perf_counter()
        # RayContext.report up to tune.report (no checkpoint: that is the family's state, not tracking)
        check_metric_names(metrics)
        now = int(time.time() * 1000)
        journal.append({"op": "metrics", "step": step, "metrics": metrics, "time": now})
        sender.notify()
        times.append(time.perf_counter() - started)
    deadline = time.monotonic() + 600
    while journal.sent < reports + 1:  # the run record and every report
        if time.monotonic() > deadline:
            raise RuntimeError(f"only {journal.sent - 1} of {reports} reports reached {uri}")
        time.sleep(0.005)
    drained = (time.perf_counter() - first) / reports
    sender.stop()
    journal.append({"op": "end", "status": "FINISHED", "reason": ""})
    sender.flush()
    tracking.end_run(uri, parent_run_id, "FINISHED")
    return times, drained


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def mlflow_server(tmp: Path, timeout_s: float = 180.0) -> Iterator[str]:
    """A real tracking server on a free local port (its own process group, ended on exit)."""
    port = _free_port()
    executable = Path(sys.executable).parent / "mlflow"
    command = [
        str(executable) if executable.exists() else "mlflow", "server", "--host", "127.0.0.1",
        "--port", str(port), "--workers", "1",
        "--backend-store-uri", f"sqlite:///{tmp / 'server.db'}",
        "--default-artifact-root", (tmp / "server_artifacts").as_uri(),
    ]  # fmt: skip
    log_path = tmp / "server.log"
    with open(log_path, "w") as log_file:
        server = subprocess.Popen(
            command, cwd=tmp, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
    uri = f"http://127.0.0.1:{port}"
    try:
        started, deadline = time.perf_counter(), time.monotonic() + timeout_s
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"mlflow server exited ({server.returncode}): "
                                   f"{log_path.read_text()[-500:]}")  # fmt: skip
            try:
                if requests.get(f"{uri}/health", timeout=2).ok:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server not answering after {timeout_s:.0f} s")
            time.sleep(0.5)
        _log(f"mlflow server answering at {uri} after {time.perf_counter() - started:.1f} s")
        yield uri
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(server.pid, signal.SIGTERM)
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGKILL)
            server.wait()


# -- 3. driver-side cost per result -------------------------------------------------------------
def _reporter(config: dict[str, Any]) -> None:
    """A trainable that only reports; it times how long each report held it (the round trip)."""
    blocked = []
    for step in range(config["k"]):
        started = time.perf_counter()
        tune.report(_metrics(step))
        blocked.append(time.perf_counter() - started)
    Path(config["out"]).write_text(json.dumps(blocked[:-1]))  # the last one waits for the end


def _tune_wall(k: int, tmp: Path, info: tracking.TrackingInfo) -> tuple[float, list[float]]:
    out = tmp / f"blocked_{k}.json"
    tuner = tune.Tuner(
        tune.with_resources(_reporter, {"cpu": 1}),
        param_space={"k": k, "out": str(out)},
        tune_config=tune.TuneConfig(num_samples=1, reuse_actors=True),
        run_config=tune.RunConfig(
            name=f"reports_{k}",
            storage_path=str(tmp / "driver_results"),
            callbacks=[launch._CloseRuns(info)],
            verbose=0,
        ),  # fmt: skip
    )
    started = time.perf_counter()
    results = tuner.fit()
    wall = time.perf_counter() - started
    if results.errors:
        raise RuntimeError(f"the reporting trial failed: {results.errors[0]}")
    return wall, json.loads(out.read_text()) if out.exists() else []


def _loop_without_tune(k: int) -> float:
    """Seconds per iteration of the reporter's loop with a no-op in place of tune.report."""
    sink: list[dict[str, float]] = []
    started = time.perf_counter()
    for step in range(k):
        sink.append(_metrics(step))
    return (time.perf_counter() - started) / k


def driver_per_result(k1: int, k2: int, tmp: Path, uri: str) -> dict[str, float]:
    info = tracking.TrackingInfo(
        uri=uri, experiment_id="0", parent_run_id="0", study="bench_driver", family=FAMILY,
        dataset=DATASET,
    )  # fmt: skip
    wall1, _ = _tune_wall(k1, tmp, info)
    wall2, blocked = _tune_wall(k2, tmp, info)
    plain = _loop_without_tune(k2)
    per_result = (wall2 - wall1) / (k2 - k1) - plain
    _log(f"Tune: {k1} results in {wall1:.2f} s, {k2} in {wall2:.2f} s")
    return {
        "per_result": per_result, "plain": plain,
        "blocked_median": statistics.median(blocked) if blocked else float("nan"),
        "blocked_p95": _p95(blocked) if blocked else float("nan"),
    }  # fmt: skip


# -- table --------------------------------------------------------------------------------------
def _row(name: str, value: str, goal: str = "-", ratio: float | None = None) -> str:
    shown = "-" if ratio is None else f"{ratio:.2f}x"
    met = "-" if ratio is None else ("yes" if ratio <= 1 else "NO")
    return f"{name:<50}{value:>14}{goal:>12}{shown:>10}{met:>6}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="6 trials, 50 reports, K 10 / 110")
    parser.add_argument("--trials", type=int, help="study trials (default 16; quick 6)")
    parser.add_argument("--reports", type=int, help="reports per store (default 300; quick 50)")
    parser.add_argument("--num-cpus", type=int, default=2, help="Ray CPUs = trials at once")
    args = parser.parse_args()
    n_trials = args.trials or (6 if args.quick else 16)
    reports = args.reports or (50 if args.quick else 300)
    k1, k2 = (10, 110) if args.quick else (20, 420)
    print(
        f"{n_trials} {FAMILY} trials on {args.num_cpus} Ray CPUs (1 per trial), {reports} reports "
        f"per store, Tune K {k1} / {k2}; {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} (shared machine: noisy)\n",
        flush=True,
    )

    with tempfile.TemporaryDirectory(prefix="study_overhead_") as name:
        tmp = Path(name)
        # MLflow's run links and Tune's banners go to stderr with the progress: stdout is the table.
        with contextlib.redirect_stdout(sys.stderr):
            _log("trial-side tracking, SQLite store")
            sqlite_times, sqlite_drain = report_times(
                f"sqlite:///{tmp / 'tracking.db'}", tmp / "trial_sqlite", reports
            )
            server_times: list[float] | None = None
            server_drain = 0.0
            server_error = ""
            _log("trial-side tracking, mlflow server")
            try:
                with mlflow_server(tmp) as uri, tracking.fail_fast():
                    server_times, server_drain = report_times(uri, tmp / "trial_server", reports)
            except RuntimeError as err:
                server_error = str(err).splitlines()[0][:120]
                _log(f"server measurement failed: {server_error}")
            try:
                studies = [
                    study_overhead(n_trials, args.num_cpus, tmp, epochs)
                    for epochs in ((FIXED["epochs"],) if args.quick else (FIXED["epochs"], LONGER))
                ]
                _log("driver-side cost per result")
                driver = driver_per_result(k1, k2, tmp, f"sqlite:///{tmp / 'study.db'}")
            finally:
                ray.shutdown()

    print(f"{'row':<50}{'value':>14}{'goal':>12}{'ratio':>10}{'met':>6}")
    rows = [
        _row("Ray start (ray.init; not in the study wall)", f"{studies[0]['ray_s']:.1f} s"),
        _row("data preparation (timed apart; in the wall)", f"{studies[0]['prep_s']:.2f} s"),
    ]
    overheads = []
    for study in studies:
        computes, wall, parallelism = study["computes"], study["wall"], study["parallelism"]
        ideal = sum(computes) / parallelism
        overhead = wall / ideal - 1
        overhead_with_ray = (wall + studies[0]["ray_s"]) / ideal - 1  # Ray starts in the first
        length = f"{statistics.mean(computes):.1f} s trials"
        overheads.append((length, overhead, study["result"]))
        rows += [
            _row(f"{length}: study wall, {n_trials} trials", f"{wall:.1f} s"),
            _row(f"  sum of trial compute / {parallelism}", f"{ideal:.1f} s"),
            _row("  study overhead (wall without Ray start)", f"{100 * overhead:.1f}%",
                 f"< {100 * OVERHEAD_GOAL:.0f}%", max(overhead, 0) / OVERHEAD_GOAL),
            _row("  study overhead, Ray start included", f"{100 * overhead_with_ray:.1f}%"),
            _row("  trials per hour (wall without Ray start)", f"{n_trials / wall * 3600:.0f}"),
            _row("  trial compute, min / mean / max",
                 f"{min(computes):.1f}/{statistics.mean(computes):.1f}/{max(computes):.1f} s"),
            _row("  overhead seconds (wall - compute / P)", f"{wall - ideal:.1f} s"),
            _row("  study start to first trial run (roughly)", f"{study['to_first']:.1f} s"),
            _row("  last trial run end to study end", f"{study['after_last']:.1f} s"),
        ]  # fmt: skip
    trial_rows = [("SQLite", sqlite_times), ("mlflow server", server_times)]
    drains = {"SQLite": sqlite_drain, "mlflow server": server_drain}
    for store, times in trial_rows:
        if times is None:
            rows.append(
                _row(f"trial side per report, {store}", "failed", f"< {PER_RESULT_GOAL_MS:g} ms")
            )
            continue
        median = _ms(statistics.median(times))
        rows.append(_row(f"trial side per report, {store}, median", f"{median:.1f} ms",
                         f"< {PER_RESULT_GOAL_MS:g} ms", median / PER_RESULT_GOAL_MS))  # fmt: skip
        rows.append(_row(f"trial side per report, {store}, p95", f"{_ms(_p95(times)):.1f} ms"))
        first, last = statistics.mean(times[:10]), statistics.mean(times[-10:])
        rows.append(_row(f"  first / last 10 reports, mean ({store})",
                         f"{_ms(first):.1f}/{_ms(last):.1f} ms"))  # fmt: skip
        rows.append(_row(f"  sending thread, per report ({store})",
                         f"{_ms(drains[store]):.1f} ms"))  # fmt: skip
    per_result = _ms(driver["per_result"])
    rows += [
        _row("driver side per result (Tune, no MLflow work)", f"{per_result:.1f} ms",
             f"< {PER_RESULT_GOAL_MS:g} ms", max(per_result, 0) / PER_RESULT_GOAL_MS),
        _row("  trial blocked in tune.report, median", f"{_ms(driver['blocked_median']):.1f} ms"),
        _row("  trial blocked in tune.report, p95", f"{_ms(driver['blocked_p95']):.1f} ms"),
        _row("  same loop without Tune, per iteration", f"{_ms(driver['plain']):.3f} ms"),
    ]  # fmt: skip
    print("\n".join(rows))

    missed = []
    for length, overhead, result in overheads:
        if overhead >= OVERHEAD_GOAL:
            missed.append(
                f"{length}: study overhead {100 * overhead:.1f}% "
                f"(goal < {100 * OVERHEAD_GOAL:.0f}%)"
            )
        if result.n_errors or result.n_finished != result.n_trials:
            missed.append(f"{length}: {result.n_finished}/{result.n_trials} trials finished, "
                          f"{result.n_errors} errors (the overhead is not meaningful)")  # fmt: skip
    for store, times in trial_rows:
        if times is None:
            missed.append(f"trial side via {store}: not measured ({server_error})")
        elif _ms(statistics.median(times)) >= PER_RESULT_GOAL_MS:
            missed.append(f"trial side via {store}: {_ms(statistics.median(times)):.1f} ms median")
    if per_result >= PER_RESULT_GOAL_MS:
        missed.append(f"driver side: {per_result:.1f} ms per result")
    print("\ngoals: " + ("all met" if not missed else "NOT met: " + "; ".join(missed)))


if __name__ == "__main__":
    main()
