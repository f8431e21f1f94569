"""How much faster is the whole `study score` process than disentanglement_lib as a whole process?

One .npz of dSprites-shaped factors (3, 6, 40, 32, 32) and 10-dim codes (a noisy linear mixture of
the factors, like the "mixed" codes of benchmarks/metrics.py), 4,000 train / 2,000 test points,
fixed seed. Each side is timed from the outside as a fresh process (interpreter start, imports,
loading the file, the metrics, printing), median of 3 runs after one untimed warm-up run each
(the warm-up fills the OS file cache and numba's on-disk cache, as any second use would):

- disentanglement_lib 1.5: a small script (written to a temp file) that loads its metric modules
  as trainables/metrics/reference.py does (gin.tf stub, histogram discretizer with 20 bins) and
  computes MIG, SAP, DCI, modularity + explicitness and the unsupervised scores with its array-level
  functions on the same arrays (transposed to its (num_codes, num_points) layout);
- ours: ``python -m study.cli score FILE.npz --metrics mig,sap,dci,modularity,unsupervised
  --mode reference`` and the same with ``--mode fast``.

Also the import-only time of each side and the wall time of ``study --help``. Subprocesses run in a
temp dir with OMP_NUM_THREADS / MKL_NUM_THREADS unset (all cores). Goals (issue): reference mode at
least 1.8x and fast mode at least 10x faster than the library process; ``study --help`` under 0.5 s.

Run: python benchmarks/score_process.py            (4,000 / 2,000 points, 3 runs each; minutes)
     python benchmarks/score_process.py --quick    (1,000 / 500 points, 1 run each: smoke check)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SIZES = (3, 6, 40, 32, 32)
METRICS = "mig,sap,dci,modularity,unsupervised"
GOALS = {"ours, reference": 1.8, "ours, fast": 10.0}
HELP_GOAL_S = 0.5

REFERENCE_IMPORTS = """\
import sys, types
sys.modules.setdefault("gin.tf", types.ModuleType("gin.tf"))
import gin
from disentanglement_lib.evaluation.metrics import (
    dci, mig, modularity_explicitness, sap_score, unsupervised_metrics, utils,
)
gin.clear_config()
gin.bind_parameter("discretizer.discretizer_fn", utils._histogram_discretize)
gin.bind_parameter("discretizer.num_bins", 20)
"""

# disentanglement_lib's compute_* functions sample their own points; on fixed arrays their bodies
# reduce to these calls (modularity_explicitness and unsupervised_metrics inline them).
REFERENCE_SCORE = """\
import json
import numpy as np
with np.load(sys.argv[1]) as f:
    mus, ys = f["codes"].T.astype(float), f["factors"].T
    mus_test, ys_test = f["codes_test"].T.astype(float), f["factors_test"].T
scores = {}
scores["mig"] = mig._compute_mig(mus, ys)["discrete_mig"]
scores["sap"] = sap_score._compute_sap(mus, ys, mus_test, ys_test, False)["SAP_score"]
d = dci._compute_dci(mus, ys, mus_test, ys_test)
scores["dci_disentanglement"] = d["disentanglement"]
scores["dci_completeness"] = d["completeness"]
scores["dci_informativeness_test"] = d["informativeness_test"]
mi = utils.discrete_mutual_info(utils.make_discretizer(mus), ys)
scores["modularity"] = modularity_explicitness.modularity(mi)
mus_norm, mean, std = utils.normalize_data(mus)
mus_test_norm, _, _ = utils.normalize_data(mus_test, mean, std)
explicit = [modularity_explicitness.explicitness_per_factor(mus_norm, ys[i], mus_test_norm,
                                                             ys_test[i]) for i in range(len(ys))]
