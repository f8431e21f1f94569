"""Launch a study on Ray Tune: data once into the object store, one trial per grid point, MLflow runs.

The driver: it validates, prepares each data view once, starts (or joins) Ray, runs Tune with the
trial entry of ``study.trial`` and the search of ``study.search``, keeps the launch record
(``study.records``) and ends the launch in MLflow however it ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.exceptions import RayError
from ray.tune.error import TuneError

from trainables import get_family
from trainables.metrics import metric_directions

from . import causes, database, sources, tracking
from .callbacks import CloseRuns
from .journal import launch_ends, sync_experiment
from .progress import Progress
from .ray_start import check_resources, init_ray
from .records import (
    LAUNCH_FILE,
    LAUNCH_STAMP,
    check_checkpoints,
    close_launch,
    first_difference,
    latest_experiment,
    launch_plan,
    launches,
    local_ray_turn,
    read_launch,
    study_lock,
    update_launch,
)
from .resume import RESUMES, ResumePlan, ResumeSearcher, plan_grid, plan_optuna
from .search import SearchSetup, search_setup
from .spec import SpecError, StudySpec
from .storage import StoragePath, storage_path
from .trial import VIEWS, LaunchInfo, ray_entry

log = logging.getLogger(__name__)


@dataclass
class StudyResult:
    experiment_path: StoragePath
    parent_run_id: str
    n_trials: int
    n_errors: int
    n_diverged: int = 0
    """Trials ended by a non-finite loss (their runs are FAILED with an ``end_reason`` tag)."""
    interrupted: str | None = None
    """The signal that stopped the launch early (``SIGINT``, ``SIGTERM``), None if it ran out."""
    n_finished: int = 0
    tracking_pending: bool = False
    """Something could not be sent to MLflow (server away): ``study sync`` sends it later."""
    n_stopped: int = 0
    """Trials the scheduler (ASHA) stopped early: KILLED runs tagged ``stopped``."""
    n_misconfigured: int = 0
    """Trials whose final report lacked ``search.metric`` (FAILED, with the reason)."""
    causes: dict[str, int] = field(default_factory=dict)
    """Trials that did not finish, by cause (``study.causes``)."""
    ray_error: str | None = None
    """Ray's own error, in one line, when it ended the launch early."""


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


class _Signals:
    """SIGTERM stops a launch as Ctrl-C does (Tune saves its state, then returns early)."""

    def __init__(self) -> None:
        self.received: str | None = None

    def __enter__(self) -> _Signals:
        self._term = signal.signal(signal.SIGTERM, self._on_term)
        self._int = signal.getsignal(signal.SIGINT)
        return self

    def after_fit(self) -> None:
        """Note a Ctrl-C that Tune handled. Tune swaps in its own SIGINT handler for the run and
        puts the one before it back only when a SIGINT arrives (ray.tune.tune
        ``_setup_signal_catching``): the old handler back after a run means a SIGINT came."""
        tune_handles = not int(os.environ.get("TUNE_DISABLE_SIGINT_HANDLER", "0"))
        if self.received is None and tune_handles and signal.getsignal(signal.SIGINT) is self._int:
            self.received = "SIGINT"

    def _on_term(self, signum: int, frame: Any) -> None:
        self.received = "SIGTERM"
        os.kill(os.getpid(), signal.SIGINT)  # Tune's handler: a graceful stop

    def __exit__(self, *exc: Any) -> None:
        signal.signal(signal.SIGTERM, self._term)


