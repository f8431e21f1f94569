"""``study rescore``: new or changed metrics from each finished trial's saved codes, written into
the same MLflow runs, as Ray tasks (one per run) spread over the cluster.

Each trial saves exactly the rows it scored as ``codes.npz`` (and ``codes_sampled.npz`` for a
stochastic encoder), with its metric RNG state, mode and options (``trainables.core.evaluation``).
A task downloads those files and runs each asked metric through ``study score``'s path
(``score_arrays``), one metric at a time from the file's RNG state: a metric's value depends on the
codes, the mode and the options only, not on which other metrics were asked with it. The driver
writes what the tasks return with ``log_batch``, which leaves the run's status and end time as they
are.

Idempotence (MLflow metric histories are append-only): for each key, the run's current value is the
latest entry of its history (highest step, then latest time, as MLflow orders them). A key whose
value equals it (to 1e-9 relative) is skipped; any other value is appended at the step of that
latest entry (a new key at the run's final step, where its other final metrics are), with the
current time, so it becomes the run's value and the old one stays in the history. Rescoring twice
thus writes nothing the second time. The tag ``rescored`` lists, per rescore that wrote something,
its time (UTC), the metrics it wrote and the mode asked.

FactorVAE and BetaVAE (``MetricSpec.needs_source``) fix one factor and vary the others: they need
the codes of the whole factor grid, which a trial saves (``grid_codes``) only when its own metrics
included one of them. Encoding the grid again through the saved model (``trainables.load_model``)
would cost a full dataset pass per run (737,280 dSprites images), so it is not done here.
"""

from __future__ import annotations

import json
import math
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mlflow.entities import Metric, RunTag
from mlflow.tracking import MlflowClient

from analysis.results import require_store
from analysis.stores import shown_uri
from trainables.errors import InputError, UserError
from trainables.metrics import MODES, SAMPLED

from . import tracking

TAG = "rescored"
CODES = {"": "codes.npz", SAMPLED: "codes_sampled.npz"}  # score-name suffix -> artifact
MAX_TAG = 5000  # MLflow's tag value limit (older servers: 5,000; newer: 8,000)
SEARCH_PAGE = 1000


@dataclass
class Target:
    """One run to rescore: its saved codes (suffix -> artifact path) and the metrics it can take."""

    run_id: str
    name: str
    files: dict[str, str]
    metrics: list[str]


@dataclass
class Plan:
    uri: str
    study: str
    metrics: list[str]
    mode: str | None
    targets: list[Target]
    skipped: list[str] = field(default_factory=list)  # "run name: why"


@dataclass
class Summary:
    done: int = 0
    written: int = 0
    unchanged: int = 0
    failed: list[str] = field(default_factory=list)  # "run name: why"


def parse_metrics(text: str) -> list[str]:
    """``mig,sap`` -> registered metric names, in order, once each (``RegistryError`` if not)."""
    from trainables.metrics import get_metric

    names = list(dict.fromkeys(m.strip() for m in text.split(",") if m.strip()))
    if not names:
        raise InputError("--metrics names no metric (e.g. --metrics mig,sap)")
    for name in names:
        get_metric(name)
    return names


def _trial_runs(client: MlflowClient, experiment_id: str) -> list[Any]:
    runs, token = [], None
    while True:
        page = client.search_runs(
            [experiment_id], "tags.role = 'trial' and attributes.status = 'FINISHED'",
            max_results=SEARCH_PAGE, page_token=token,
        )  # fmt: skip
        runs += list(page)
        token = page.token
        if not token:
            return runs


def _has_grid(run: Any) -> bool:
    """Whether the run's codes carry the encoded factor grid: its metrics had a sampling one."""
    from trainables.metrics import get_metric

    try:
        recorded = json.loads(run.data.params.get("metrics", "[]"))
        return any(get_metric(name).needs_source for name in recorded)
    except (ValueError, TypeError, UserError):
        return False


