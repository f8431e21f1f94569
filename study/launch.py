"""Launch a study on Ray Tune: data once into the object store, one trial per grid point, MLflow runs.

The only module that imports Ray. Families stay Ray-agnostic: ``_ray_entry`` adapts
``family.fit(cfg, data, ctx)`` to a Tune function trainable through ``RayContext``.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
import torch
from ray import tune

from trainables import NonFiniteLoss, get_family

from . import tracking
from .space import to_param_space
from .spec import SpecError, StudySpec

log = logging.getLogger(__name__)
_STATE_FILE = "state.pt"


@dataclass(frozen=True)
class LaunchInfo:
    family: str
    threads: int
    tracking: tracking.TrackingInfo


class RayContext:
    """TrialContext backed by Tune (checkpoints, results) and MLflow (the trial's child run)."""

    def __init__(self, launch: LaunchInfo, params: dict[str, Any]):
        context = tune.get_context()
        self._workdir = Path(tempfile.mkdtemp(prefix="trial-"))
        self.artifact_dir = self._workdir / "artifacts"
        self.artifact_dir.mkdir()
        self.run = tracking.TrialRun(
            launch.tracking, context.get_trial_id(), context.get_trial_name(), params
        )

    def report(
        self, metrics: dict[str, float], *, step: int, state: dict[str, Any] | None = None
    ) -> None:
        self.run.log_metrics(metrics, step=step)
        if state is None:
            tune.report(metrics)
            return
        with tempfile.TemporaryDirectory(dir=self._workdir) as directory:
            torch.save(state, Path(directory) / _STATE_FILE)
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(directory))

    def restore(self) -> dict[str, Any] | None:
        checkpoint = tune.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return torch.load(Path(directory) / _STATE_FILE, weights_only=True)


def _ray_entry(config: dict[str, Any], data: dict[str, Any], launch: LaunchInfo) -> None:
    torch.set_num_threads(launch.threads)
    family = get_family(launch.family)
    cfg = family.Config(**config["params"])
    ctx = RayContext(launch, cfg.model_dump(mode="json"))
    try:
        family.fit(cfg, data, ctx)
    except NonFiniteLoss as err:
        # Diverged: rerunning from the checkpoint would diverge again. End this trial, FAILED
        # with the reason, and let the study go on (no exception, so Tune does not retry).
        ctx.run.finish(None, status="FAILED", reason=str(err))
        tune.report({"diverged": 1.0})
        return
    ctx.run.finish(ctx.artifact_dir)


class _CloseRuns(tune.Callback):
    """End child runs that trial processes could not end themselves."""

    def __init__(self, info: tracking.TrackingInfo):
        self.info = info

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tracking.close_trial_run(self.info, trial.trial_id, "FINISHED", "stopped by Tune")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        tracking.close_trial_run(self.info, trial.trial_id, "FAILED", "trial error")


def _init_ray(address: str | None, num_cpus: int | None) -> None:
    if ray.is_initialized():
        return
    if address:
        ray.init(address=address, logging_level=logging.WARNING)
    else:
        ray.init(num_cpus=num_cpus, include_dashboard=False, logging_level=logging.WARNING)


def check_resources(spec: StudySpec) -> None:
    """A request the cluster cannot meet would leave trials PENDING forever: fail now instead."""
    total = ray.cluster_resources()
    for key, wanted in (("CPU", spec.resources.cpu), ("GPU", spec.resources.gpu)):
        if wanted > total.get(key, 0.0):
            raise SpecError(
                f"resources.{key.lower()}={wanted} per trial, but the Ray cluster has "
                f"{total.get(key, 0.0):g} {key}"
            )


LAUNCH_STAMP = "%Y%m%d-%H%M%S"


def latest_experiment(storage: Path, study: str) -> Path | None:
    """The newest ``<study>_<stamp>`` folder; a study named ``a`` must not pick up ``a_b``'s."""
    pattern = re.compile(rf"{re.escape(study)}_\d{{8}}-\d{{6}}")
    runs = sorted(p for p in storage.glob(f"{study}_*") if p.is_dir() and pattern.fullmatch(p.name))
    return runs[-1] if runs else None


@dataclass
class StudyResult:
    experiment_path: Path
    parent_run_id: str
    n_trials: int
    n_errors: int
    n_diverged: int = 0
    """Trials ended by a non-finite loss (their runs are FAILED with an ``end_reason`` tag)."""


def run_study(
    spec: StudySpec,
    *,
    config_text: str,
    tracking_uri: str,
    storage: str | Path,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    verbose: int = 1,
) -> StudyResult:
    """Validate, prepare data, start Ray, run every trial, and track everything in MLflow."""
    family = get_family(spec.family)
    storage = Path(storage).resolve()
    previous = latest_experiment(storage, spec.name) if resume else None
    if resume and previous is None:
        raise SpecError(f"--resume: no earlier launch of study {spec.name!r} under {storage}")

    # Everything that can fail on bad input happens before Ray starts and before MLflow is written.
    configs = spec.family_configs()
    started = time.perf_counter()
    data = family.prepare_data(spec.dataset, configs)
    log.info("prepared data in %.1fs", time.perf_counter() - started)

    _init_ray(address, num_cpus)
    check_resources(spec)

    experiment_path = previous or storage / f"{spec.name}_{time.strftime(LAUNCH_STAMP)}"
    experiment_id, parent_run_id = tracking.start_parent_run(
        tracking_uri,
        spec.name,
        spec.family,
        config_text,
        {"ray_experiment": str(experiment_path), "resumed": str(bool(previous)).lower()},
    )
    info = tracking.TrackingInfo(
        uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study=spec.name,
        family=spec.family,
        dataset=json.loads(spec.dataset.model_dump_json()),
    )
    launch = LaunchInfo(spec.family, max(1, int(spec.resources.cpu)), info)
    # with_parameters puts the data into the object store once; trials read it from there.
    trainable = tune.with_resources(
        tune.with_parameters(_ray_entry, data=data, launch=launch),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    run_config = tune.RunConfig(
        name=experiment_path.name,
        storage_path=str(storage),
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
        callbacks=[_CloseRuns(info)],
        verbose=verbose,
    )
    # We checkpoint every epoch and keep one: Tune then snapshots the experiment after each
    # deletion and warns every few seconds; the snapshot is small and local, so silence the warning.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    status = "FAILED"
    try:
        if previous is not None:
            tuner = tune.Tuner.restore(
                str(previous), trainable, resume_errored=True, param_space=to_param_space(spec)
            )
        else:
            tuner = tune.Tuner(
                trainable,
                param_space=to_param_space(spec),
                tune_config=tune.TuneConfig(
                    max_concurrent_trials=spec.max_concurrent_trials, reuse_actors=True
                ),
                run_config=run_config,
            )
        results = tuner.fit()
        n_errors = len(results.errors)
        n_diverged = sum(1 for r in results if (r.metrics or {}).get("diverged"))
        status = "FINISHED" if n_errors == 0 and n_diverged == 0 else "FAILED"
    except KeyboardInterrupt:
        status = "KILLED"
        raise
    finally:
        tracking.end_run(tracking_uri, parent_run_id, status)
    return StudyResult(experiment_path, parent_run_id, len(results), n_errors, n_diverged)