def run_study(
    spec: StudySpec,
    *,
    config_text: str,
    tracking_uri: str,
    storage: str | Path | StoragePath,
    address: str | None = None,
    num_cpus: int | None = None,
    resume: bool = False,
    extend: bool = False,
    verbose: int = 1,
    say: Callable[[str], Any] | None = None,
) -> StudyResult:
    """Validate, prepare data, start Ray, run every trial, and track everything in MLflow.

    ``resume`` continues the study's latest launch: the same parent run, no finished trial rerun,
    unfinished ones from their latest checkpoint; a spec that differs from that launch's is refused.
    ``extend`` adds ``search.num_samples`` new points to a study with sampled axes, as a new launch
    that continues the earlier ones (new draws; Optuna warm-started from what they measured).
    ``say``: where one-line notes for the user go (what a resume will run; with ``verbose`` 0,
    a progress line each time the launch's state changes).
    """
    family = get_family(spec.family)
    tracking_uri = database.password_to_env(tracking_uri)  # never pickled into Tune's files
    storage = storage_path(storage)
    storage.check_writable()
    if spec.source is not None and spec.resolved_source is None:
        tracking.check_reachable(tracking_uri)
        spec = sources.resolve(spec, tracking_uri)
    effective = json.loads(spec.model_dump_json())
    previous = latest_experiment(storage, spec.name) if resume else None
    launch_record: dict[str, Any] | None = None
    if resume:
        if previous is None:
            raise SpecError(f"resume: no earlier launch of study {spec.name!r} under {storage}")
        launch_record = read_launch(previous)
        check_checkpoints(previous)
        key = first_difference(launch_record["spec"], effective)
        if key is not None:
            raise SpecError(
                f"resume: {key} differs from the launch being resumed ({previous.name}); "
                f"resume it with `study resume {spec.name}` or give the study a new name"
            )
    extend_from: list[StoragePath] = []
    if launch_record is not None:  # a resumed extension draws / warm-starts as it did
        extend_from = [storage / name for name in launch_record.get("extends", [])]
    if extend:
        if resume:
            raise SpecError("--extend starts a new launch; --resume continues one: give one")
        extend_from = _check_extension(spec, effective, storage)
    tracking.check_reachable(tracking_uri)
    tracking.artifact_location(tracking_uri, spec.name, storage)  # a path too long: refused now

    # Everything that can fail on bad input happens before Ray starts and before MLflow is written.
    configs = spec.family_configs()
    started = time.perf_counter()
    # Each distinct data view once, on the driver; trials take theirs from the object store.
    views = {key: family.prepare_data(view, configs) for key, view in spec.views().items()}
    data = views.pop("") if "" in views else {VIEWS: views}
    log.info("prepared %d data view(s) in %.1fs", len(views) or 1, time.perf_counter() - started)
    local_turn = local_ray_turn(spec.name) if address is None else contextlib.nullcontext()
    with study_lock(storage, spec.name), local_turn:
        return _run_locked(
            spec, data, effective, previous, launch_record, config_text, tracking_uri, storage,
            address, num_cpus, verbose, extend_from, say,
        )  # fmt: skip


def _resumed_dirname(trial: Any) -> str:
    """A resume's Tune folder for a trial: which trial it continues, not its every param (its
    journal and checkpoints stay in that trial's folder; this one holds Tune's files only)."""
    continues = trial.config.get(RESUMES)
    prefix = f"continues_{continues}" if continues else trial.trainable_name
    return f"{prefix}_{trial.trial_id}"


def _resume_setup(
    spec: StudySpec, previous: StoragePath, record: dict[str, Any], extend_from: list[StoragePath]
) -> tuple[SearchSetup, ResumePlan]:
    """The search of a resume of launch ``previous`` and what it runs, from its journals."""
    if spec.search.algorithm == "grid":
        search = search_setup(spec, extend_from)
        return search, plan_grid(previous, search.param_space)
    n_points = int(record.get("n_points") or spec.n_points)
    plan = plan_optuna(previous, n_points, max(len(spec.grid_combinations()), 1))
    # Warm-started with what the launch's own finished trials measured, too.
    search = search_setup(spec, extend_from, [previous], asked=plan.n_started_points)
    return search, plan


def _check_extension(
    spec: StudySpec, effective: dict[str, Any], storage: StoragePath
) -> list[StoragePath]:
    """The launches an extension continues; refused unless they searched the same space."""
    if not spec.sampled_axes:
        raise SpecError("--extend adds sampled points; this study's axes are all grids")
    earlier = launches(storage, spec.name)
    if not earlier:
        raise SpecError(f"--extend: no earlier launch of study {spec.name!r} under {storage}")
    record = read_launch(earlier[-1])
    last = record["spec"]
    ignore = {"search": {**last.get("search", {}), "num_samples": None}}
    mine = {**effective, "search": {**effective["search"], "num_samples": None}}
    key = first_difference({**last, **ignore}, mine)
    if key is not None:
        raise SpecError(
            f"--extend: {key} differs from the study's last launch ({earlier[-1].name}); "
            "an extension searches the same space (only search.num_samples may change)"
        )
    return [storage / name for name in record.get("extends", [])] + [earlier[-1]]


