"""Does the driver stay cheap and flat when a study has thousands of trials?

One ``study run`` process, exactly as a user starts it (the CLI, its progress lines, a local Ray of
``--num-cpus`` CPUs and a SQLite MLflow store), runs a seed sweep of very short ``multitask``
trials (1 epoch on 384 dSprites images, MIG on 100 / 50 points, no pictures: about a second each
here). This script watches that process from outside, so it measures the driver and nothing of its
own: every time the driver prints a progress line (``[ended/N] ...``) the driver's CPU seconds
(user + system, every thread, from /proc) and its resident memory are read, and so are those of
the Ray head processes it started (GCS, raylet, dashboard agents: the driver's side of a local Ray).

Printed per study size (``--sizes``, default 200 and 2,000 trials):
- driver CPU per trial: the driver's CPU seconds from its first progress line with a trial ended
  to the end, over the trials ended meanwhile (goal under 50 ms); the start before it (imports,
  Ray, data, the parent run: about 8 s whatever the size) is printed apart, and the whole per trial;
- flat: the driver's CPU per trial ended in the last quarter of the study over that in the second
  quarter (the first pays the start: Ray, data, the first trial processes): goal under 1.5;
- the wall-clock overhead per trial, (wall - sum of trial compute / P) / trials, with trial compute
  as study_overhead.py counts it (Tune's time_total_s plus the time to end its MLflow run);
- the driver's peak resident memory and its growth per 1,000 trials;
- the launch's end (the last trial's run ending to the command's return: the final journal replay
  and the summary), then ``study status`` and ``study sync`` on the finished study, each a fresh
  process, timed: goal a few seconds at 2,000 trials.

Each CPU figure is noisy on a shared machine; every goal is printed as met or NOT met and the exit
status is 0 either way (a benchmark, not a test), unless a study fails.

Run: python benchmarks/many_trials.py                    (200 + 2,000 trials; ~25 min on 2 cores)
     python benchmarks/many_trials.py --sizes 20,60      (a smoke run, ~2 min)
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from study_overhead import DATASET, FIXED, _trial_compute  # benchmarks/, beside this file

STUDY = Path(sys.executable).with_name("study")
DRIVER_GOAL_MS = 50.0
FLAT_GOAL = 1.5  # last quarter's driver CPU per trial over the second quarter's
TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")
PROGRESS = re.compile(r"^\[\s*(\d+)/(\d+)\]")
RAY_HEAD = ("gcs_server", "raylet", "dashboard", "log_monitor", "monitor.py", "runtime_env")


def _stat(pid: int) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds user + system, resident bytes) of ``pid``; None once gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        resident = int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None
    return int(fields[1]), (int(fields[11]) + int(fields[12])) / TICK, resident


def _ray_head_cpu(driver: int) -> float:
    """CPU seconds of the Ray head processes the driver started (its descendants that are not
    trial workers; workers are the trials' compute)."""
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if not any(name in command for name in RAY_HEAD) or "default_worker" in command:
            continue
        pid, hops = int(entry.name), 0
        while pid > 1 and hops < 8:  # is it under the driver?
            stat = _stat(pid)
            if stat is None:
                break
            if stat[0] == driver:
                own = _stat(int(entry.name))
                total += own[1] if own else 0.0
                break
            pid, hops = stat[0], hops + 1
    return total


def _config(n_trials: int, folder: Path) -> Path:
    spec = {
        "name": f"bench_many_{n_trials}",
        "family": "multitask",
        "description": f"{n_trials} one-epoch trials: the driver's cost per trial",
        "dataset": DATASET,
        # conv4 (disentanglement_lib's small encoder): each trial keeps its weights in MLflow and a
        # checkpoint in the storage, ~10 MB a trial; conv6's ~50 MB filled this disk at 2,000.
        "fixed": {
            **FIXED,
            "epochs": 1,
            "metric_train_points": 100,
            "metric_test_points": 50,
            "encoder": "conv4",
        },  # fmt: skip
        "metrics": ["mig"],
        "sweep": {"seed": list(range(n_trials))},
        "resources": {"cpu": 1, "gpu": 0},
    }
    path = folder / f"many_{n_trials}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def _timed(command: list[str]) -> tuple[float, int, str]:
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    return time.perf_counter() - started, done.returncode, (done.stdout + done.stderr).strip()


def run_size(n_trials: int, num_cpus: int, folder: Path) -> dict[str, Any]:
    folder.mkdir(parents=True)
    uri, storage = f"sqlite:///{folder / 'mlflow.db'}", folder / "ray_results"
    command = [
        str(STUDY), "run", str(_config(n_trials, folder)), "--storage", str(storage),
        "--tracking-uri", uri, "--num-cpus", str(num_cpus), "--yes",
    ]  # fmt: skip
    print(f"  {n_trials} trials: {' '.join(command[1:3])} ...", file=sys.stderr, flush=True)
    started = time.perf_counter()
    driver = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # each progress line as it is printed
    )  # fmt: skip
    samples: list[tuple[float, int, float, int, float]] = []  # (t, ended, cpu, rss, ray head cpu)
    peak = [0]

    def watch_memory() -> None:  # the peak between progress lines too
        while driver.poll() is None:
            stat = _stat(driver.pid)
            if stat:
                peak[0] = max(peak[0], stat[2])
            time.sleep(0.5)

    threading.Thread(target=watch_memory, daemon=True).start()
    lines = []
    assert driver.stdout is not None
    for line in driver.stdout:
        lines.append(line.rstrip())
        match = PROGRESS.match(line.strip())
        stat = _stat(driver.pid)
        if match and stat:
            samples.append((time.perf_counter() - started, int(match.group(1)), stat[1], stat[2],
                            _ray_head_cpu(driver.pid)))  # fmt: skip
            print(f"    {line.rstrip()}", file=sys.stderr, flush=True)
    # The last progress line comes at the experiment's end: the driver's CPU from there to exit
    # (the launch summary) is in "last trial's end to the command's return".
    cpu_end = samples[-1][2] if samples else float("nan")
    returncode = driver.wait()
    wall, returned = time.perf_counter() - started, time.time()
    if returncode != 0:
        tail = "\n".join(lines[-15:])
        raise RuntimeError(f"study run exited {returncode} at {n_trials} trials:\n{tail}")
    summary = next(line for line in lines if line.startswith("MLflow: "))
    parent = re.search(r"parent run (\w+)", summary).group(1)
    experiment = Path(summary.rsplit("Ray: ", 1)[1].strip())
    measured = _trial_compute(experiment, uri, parent)
    computes = [t["compute"] for t in measured["trials"]]
    name = f"bench_many_{n_trials}"
    status = _timed([str(STUDY), "status", name, "--storage", str(storage)])
    sync = _timed([str(STUDY), "sync", name, "--storage", str(storage), "--tracking-uri", uri])
    for what, (_, code, output) in (("status", status), ("sync", sync)):
        if code != 0:
            raise RuntimeError(f"study {what} exited {code}: {output[-500:]}")
    disk = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())
    return {
        "n": n_trials, "wall": wall, "samples": samples, "cpu": cpu_end, "peak": peak[0],
        "disk": disk,
        "computes": computes, "parallelism": num_cpus, "status_s": status[0], "sync_s": sync[0],
        "end_s": returned - measured["last_end"],
        "lines": len(lines),
    }  # fmt: skip


