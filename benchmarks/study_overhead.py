"""What does running trials as a study cost beyond the trials' own compute, and what does tracking cost
per reported result?

Three measurements, on a local Ray of ``--num-cpus`` CPUs (1 CPU per trial, so that many trials
run at once: the parallelism P):

- Study overhead. Real ``run_study`` launches of short ``multitask`` trials (seed sweeps; 384
  dSprites images: 3 shapes x 2 scales x 8 x 8 positions, orientation fixed; 2 epochs, 2 tasks,
  metrics [mig] on 200 / 100 points, no pictures; about 1.3 s each here) into a temporary SQLite
  MLflow store (created, and its schema migrated, before the clock starts) and a temporary
  storage folder, ``verbose=0``: a few (16) and many (128: the goal's case), then the few at 24
  epochs (about 7 s each; not with ``--quick``, which runs 6 and 24 short ones). Ray is started
  first, timed apart (row "Ray start"): a study's wall does NOT include it, but does include
  everything else ``run_study`` does (data preparation, the parent run, Tune, worker processes,
  the final journal replay). A trial's compute is Tune's ``time_total_s`` of its last result
  (from its function's start to its last ``tune.report``) plus what it does after that report
  (ending its run: from the journal time of its last metrics record to its MLflow run's
  ``end_time``). Overhead = wall / (sum of trial compute / P) - 1; goal under 10% for many short
  trials, and for each further short trial: (wall(many) - wall(few)) / (their extra compute / P)
  - 1, where a launch's fixed start cancels.
  Every launch pays a fixed start of 4-5 s, which does not shrink with the study, so a few short
  trials cannot meet the goal. Its floor is priced first, on the same Ray, with a trivial probe
  trainable (rows "floor"): Tune's own start and wind-down for P trivial trials, and the imports
  of a study trial's process (torch, MLflow, the metric stack; they happen when Tune hands it the
  trial function, before the trial starts; neither Ray's worker setup hook nor warm-up tasks move
  them off the critical path: Tune gives its actors their own runtime env, so they never take a
  started or warmed-up worker process). Each process's first trial also pays one-time costs
  inside its function: torch importing its compiler stack (torch._dynamo) at the first optimizer
  (priced by the probe too), first calls. Tune counts them in that trial's time, and so does the
  judged overhead; the row "first trials' one-time costs included" moves them (each process's
  first trial's time beyond the median warm trial's) to the overhead instead.
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

Run: python benchmarks/study_overhead.py            (16 + 128 + 16 trials, 300 reports, K 20 / 420;
                                                     about 5 minutes)
     python benchmarks/study_overhead.py --quick    (6 + 24 trials, 50 reports, K 10 / 110)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs
import ray
from local_servers import mlflow_server  # benchmarks/, beside this file
from mlflow.tracking import MlflowClient
from ray import tune

from study import callbacks, launch, tracking
from study.journal import Journal, Sender
from study.spec import parse_spec
from trainables import get_family
from trainables.core.context import check_metric_names

nan = math.nan
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
# The last study: the few trials trained longer (about 7 s each here), to show how a launch's fixed
# start (trial processes importing torch, MLflow and the metric stack, ~3 s) amortises.
LONGER = 24
EPOCHS = FIXED["epochs"]
# "Many short trials", the goal's case: 64 rounds of 2 at once; the fixed start stays about 4 s.
MANY = 128
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
def _trial_compute(experiment: Path, uri: str, parent_run_id: str) -> dict[str, Any]:
    """Per trial: Tune's time_total_s plus the time from its last report to its run's end, and the
    worker process it ran in; the sum of Tune's time_total_s alone; when the first trial run
    started and the last one ended (epoch s).
    """
    client = MlflowClient(uri)
    experiment_id = client.get_run(parent_run_id).info.experiment_id
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.mlflow.parentRunId = '{parent_run_id}'",
        max_results=10_000,
    )  # fmt: skip
    ended = {r.data.tags.get("trial_id"): r.info.end_time for r in runs}
    started = {r.data.tags.get("trial_id"): r.info.start_time for r in runs}
    fs = pafs.LocalFileSystem()
    trials, tune_total = [], 0.0
    for path in sorted(experiment.rglob("result.json")):
        lines = [line for line in path.read_text().splitlines() if line.strip()]
        if not lines:
            continue
        last = json.loads(lines[-1])
        total = float(last["time_total_s"])
        tune_total += total
        records = Journal(fs, str(path.parent)).records()
        trial_ids = [r["tags"]["trial_id"] for r in records if r["op"] == "run"]
        reported = [r["time"] for r in records if r["op"] == "metrics"]
        end_ms = ended.get(trial_ids[-1]) if trial_ids else None
        tail = max(0.0, (end_ms - reported[-1]) / 1e3) if end_ms and reported else 0.0
        start_ms = started.get(trial_ids[-1], math.inf) if trial_ids else math.inf
        trials.append({"compute": total + tail, "pid": last.get("pid"), "start": start_ms})
    return {
        "trials": trials, "tune_total": tune_total,
        "first_start": min(r.info.start_time for r in runs) / 1e3,
        "last_end": max(r.info.end_time or 0 for r in runs) / 1e3,
    }  # fmt: skip


def _cold_extra(trials: list[dict[str, Any]]) -> float:
    """Seconds the first trial in each worker process took beyond a warm trial (the median of the
    others), summed over processes: its process's one-time costs (torch imports its compiler stack
    at the first optimizer, first calls), which Tune's time_total_s counts as that trial's compute.
    """
    first: dict[Any, dict[str, Any]] = {}
    for trial in trials:
        if trial["pid"] not in first or trial["start"] < first[trial["pid"]]["start"]:
            first[trial["pid"]] = trial
    warm = [t["compute"] for t in trials if all(t is not f for f in first.values())]
    if not warm:
        return nan
    typical = statistics.median(warm)
    return sum(max(0.0, t["compute"] - typical) for t in first.values())


def study_overhead(n_trials: int, num_cpus: int, tmp: Path, epochs: int) -> dict[str, Any]:
    spec = parse_spec(
        {
            "name": f"bench_overhead_{n_trials}x{epochs}",
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

    _log(f"running {n_trials} trials of {epochs} epochs")

    started, started_epoch = time.perf_counter(), time.time()
    result = launch.run_study(
        spec, config_text="", tracking_uri=uri, storage=tmp / "ray_results", num_cpus=num_cpus,
        verbose=0,
    )  # fmt: skip
    wall, ended_epoch = time.perf_counter() - started, time.time()
    # experiment_path: a Path or a StoragePath; on local storage its str() is the folder
    experiment = Path(str(result.experiment_path))
    measured = _trial_compute(experiment, uri, result.parent_run_id)
    computes, tune_total = [t["compute"] for t in measured["trials"]], measured["tune_total"]
    _log(
        f"study: {wall:.1f} s wall, {result.n_finished}/{result.n_trials} finished, "
        f"{result.n_errors} errors; trial compute {sum(computes):.1f} s "
        f"(Tune time_total_s {tune_total:.1f} s), per trial {min(computes):.1f}-"
        f"{max(computes):.1f} s"
    )
    return {
        "prep_s": prep_s, "wall": wall, "computes": computes,
        "parallelism": num_cpus, "result": result, "n_trials": n_trials,
        "cold": _cold_extra(measured["trials"]),
        "to_first": measured["first_start"] - started_epoch,
        "after_last": ended_epoch - measured["last_end"],
    }  # fmt: skip


def _probe(config: dict[str, Any]) -> None:
    """A trial that times the one-time costs every study trial's process pays: importing what a
    study trial's function lives in (a study trial's process does it when Tune hands it the
    function, before the trial starts), and torch importing its compiler stack at the first
    optimizer (inside the first trial). Self-contained: the benchmark pickles it by value."""
    import importlib
    import time

    from ray import tune

    started = time.time()
    clock = time.perf_counter()
    importlib.import_module("study.launch")
    imports = time.perf_counter() - clock
    clock = time.perf_counter()
    importlib.import_module("torch._dynamo")
    dynamo = time.perf_counter() - clock
    tune.report({"started": started, "ended": time.time(), "imports": imports, "dynamo": dynamo})


def launch_floor(num_cpus: int, tmp: Path) -> dict[str, float]:
    """What no study of ours can go below on this machine: Tune's own start and wind-down for
    ``num_cpus`` trivial trials (fit's wall minus the trials' own time), and the one-time costs of
    a study trial's process, timed inside such a trial."""
    tuner = tune.Tuner(
        tune.with_resources(_probe, {"cpu": 1}),
        param_space={"copy": tune.grid_search(list(range(num_cpus)))},
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(name="floor", storage_path=str(tmp / "floor"), verbose=0),
    )
    started = time.time()
    results = tuner.fit()
    wall = time.time() - started
    if results.errors:
        raise RuntimeError(f"the probe trial failed: {results.errors[0]}")
    metrics = [r.metrics for r in results]
    busy = max(m["ended"] for m in metrics) - min(m["started"] for m in metrics)
    floor = {
        "tune": wall - busy,
        "to_start": min(m["started"] for m in metrics) - started,
        "imports": statistics.mean(m["imports"] for m in metrics),
        "dynamo": statistics.mean(m["dynamo"] for m in metrics),
    }
    _log(f"launch floor: Tune {floor['tune']:.1f} s, imports {floor['imports']:.1f} s, "
         f"torch._dynamo {floor['dynamo']:.1f} s")  # fmt: skip
    return floor


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
            callbacks=[callbacks.CloseRuns(info)],
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
def _pct(fraction: float) -> str:
    return "n/a" if math.isnan(fraction) else f"{100 * fraction:.1f}%"


