"""Analysis at Locatello et al.'s scale: how long do `study report`, `study best` and `study
status` take over 1,000 / 4,000 / 12,600 trial runs, and how much memory?

A SQLite store is filled through MLflow's client (``create_run``, ``log_batch``,
``set_terminated``: what trials call) with runs shaped like the paper's: six methods (DIP-VAE-I and
-II apart) x six strengths x seeds x seven datasets, each run with the params a trial logs, the
family's declared outputs tag, every final metric of the paper's metric set (about 50) and two
per-epoch curves of 20 epochs. The sizes grow one store (1,000, then 3,000 more, then 8,600 more),
so each size is the same study at another scale. Each command then runs in its own process, twice:
"cold" is the first run after the store grew (the report's cache empty), "cached" the second
(its cache filled by the first). Peak memory is the process's maximum resident set (``/usr/bin/time``).

Goals (issue 25): report over 12,600 runs under 2 minutes cold and 15 s cached; `best` under 10 s;
memory under 4 GB; and costs growing no faster than linearly (the ratio per run is printed).

``python benchmarks/analysis_scale.py [--sizes 1000 4000 12600] [--dir DIR] [--keep]``
"""

from __future__ import annotations

import argparse
import itertools
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STUDY = "locatello_scale"
# The paper's methods and six values of each one's strength (disentanglement_lib's study).
METHODS = {
    "vae": ("beta", [1, 2, 4, 6, 8, 16]),
    "annealed_vae": ("c_max", [5, 10, 25, 50, 75, 100]),
    "factor_vae": ("gamma", [10, 20, 30, 40, 50, 100]),
    "dip_vae_i": ("lambda_od", [1, 2, 5, 10, 20, 50]),
    "dip_vae_ii": ("lambda_od", [1, 2, 5, 10, 20, 50]),
    "beta_tc_vae": ("beta", [1, 2, 4, 6, 8, 10]),
}
DATASETS = ["dsprites", "color_dsprites", "noisy_dsprites", "scream_dsprites", "smallnorb",
            "cars3d", "shapes3d"]  # fmt: skip
METRIC_SET = ["mig", "dci", "sap", "modularity", "factor_vae", "beta_vae", "irs", "unsupervised",
              "downstream_logistic_regression", "downstream_boosted_trees"]  # fmt: skip
EPOCHS = 20
CURVES = ("loss/train", "loss/val")


def _final_names() -> list[str]:
    from trainables.metrics import get_metric

    names = [o for m in METRIC_SET for o in get_metric(m).outputs]
    names += [f"{n}_sampled" for n in get_metric("unsupervised").outputs]
    return [*names, "reconstruction_loss", "kl", "elbo", "loss"]


def _points() -> list[dict[str, str]]:
    """Every (method, strength, dataset, seed) in the order a sweep runs them, seeds outermost."""
    out = []
    for seed in itertools.count():
        for dataset, (method, (name, values)) in itertools.product(DATASETS, METHODS.items()):
            for value in values:
                family = "dip_vae" if method.startswith("dip_vae") else method
                params = {"family": family, name: str(value), "seed": str(seed),
                          "dataset.name": dataset, "latent_dim": "10", "batch_size": "64",
                          "steps": "300000", "lr": "0.0001", "metrics": json.dumps(METRIC_SET)}  # fmt: skip
                if family == "dip_vae":
                    params["dip_type"] = method[-2:].lstrip("_")
                out.append(params)
        if len(out) >= 12_600:
            return out


def fill(uri: str, start: int, stop: int, experiment_id: str) -> None:
    import numpy as np
    from mlflow.entities import Metric, Param, RunTag
    from mlflow.tracking import MlflowClient

    from trainables import get_family
    from trainables.core.outputs import TAG
    from trainables.metrics import metric_directions

    client = MlflowClient(uri)
    finals = _final_names()
    tag = get_family("vae").declared.with_metric_directions(metric_directions()).to_tag()  # as launch
    points = _points()
    rng = np.random.default_rng(start)
    began = time.time()
    for i in range(start, stop):
        params = points[i]
        now = 1_700_000_000_000 + i * 1000
        run = client.create_run(
            experiment_id, start_time=now, run_name=f"{params['family']}-{i}",
            tags={"role": "trial", "family": params["family"], TAG: tag, "trial_id": f"t{i:05d}"},
        )  # fmt: skip
        values = rng.random(len(finals))
        metrics = [Metric(k, float(v), now, 0) for k, v in zip(finals, values, strict=True)]
        metrics += [
            Metric(c, float(1 / (e + 1) + rng.random() * 0.01), now + e, e)
            for c in CURVES
            for e in range(EPOCHS)
        ]
        client.log_batch(
            run.info.run_id,
            metrics=metrics,
            params=[Param(k, v) for k, v in params.items()],
            tags=[RunTag("mlflow.runName", f"{params['family']}-{i}")],
        )
        client.set_terminated(run.info.run_id, "FINISHED", end_time=now + 500)
        if (i - start + 1) % 500 == 0:
            rate = (i - start + 1) / (time.time() - began)
            print(f"  filled {i + 1} runs ({rate:.0f} runs/s)", flush=True)