def _quarter_rates(samples: list[tuple[float, int, float, int, float]], n: int) -> list[float]:
    """Driver CPU ms per trial ended within each quarter of the study (by trials ended), from the
    progress samples nearest the quarter marks."""
    marks = [0, n // 4, n // 2, 3 * n // 4, n]
    points = []
    for mark in marks:
        nearest = min(samples, key=lambda s: abs(s[1] - mark))
        points.append((nearest[1], nearest[2]))
    rates = []
    for (ended_a, cpu_a), (ended_b, cpu_b) in zip(points, points[1:], strict=False):
        rates.append(
            1e3 * (cpu_b - cpu_a) / (ended_b - ended_a) if ended_b > ended_a else float("nan")
        )
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="200,2000", help="comma list of study sizes")
    parser.add_argument("--num-cpus", type=int, default=2)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    results = []
    with tempfile.TemporaryDirectory(prefix="many_trials_") as tmp:
        for n in sizes:
            results.append(run_size(n, args.num_cpus, Path(tmp) / f"n{n}"))
    print(f"\n{'':<52}" + "".join(f"{r['n']:>12,}" for r in results) + "   goal")
    rows: list[tuple[str, list[str], str]] = []
    verdicts = []
    for r in results:
        r["driver_ms"] = 1e3 * r["cpu"] / r["n"]
        # The start (imports, Ray, data, the parent run: about 8 s of CPU whatever the size) is
        # a launch's fixed cost; per trial is what the driver spends from its first progress line
        # with a trial ended to its last.
        first = next((x for x in r["samples"] if x[1] > 0), None)
        r["start_s"] = first[2] if first else float("nan")
        r["per_trial_ms"] = (
            1e3 * (r["cpu"] - first[2]) / (r["n"] - first[1])
            if first and r["n"] > first[1] else float("nan")
        )  # fmt: skip
        r["ideal"] = sum(r["computes"]) / r["parallelism"]
        quarters = (
            _quarter_rates(r["samples"], r["n"]) if len(r["samples"]) > 4 else [float("nan")] * 4
        )
        r["quarters"], r["flat"] = quarters, quarters[3] / quarters[1]
        r["ray_ms"] = 1e3 * r["samples"][-1][4] / r["n"] if r["samples"] else float("nan")
        verdicts.append((f"{r['n']} trials: driver CPU {r['per_trial_ms']:.1f} ms per trial",
                         r["per_trial_ms"] < DRIVER_GOAL_MS))  # fmt: skip
        if r["n"] >= 400:  # quarters of a few dozen trials are noise
            verdicts.append((f"{r['n']} trials: last / second quarter {r['flat']:.2f}",
                             r["flat"] < FLAT_GOAL))  # fmt: skip
    rows += [
        ("study wall (Ray start included)", [f"{r['wall']:.0f} s" for r in results], ""),
        ("sum of trial compute / P", [f"{r['ideal']:.0f} s" for r in results], ""),
        ("trial compute, median", [f"{statistics.median(r['computes']):.2f} s" for r in results], ""),
        ("wall overhead per trial", [f"{1e3 * (r['wall'] - r['ideal']) / r['n']:.0f} ms"
                                     for r in results], ""),
        ("driver CPU at the start (to the first trial's end)",
         [f"{r['start_s']:.1f} s" for r in results], ""),
        ("driver CPU per trial, after the start", [f"{r['per_trial_ms']:.1f} ms" for r in results],
         f"< {DRIVER_GOAL_MS:g} ms"),
        ("driver CPU per trial, the start included", [f"{r['driver_ms']:.1f} ms" for r in results],
         ""),
        *[(f"  in quarter {q + 1} of the trials", [f"{r['quarters'][q]:.1f} ms" for r in results], "")
          for q in range(4)],
        ("  last quarter / second quarter", [f"{r['flat']:.2f}" for r in results], f"< {FLAT_GOAL:g}"),
        ("Ray head processes' CPU per trial", [f"{r['ray_ms']:.1f} ms" for r in results], ""),
        ("driver peak resident memory", [f"{r['peak'] / 2**20:.0f} MB" for r in results], ""),
        ("disk per trial (storage + MLflow store)", [f"{r['disk'] / r['n'] / 2**20:.1f} MB"
                                                     for r in results], ""),
        ("progress lines printed", [f"{r['lines']}" for r in results], ""),
        ("last trial's end to the command's return", [f"{r['end_s']:.1f} s" for r in results], ""),
        ("study status (a fresh process)", [f"{r['status_s']:.1f} s" for r in results], ""),
        ("study sync (a fresh process, nothing to send)", [f"{r['sync_s']:.1f} s" for r in results], ""),
    ]  # fmt: skip
    if len(results) > 1:
        small, big = results[0], results[-1]
        growth = (big["peak"] - small["peak"]) / (big["n"] - small["n"]) * 1000 / 2**20
        rows.append(("driver memory growth per 1,000 trials", [""] * (len(results) - 1)
                     + [f"{growth:.0f} MB"], ""))  # fmt: skip
    for label, values, goal in rows:
        print(f"{label:<52}" + "".join(f"{v:>12}" for v in values) + f"   {goal}")
    missed = [what for what, ok in verdicts if not ok]
    print("\ngoals: " + ("all met" if not missed else "NOT met: " + "; ".join(missed)))


if __name__ == "__main__":
    main()
