"""Do two revisions of this repository give the same numbers? (e.g. before and after a refactor)

    python tools/same_numbers.py 32a0288 HEAD                       # the quickstart, both revisions
    python tools/same_numbers.py 32a0288 HEAD --config configs/x.yaml

Each revision is checked out into a temporary git worktree and runs the study there (``study run``
on a local Ray, its own SQLite store) with this interpreter, importing that worktree's code. Then
every trial's final metrics and every logged learning-curve value are compared exactly (bit for bit:
``==`` on floats, NaN equal to NaN), keyed by the trial's params. Timings are left out. Prints one
line per difference and a summary; exits 1 if anything differs or a study fails.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMING_PREFIXES = ("metric_seconds_", "time_", "timestamp")


def run_revision(revision: str, config: str, workdir: Path) -> dict[str, dict[str, object]]:
    tree = workdir / revision.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
        check=True, capture_output=True,
    )  # fmt: skip
    try:
        uri = f"sqlite:///{tree}/mlruns.db"
        env = {**os.environ, "PYTHONPATH": str(tree)}
        command = [sys.executable, "-m", "study.cli", "run", config, "--tracking-uri", uri,
                   "--storage", str(tree / "ray_results")]  # fmt: skip
        print(f"{revision}: running {config} ...", flush=True)
        done = subprocess.run(command, cwd=tree, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            sys.exit(f"{revision}: study run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        return collect(uri)
    finally:
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)],
            capture_output=True,
        )  # fmt: skip


def collect(uri: str) -> dict[str, dict[str, object]]:
    """Trial params (as one key) -> final metrics and learning curves, timings left out."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    out: dict[str, dict[str, object]] = {}
    for experiment in client.search_experiments():
        for run in client.search_runs([experiment.experiment_id], "tags.role = 'trial'"):
            key = json.dumps(dict(sorted(run.data.params.items())))
            values: dict[str, object] = {}
            for name, value in run.data.metrics.items():
                if name.startswith(TIMING_PREFIXES):
                    continue
                if "/" in name:  # a learning curve: every logged value, in step order
                    history = client.get_metric_history(run.info.run_id, name)
                    values[name] = [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)]
                else:
                    values[name] = value
            out[key] = values
    return out


def same(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, tuple) and isinstance(b, tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("before")
    parser.add_argument("after")
    parser.add_argument("--config", default="configs/quickstart.yaml")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="same-numbers-") as workdir:
        before = run_revision(args.before, args.config, Path(workdir))
        after = run_revision(args.after, args.config, Path(workdir))
    differences = 0
    for key in sorted(set(before) | set(after)):
        if key not in before or key not in after:
            differences += 1
            print(f"only in {args.before if key in before else args.after}: trial {key}")
            continue
        for name in sorted(set(before[key]) | set(after[key])):
            a, b = before[key].get(name), after[key].get(name)
            if not same(a, b):
                differences += 1
                print(f"differs: {name} of trial {key}: {a!r} vs {b!r}")
    values = sum(len(v) for v in before.values())
    print(
        f"{len(before)} trials, {values} final metrics and learning curves compared between "
        f"{args.before} and {args.after}: {differences} differ"
    )
    sys.exit(1 if differences else 0)


if __name__ == "__main__":
    main()