def timed(command: list[str], cwd: Path) -> tuple[float, float, str]:
    """Wall seconds and peak resident MB of one command, and its last output line."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "TIME %e %M", *command], cwd=cwd, capture_output=True, text=True
    )
    lines = out.stderr.strip().splitlines()
    stats = next(line for line in reversed(lines) if line.startswith("TIME "))
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({out.returncode}): {out.stderr[-2000:]}")
    _, seconds, kb = stats.split()
    last = (out.stdout.strip().splitlines() or [""])[-1]
    return float(seconds), int(kb) / 1024, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 4000, 12600])
    parser.add_argument("--dir", type=Path, default=None, help="work folder (default: a temp one)")
    parser.add_argument("--keep", action="store_true", help="keep the filled store")
    args = parser.parse_args()
    work = args.dir or Path(tempfile.mkdtemp(prefix="analysis_scale_"))
    work.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{work / 'mlruns.db'}"
    study = [str(ROOT / ".venv/bin/study")]
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    found = client.get_experiment_by_name(STUDY)
    experiment = found.experiment_id if found else client.create_experiment(STUDY)
    have = len(client.search_runs([experiment], max_results=50_000))
    rows = []
    for size in sorted(args.sizes):
        if size > have:
            print(f"filling runs {have + 1}..{size} through MLflow's client", flush=True)
            began = time.time()
            fill(uri, have, size, experiment)
            print(f"  {size - have} runs in {time.time() - began:.0f} s", flush=True)
            have = size
        cache = work / f"cache_{size}"
        shutil.rmtree(cache, ignore_errors=True)
        report = [*study, "report", "--study", STUDY, "--out", str(work / "report"),
                  "--tracking-uri", uri, "--cache", str(cache)]  # fmt: skip
        best = [*study, "best", "--study", STUDY, "--metric", "mig", "--tracking-uri", uri]
        for name, command in (("report", report), ("report", report), ("best", best)):
            kind = "cached" if name == "report" and any(
                r["command"] == "report" and r["runs"] == size for r in rows) else "cold"  # fmt: skip
            seconds, mb, _ = timed(command, work)
            rows.append({"runs": size, "command": name, "kind": kind, "s": seconds, "MB": mb})
            print(f"  {size} runs: {name} ({kind}) {seconds:.1f} s, {mb:.0f} MB", flush=True)
    _print_table(rows)
    if not args.keep and args.dir is None:
        shutil.rmtree(work, ignore_errors=True)


GOALS = {("report", "cold"): 120.0, ("report", "cached"): 15.0, ("best", "cold"): 10.0}
MEMORY_GOAL_MB = 4096


def _print_table(rows: list[dict]) -> None:
    first = {(r["command"], r["kind"]): r for r in rows}  # the smallest size of each
    print()
    print(f"{'runs':>6} {'command':<8} {'kind':<7} {'s':>7} {'MB':>7} {'s / run vs smallest':>20}"
          f" {'goal':>6} {'met':>4}")  # fmt: skip
    for r in rows:
        base = first[(r["command"], r["kind"])]
        ratio = (r["s"] / r["runs"]) / (base["s"] / base["runs"])
        goal = GOALS.get((r["command"], r["kind"]))
        met = r["s"] <= goal and r["MB"] <= MEMORY_GOAL_MB if r["runs"] >= 12_600 else None
        print(
            f"{r['runs']:>6} {r['command']:<8} {r['kind']:<7} {r['s']:>7.1f} {r['MB']:>7.0f} "
            f"{ratio:>20.2f} {goal:>6.0f} {'' if met is None else ('yes' if met else 'NO'):>4}"
        )
    print("\n's / run vs smallest' above 1 means the cost grows faster than the number of runs.")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