def plan(uri: str, study: str, metrics: list[str], mode: str | None = None) -> Plan:
    """What to rescore, checked before Ray starts: every mistake is one ``UserError`` line."""
    from trainables.metrics import get_metric

    if mode is not None and mode not in MODES:
        raise InputError(f"--mode must be one of {list(MODES)}, got {mode!r}")
    require_store(uri)
    try:
        tracking.check_reachable(uri)
    except tracking.TrackingUnreachable as err:
        raise InputError(str(err)) from None
    client = MlflowClient(uri)
    experiment = client.get_experiment_by_name(study)
    if experiment is None:
        known = sorted(e.name for e in client.search_experiments())
        raise InputError(f"no study {study!r} in {shown_uri(uri)}; known: {known}")
    runs = _trial_runs(client, experiment.experiment_id)
    if not runs:
        raise InputError(f"study {study!r} has no finished trial runs in {shown_uri(uri)}")
    sampling = [m for m in metrics if get_metric(m).needs_source]
    targets, skipped, no_codes = [], [], 0
    for run in sorted(runs, key=lambda r: r.info.run_name or r.info.run_id):
        name = run.info.run_name or run.info.run_id
        present = {a.path for a in client.list_artifacts(run.info.run_id)}
        files = {suffix: path for suffix, path in CODES.items() if path in present}
        if "" not in files:
            no_codes += 1
            skipped.append(f"{name}: no codes.npz artifact")
            continue
        can = [m for m in metrics if m not in sampling or _has_grid(run)]
        if len(can) < len(metrics):
            skipped.append(f"{name}: {', '.join(sorted(set(metrics) - set(can)))} (no factor grid)")
        if can:
            targets.append(Target(run.info.run_id, name, files, can))
    if no_codes == len(runs):
        raise InputError(
            f"no finished run of study {study!r} has a codes.npz artifact to rescore from "
            f"({len(runs)} runs)"
        )
    for name in sampling:
        if not any(name in t.metrics for t in targets):
            raise InputError(
                f"{name} cannot be rescored from saved codes: it draws batches with one factor "
                "fixed, which needs the codes of the whole factor grid, and a run saves them only "
                f"when its own metrics included factor_vae or beta_vae (no run of {study!r} did); "
                f"run the study again with {name} in its metrics"
            )
    return Plan(uri, study, metrics, mode, targets, skipped)


def score_run(
    uri: str, run_id: str, files: dict[str, str], metrics: list[str], mode: str | None
) -> dict[str, Any]:
    """The asked metrics of one run from its saved codes (what a Ray task runs): ``scores``
    (metric -> its keys -> floats; ``_sampled`` keys from the sampled codes) and ``estimators``
    (metric -> how it was estimated, the ``estimator.<name>`` tag a trial sets)."""
    from trainables.metrics import describe_estimator, get_metric
    from trainables.metrics.scoring import load_arrays, score_arrays

    client = MlflowClient(uri)
    scores: dict[str, dict[str, float]] = {name: {} for name in metrics}
    estimators: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as folder:
        for suffix, path in files.items():
            local = tracking.retry_on_conflict(
                lambda p=path: client.download_artifacts(run_id, p, folder)
            )
            arrays = load_arrays(local)
            chosen = mode or str(arrays.get("metric_mode", "reference"))
            options = json.loads(str(arrays.get("metric_options", "{}")))
            for name in metrics:  # one at a time, each from the file's RNG state
                result = score_arrays(arrays, [name], mode=chosen, n_jobs=1)
                outputs = get_metric(name).outputs
                scores[name].update(
                    {f"{k}{suffix}": float(v) for k, v in result.items() if k in outputs}
                )
                estimators[name] = describe_estimator(name, options, chosen)
    return {"scores": scores, "estimators": estimators}


def _latest(history: list[Metric]) -> Metric | None:
    """The entry MLflow shows as the run's value: highest step, then latest time, then value."""
    return max(history, key=lambda m: (m.step, m.timestamp, m.value), default=None)


def _final_step(client: MlflowClient, run: Any) -> int:
    """The step of the run's final metrics: where it logged its metric times (0 if none)."""
    for key in sorted(run.data.metrics):
        if key.startswith("metric_seconds_"):
            latest = _latest(client.get_metric_history(run.info.run_id, key))
            return latest.step if latest else 0
    return 0