def _run_locked(
    spec, data, effective, previous, launch_record, config_text, tracking_uri, storage, address,
    num_cpus, verbose, extend_from, say,
) -> StudyResult:  # fmt: skip
    init_ray(address, num_cpus)
    check_resources(spec)
    # what its runs report (their tag, the plan's), with the metrics' directions for readers
    declared = get_family(spec.family).declared.with_metric_directions(metric_directions())
    plan = launch_plan(spec, declared)

    # Before MLflow is written: it can fail.
    resume_plan: ResumePlan | None = None
    if previous is not None:
        search, resume_plan = _resume_setup(spec, previous, launch_record, extend_from)
        if say is not None:
            new = f", {resume_plan.n_new} new" if resume_plan.n_new else ""
            say(
                f"resuming {previous.name}: {resume_plan.n_done} trials ended, "
                f"{len(resume_plan.resumed)} to continue, "
                f"{len(resume_plan.fixed) - len(resume_plan.resumed)} to start{new} "
                "(read from the trial journals; Tune's saved state is not read)"
            )
    else:
        search = search_setup(spec, extend_from)
    experiment_path = previous or storage / f"{spec.name}_{time.strftime(LAUNCH_STAMP)}"
    # The lock is ours: any launch of this study still RUNNING under this storage lost its driver.
    tracking.close_stale_launches(
        tracking_uri, spec.name, str(storage), keep=launch_record and launch_record["parent_run_id"]
    )
    if launch_record is not None:
        experiment_id, parent_run_id = tracking.reopen_parent_run(
            tracking_uri, launch_record["parent_run_id"]
        )
        update_launch(previous, status=None, interrupted=None, ended_at=None)  # running again
    else:
        experiment_id, parent_run_id = tracking.start_parent_run(
            tracking_uri,
            spec.name,
            spec.family,
            config_text,
            {"ray_experiment": str(experiment_path), "storage": str(storage)},
            description=spec.description,
            storage=storage,
        )
        experiment_path.mkdir(parents=True, exist_ok=True)
        (experiment_path / LAUNCH_FILE).write_text(
            json.dumps(
                {
                    "parent_run_id": parent_run_id,
                    "spec": effective,  # the one stored form; MLflow's config.yaml is its copy
                    "n_points": spec.n_points if spec.sampled_axes else 0,
                    "extends": [p.name for p in extend_from],
                    "plan": plan,
                }  # fmt: skip
            )
        )
    info = tracking.TrackingInfo(
        uri=tracking_uri,
        experiment_id=experiment_id,
        parent_run_id=parent_run_id,
        study=spec.name,
        family=spec.family,
        dataset=json.loads(spec.dataset.model_dump_json()),
        upstreams=sources.provenance_tags(spec) if spec.source is not None else {},
        outputs=declared.to_tag(),
        axes=tuple(plan["axes"]),
    )
    resumed = resume_plan.resumed if resume_plan else None
    launch = LaunchInfo(
        spec.family, max(1, int(spec.resources.cpu)), info, search.grid, search.by_index,
        search.metric, tuple(a.name for a in spec.sampled_axes), resumed,
    )  # fmt: skip
    if VIEWS in data:  # one object per view: a node maps only the views its trials use
        data = {VIEWS: {key: ray.put(view) for key, view in data[VIEWS].items()}}
    # with_parameters puts the data into the object store once; trials read it from there.
    trainable = tune.with_resources(
        tune.with_parameters(ray_entry, data=data, launch=launch),
        {"cpu": spec.resources.cpu, "gpu": spec.resources.gpu},
    )
    run_config = tune.RunConfig(
        name=experiment_path.name,
        storage_path=storage.uri,
        failure_config=tune.FailureConfig(max_failures=spec.max_failures),
        callbacks=[
            CloseRuns(info, search.scheduler is not None, resumed),
            *([Progress(storage, spec.name, say)] if say is not None and not verbose else []),
        ],
        verbose=verbose,
    )
    status, interrupted, results, ray_error = "FAILED", None, None, None
    with _Signals() as signals:
        try:
            # A resume never reads Tune's pickled state (``study.resume``): a fresh Tuner runs
            # the launch's unfinished trials, in their folders, and the points it never started.
            param_space, algorithm, num_samples = search.param_space, search.algorithm, None
            if resume_plan is not None:
                rest = search.algorithm if resume_plan.n_new else None
                param_space = search.param_space if rest is not None else {}
                algorithm = ResumeSearcher(resume_plan.fixed, rest)
                num_samples = resume_plan.n_to_run
            if num_samples != 0:
                # Tune snapshots every trial's state into experiment_state-*.json, as often as 5%
                # of the driver's time allows: work that grows with the study (at 2,000 trials, a
                # third of the driver's CPU per trial) for Tuner.restore, which a resume never
                # uses (study.resume reads the journals). Once a few minutes, and at the end.
                os.environ.setdefault("TUNE_GLOBAL_CHECKPOINT_S", "300")
                if not verbose:  # Tune's legacy reporter is silent at 0; the new one is not
                    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
                tuner = tune.Tuner(
                    trainable,
                    param_space=param_space,
                    tune_config=tune.TuneConfig(
                        max_concurrent_trials=spec.max_concurrent_trials,
                        reuse_actors=True,
                        search_alg=algorithm,
                        scheduler=search.scheduler,
                        num_samples=search.num_samples if num_samples is None else num_samples,
                        trial_dirname_creator=_resumed_dirname if resume_plan else None,
                    ),
                    run_config=run_config,
                )
                results = tuner.fit()
                signals.after_fit()
        except KeyboardInterrupt:  # a second Ctrl-C skips Tune's graceful stop
            interrupted = signals.received or "SIGINT"
        except (RayError, TuneError) as err:  # Ray itself gave up (a lost head, a dead driver
            # actor): the launch ended early; its cause is one line, not Ray's traceback
            ray_error = _first_line(err)
            interrupted = causes.ENDED_EARLY
        finally:
            n_trials = spec.n_trials  # a resume's results hold only the trials it ran
            n_errors = len(results.errors) if results is not None else 0
            # Tune returns normally after a Ctrl-C: the study ended only if every trial did. The
            # trials' journals say so even while the tracking server is away.
            ended, ended_by = launch_ends(experiment_path.fs, experiment_path.path)
            n_finished = ended.get("FINISHED", 0)
            n_stopped = ended.get("STOPPED", 0)
            # A trial that errored is journaled FAILED by CloseRuns: counted once, there.
            if n_finished + ended.get("FAILED", 0) + n_stopped < n_trials:
                interrupted = interrupted or signals.received or causes.ENDED_EARLY
            n_diverged = ended_by.get(causes.DIVERGED, 0)
            n_misconfigured = ended_by.get(causes.MISCONFIGURED, 0)
            if interrupted:
                status = "KILLED"
            elif n_errors == 0 and n_diverged == 0 and n_misconfigured == 0:
                status = "FINISHED"
            # Recorded first: `study sync` finishes the job if the server is away right now.
            update_launch(
                experiment_path, status=status, interrupted=interrupted, ended_at=time.time()
            )
            synced = close_launch(tracking_uri, experiment_id, parent_run_id, status, interrupted)
            if synced:  # a record still in a journal is not in MLflow: the study is not done
                with tracking.fail_fast():
                    try:
                        failing = sync_experiment(
                            tracking_uri, experiment_path.fs, experiment_path.path
                        )[2]
                    except Exception as err:  # never hide the study's outcome behind this
                        log.warning("could not replay the trial journals: %s", err)
                        failing = 1
                synced = failing == 0
    return StudyResult(
        experiment_path, parent_run_id, n_trials, n_errors, n_diverged, interrupted, n_finished,
        tracking_pending=not synced, n_stopped=n_stopped, n_misconfigured=n_misconfigured,
        causes=ended_by, ray_error=ray_error,
    )  # fmt: skip