def _seconds(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.1f} s"


def _row(name: str, value: str, goal: str = "-", ratio: float | None = None) -> str:
    shown = "-" if ratio is None else f"{ratio:.2f}x"
    met = "-" if ratio is None else ("yes" if ratio <= 1 else "NO")
    return f"{name:<50}{value:>14}{goal:>12}{shown:>10}{met:>6}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--quick", action="store_true", help="6 and 24 short trials, 50 reports, K 10 / 110"
    )
    parser.add_argument("--trials", type=int, help="a few trials (default 16; quick 6)")
    parser.add_argument("--many", type=int, help=f"many short trials (default {MANY}; quick 24)")
    parser.add_argument("--reports", type=int, help="reports per store (default 300; quick 50)")
    parser.add_argument("--num-cpus", type=int, default=2, help="Ray CPUs = trials at once")
    args = parser.parse_args()
    n_trials = args.trials or (6 if args.quick else 16)
    n_many = args.many or (24 if args.quick else MANY)
    if n_many <= n_trials:
        parser.error(f"--many ({n_many}) must exceed --trials ({n_trials})")
    plan = [(n_trials, EPOCHS), (n_many, EPOCHS)] + ([] if args.quick else [(n_trials, LONGER)])
    reports = args.reports or (50 if args.quick else 300)
    k1, k2 = (10, 110) if args.quick else (20, 420)
    print(
        f"{FAMILY} studies of {' / '.join(f'{n} x {e} epochs' for n, e in plan)} on "
        f"{args.num_cpus} Ray CPUs (1 per trial), {reports} reports "
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
            started = time.perf_counter()
            ray.init(num_cpus=args.num_cpus, include_dashboard=False, logging_level=logging.WARNING)
            ray_s = time.perf_counter() - started
            _log(f"Ray started in {ray_s:.1f} s (each study reuses it, not its trial processes)")
            try:
                floor = launch_floor(args.num_cpus, tmp)
                studies = [
                    study_overhead(n, args.num_cpus, tmp, epochs) for n, epochs in plan
                ]  # fmt: skip
                _log("driver-side cost per result")
                driver = driver_per_result(k1, k2, tmp, f"sqlite:///{tmp / 'study.db'}")
            finally:
                ray.shutdown()

    print(f"{'row':<50}{'value':>14}{'goal':>12}{'ratio':>10}{'met':>6}")
    rows = [
        _row("Ray start (ray.init; not in the study wall)", f"{ray_s:.1f} s"),
        _row("data preparation (timed apart; in the wall)", f"{studies[0]['prep_s']:.2f} s"),
    ]
    rows += [
        _row("floor of a launch's fixed start (sum of the next)",
             f"{floor['tune'] + floor['imports']:.1f} s"),
        _row(f"  Tune alone: {args.num_cpus} trivial trials, wall - their time",
             f"{floor['tune']:.1f} s"),
        _row("    of which fit() to a trivial trial's start", f"{floor['to_start']:.1f} s"),
        _row("  trial process imports (torch, MLflow, metrics)", f"{floor['imports']:.1f} s"),
        _row("first optimizer: torch imports torch._dynamo", f"{floor['dynamo']:.1f} s"),
        _row("  (once per process, in its first trial's compute)", ""),
    ]  # fmt: skip
    judged: list[tuple[str, float, Any]] = []  # (what, overhead, the study's result)
    short = [study for study, (_, epochs) in zip(studies, plan, strict=True) if epochs == EPOCHS]
    for study, (n, epochs) in zip(studies, plan, strict=True):
        computes, wall, parallelism = study["computes"], study["wall"], study["parallelism"]
        ideal = sum(computes) / parallelism
        overhead = wall / ideal - 1
        overhead_with_ray = (wall + ray_s) / ideal - 1
        # Each process's first trial also pays one-time costs (torch._dynamo's import, first
        # calls): counted as its compute, as Tune times it; the row after the judged one moves
        # them to the overhead.
        overhead_cold = wall / (ideal - study["cold"] / parallelism) - 1
        length = f"{statistics.mean(computes):.1f} s trials"
        # The goal is for many short trials; a few short ones show the fixed start, which does
        # not shrink with the study, and long ones how it amortises.
        goal = epochs == EPOCHS and study is short[-1] and len(short) > 1
        if goal:
            judged.append((f"{n} x {length}", overhead, study["result"]))
        rows += [
            _row(f"{length}: study wall, {n} trials", f"{wall:.1f} s"),
            _row(f"  sum of trial compute / {parallelism}", f"{ideal:.1f} s"),
            _row("  study overhead (wall without Ray start)", f"{100 * overhead:.1f}%",
                 f"< {100 * OVERHEAD_GOAL:.0f}%" if goal else "-",
                 max(overhead, 0) / OVERHEAD_GOAL if goal else None),
            _row("  study overhead, Ray start included", f"{100 * overhead_with_ray:.1f}%"),
            _row("  overhead, first trials' one-time costs included", _pct(overhead_cold)),
            _row("  trials per hour (wall without Ray start)", f"{n / wall * 3600:.0f}"),
            _row("  trial compute, min / mean / max",
                 f"{min(computes):.1f}/{statistics.mean(computes):.1f}/{max(computes):.1f} s"),
            _row("  first trial per process, extra (one-time costs)", _seconds(study["cold"])),
            _row("  overhead seconds (wall - compute / P)", f"{wall - ideal:.1f} s"),
            _row("  study start to first trial run (roughly)", f"{study['to_first']:.1f} s"),
            _row("  last trial run end to study end", f"{study['after_last']:.1f} s"),
        ]  # fmt: skip
        if not goal and (
            study["result"].n_errors or study["result"].n_finished != study["result"].n_trials
        ):
            judged.append((f"{n} x {length}", nan, study["result"]))
    if len(short) > 1:
        # What each further short trial costs beyond its compute: the fixed start cancels.
        few, many = short[0], short[-1]
        extra_compute = (sum(many["computes"]) - sum(few["computes"])) / many["parallelism"]
        marginal = (many["wall"] - few["wall"]) / extra_compute - 1 if extra_compute > 0 else nan
        if marginal < -OVERHEAD_GOAL:  # faster than the compute it added: noise, not a result
            marginal = nan
        judged.append((f"each further short trial ({few['n_trials']} -> {many['n_trials']})",
                       marginal, None))  # fmt: skip
        rows.append(_row(f"each further short trial ({few['n_trials']} -> {many['n_trials']} trials)",
                         _pct(marginal), f"< {100 * OVERHEAD_GOAL:.0f}%",
                         max(marginal, 0) / OVERHEAD_GOAL))  # fmt: skip
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
    for what, overhead, result in judged:
        if result is not None and (result.n_errors or result.n_finished != result.n_trials):
            missed.append(f"{what}: {result.n_finished}/{result.n_trials} trials finished, "
                          f"{result.n_errors} errors (the overhead is not meaningful)")  # fmt: skip
        elif not overhead < OVERHEAD_GOAL:
            missed.append(f"{what}: study overhead {100 * overhead:.1f}% "
                          f"(goal < {100 * OVERHEAD_GOAL:.0f}%)")  # fmt: skip
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