def write_scores(
    client: MlflowClient,
    run_id: str,
    scores: dict[str, dict[str, float]],
    estimators: dict[str, str] | None = None,
    mode: str | None = None,
) -> tuple[int, int]:
    """Write what changed into the run (the rule in the module docstring); ``scores``: metric ->
    its keys -> values. Returns (values written, values unchanged)."""
    run = client.get_run(run_id)
    now = int(time.time() * 1000)
    final: int | None = None
    new: list[Metric] = []
    names: list[str] = []  # the metrics with a value written
    for name, values in scores.items():
        for key, value in values.items():
            latest = _latest(client.get_metric_history(run_id, key))
            if latest is not None and math.isclose(
                latest.value, value, rel_tol=1e-9, abs_tol=1e-12
            ):
                continue
            if latest is None and final is None:
                final = _final_step(client, run)
            new.append(Metric(key, value, now, latest.step if latest is not None else final))
            names += [name] if name not in names else []
    total = sum(len(values) for values in scores.values())
    if not new:
        return 0, total
    stamp = datetime.fromtimestamp(now / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    entry = f"{stamp} {','.join(names)}" + (f" ({mode})" if mode else "")
    entries = [e for e in run.data.tags.get(TAG, "").split("; ") if e] + [entry]
    while len(entries) > 1 and len("; ".join(entries)) > MAX_TAG:
        entries.pop(0)  # the oldest first: the metric histories keep every value anyway
    tags = [RunTag(TAG, "; ".join(entries)[-MAX_TAG:])]
    for name in names:
        text = (estimators or {}).get(name)
        if text and run.data.tags.get(f"estimator.{name}") != text:
            tags.append(RunTag(f"estimator.{name}", text))
    tracking.retry_on_conflict(lambda: client.log_batch(run_id, metrics=new, tags=tags))
    return len(new), total - len(new)


def _reason(err: BaseException) -> str:
    """One line for a task's failure: its own exception's message where Ray wraps it."""
    cause = getattr(err, "cause", None) or err
    text = str(cause).strip().splitlines()
    first = text[-1] if text else ""
    return first if isinstance(cause, UserError) else f"{type(cause).__name__}: {first}"


def _line(summary: Summary, running: int, waiting: int, total: int, started: float) -> str:
    """``[3/8] 2 done, 2 running, 3 pending, 1 failed · 14s``."""
    counts = {"done": summary.done, "running": running, "pending": waiting,
              "failed": len(summary.failed)}  # fmt: skip
    parts = ", ".join(f"{n} {what}" for what, n in counts.items() if n) or "starting"
    ended = summary.done + len(summary.failed)
    seconds = int(round(time.monotonic() - started))
    clock = f"{seconds}s" if seconds < 60 else f"{seconds // 60}m{seconds % 60:02d}s"
    return f"[{ended}/{total}] {parts} · {clock}"


def run(
    plan: Plan, address: str | None, num_cpus: int | None, say: Callable[[str], Any]
) -> Summary:
    """One Ray task per run (a CPU each; as many in flight as the cluster has CPUs), the driver
    writing each result as it comes; a line each time the counts change."""
    import ray

    from .ray_start import init_ray

    init_ray(address, num_cpus)
    summary = Summary()
    try:
        task = ray.remote(num_cpus=1, max_retries=1)(score_run)
        window = max(1, int(ray.cluster_resources().get("CPU", 1)))
        waiting, running = list(plan.targets), {}
        total, started = len(plan.targets), time.monotonic()
        client = MlflowClient(plan.uri)
        while waiting or running:
            while waiting and len(running) < window:
                target = waiting.pop(0)
                ref = task.remote(plan.uri, target.run_id, target.files, target.metrics, plan.mode)
                running[ref] = target
            say(_line(summary, len(running), len(waiting), total, started))
            (ref,), _ = ray.wait(list(running), num_returns=1)
            target = running.pop(ref)
            try:
                result = ray.get(ref)
                written, same = write_scores(
                    client, target.run_id, result["scores"], result["estimators"], plan.mode
                )
            except Exception as err:  # the task's error, or the store's: this run only
                summary.failed.append(f"{target.name}: {_reason(err)}")
                say(f"failed {summary.failed[-1]}")
                continue
            summary.done += 1
            summary.written += written
            summary.unchanged += same
        say(_line(summary, 0, 0, total, started))
    finally:
        ray.shutdown()
    return summary