scores["explicitness_train"] = float(np.mean([e[0] for e in explicit]))
scores["explicitness_test"] = float(np.mean([e[1] for e in explicit]))
cov = np.cov(mus)
scores["gaussian_total_correlation"] = unsupervised_metrics.gaussian_total_correlation(cov)
wc = unsupervised_metrics.gaussian_wasserstein_correlation(cov)
scores["gaussian_wasserstein_correlation"] = wc
scores["gaussian_wasserstein_correlation_norm"] = wc / np.sum(np.diag(cov))
discrete = utils.make_discretizer(mus)
mi = utils.discrete_mutual_info(discrete, discrete)
np.fill_diagonal(mi, 0)
scores["mutual_info_score"] = np.sum(mi) / (len(mus) ** 2 - len(mus))
print(json.dumps({k: float(v) for k, v in scores.items()}))
"""

COMPARED = ("mig", "sap", "dci_disentanglement", "dci_informativeness_test", "modularity",
            "explicitness_test", "gaussian_total_correlation", "mutual_info_score")  # fmt: skip


def _write_data(path: Path, n_train: int, n_test: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    factors = np.stack([rng.integers(0, s, n) for s in SIZES], axis=1)
    base = factors / (np.array(SIZES) - 1)
    codes = base @ rng.normal(size=(len(SIZES), 10)) + rng.normal(0, 0.1, (n, 10))
    np.savez(path, codes=codes[:n_train], factors=factors[:n_train],
             codes_test=codes[n_train:], factors_test=factors[n_train:])  # fmt: skip


def _env() -> dict[str, str]:
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.pop(name, None)
    return env


def _run(command: list[str], cwd: Path, runs: int, warmup: bool) -> tuple[list[float], str]:
    """Wall times of ``runs`` fresh processes (after an optional untimed one) and the last stdout."""
    env, times, out = _env(), [], ""
    for i in range(runs + warmup):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
        elapsed = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"failed ({done.returncode}): {' '.join(command)}\n{done.stderr[-3000:]}")
        if i >= warmup:
            times.append(elapsed)
        out = done.stdout
    return times, out


def _fmt_runs(times: list[float]) -> str:
    return ", ".join(f"{t:.2f}" for t in times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1,000 / 500 points, 1 run each")
    args = parser.parse_args()
    n_train, n_test = (1_000, 500) if args.quick else (4_000, 2_000)
    runs = 1 if args.quick else 3
    python = sys.executable
    study = Path(python).parent / "study"
    help_command = (
        [str(study), "--help"] if study.exists() else [python, "-m", "study.cli", "--help"]
    )

    with tempfile.TemporaryDirectory(prefix="score_process_") as tmp:
        cwd = Path(tmp)
        data = cwd / "codes.npz"
        _write_data(data, n_train, n_test)
        script = cwd / "reference_score.py"
        script.write_text(REFERENCE_IMPORTS + REFERENCE_SCORE)
        ours = [python, "-m", "study.cli", "score", str(data), "--metrics", METRICS, "--json"]
        print(f"{n_train} train / {n_test} test points, factors {SIZES}, 10-dim codes, "
              f"{os.cpu_count()} cores, median of {runs} fresh process(es)\n", flush=True)  # fmt: skip

        timed: dict[str, tuple[list[float], str]] = {}
        for name, command, warm in (
            ("disentanglement_lib process", [python, str(script), str(data)], True),
            ("ours, reference", [*ours, "--mode", "reference"], True),
            ("ours, fast", [*ours, "--mode", "fast"], True),
            ("study --help", help_command, True),
            ("import: disentanglement_lib", [python, "-c", REFERENCE_IMPORTS], False),
            ("import: study.cli", [python, "-c", "import study.cli"], False),
        ):
            timed[name] = _run(command, cwd, runs, warm)
            print(f"  {name}: {_fmt_runs(timed[name][0])} s", file=sys.stderr, flush=True)

    library = statistics.median(timed["disentanglement_lib process"][0])
    print(f"{'process':<30}{'median s':>10}  {'runs (s)':<22}{'library / this':>15}")
    for name in ("disentanglement_lib process", "ours, reference", "ours, fast", "study --help",
                 "import: disentanglement_lib", "import: study.cli"):  # fmt: skip
        times = timed[name][0]
        median = statistics.median(times)
        ratio = (
            f"{library / median:.2f}x"
            if name in ("disentanglement_lib process", "ours, reference", "ours, fast")
            else "-"
        )
        print(f"{name:<30}{median:>10.2f}  {_fmt_runs(times):<22}{ratio:>15}")

    print("\ngoals:")
    for name, goal in GOALS.items():
        ratio = library / statistics.median(timed[name][0])
        print(f"  {name.split(', ')[1]} mode {ratio:.2f}x faster (goal {goal:g}x): "
              f"{'met' if ratio >= goal else 'NOT met'}")  # fmt: skip
    help_s = statistics.median(timed["study --help"][0])
    print(f"  study --help {help_s:.2f} s (goal < {HELP_GOAL_S} s): "
          f"{'met' if help_s < HELP_GOAL_S else 'NOT met'}")  # fmt: skip

    lib_scores = json.loads(timed["disentanglement_lib process"][1])
    ref_scores = json.loads(timed["ours, reference"][1])
    fast_scores = json.loads(timed["ours, fast"][1])
    print(f"\n{'score':<30}{'library':>10}{'reference':>11}{'fast':>10}")
    for key in COMPARED:
        print(f"{key:<30}{lib_scores[key]:>10.4f}{ref_scores[key]:>11.4f}{fast_scores[key]:>10.4f}")
    print("\nour in-process seconds per metric, reference then fast (study score's own timing):")
    for key in ref_scores["seconds"]:
        print(f"  {key:<28}{ref_scores['seconds'][key]:>10.2f}{fast_scores['seconds'][key]:>11.2f}")


if __name__ == "__main__":
    main()
