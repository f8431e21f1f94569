"""Resume without unpickling: what a launch still has to run, read from its trials' journals.

Ray's ``Tuner.restore`` unpickles ``tuner.pkl`` and the experiment state from the storage folder:
anyone who can write a shared folder (NFS, a bucket) would run code in the driver. A resume
starts a fresh Tuner instead, whose trials are the launch's unfinished ones. Everything it needs
is JSON the study wrote itself (or, for launches from before it journaled Tune's config, Tune's
``params.json``):

- each trial folder's journal: the trial's Tune config and how it ended;
- the grid algorithm: the launch's whole trial list, regenerated from its spec (it is seeded);
- Optuna: the points the launch started (their missing seeds repeat them); the points it never
  started are asked anew, of a searcher warm-started with what the finished trials measured.

A rerun trial keeps its folder, its trial id (so its MLflow run) and its newest checkpoint: its
config names the trial it continues (``RESUMES``), ``LaunchInfo.resumed`` maps that to its folder.
ASHA's rungs start afresh.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher
from ray.tune.search.variant_generator import generate_variants

from . import causes
from .journal import Journal, JournalError, read_trial, trial_folders
from .storage import StoragePath

RESUMES = "__resumes__"  # in a rerun trial's config: the id of the trial it continues
TRIAL_INDEX = "__trial_index__"  # ray.tune.search.repeater.TRIAL_INDEX
PARAMS_JSON = "params.json"  # Tune's JSON copy of a trial's config, in its folder
# Ended for good: Tune saw these return (a non-finite loss or a missing search metric would only
# happen again), or the scheduler stopped them. Every other end is run again.
_DONE_CAUSES = frozenset({causes.DIVERGED, causes.MISCONFIGURED, causes.STOPPED})


def config_key(config: dict[str, Any]) -> str:
    """A Tune config as one comparable string (what a journal and the grid agree on)."""
    return json.dumps(config, sort_keys=True, default=str)


@dataclass
class StartedTrial:
    path: str
    trial_id: str
    run_name: str
    config: dict[str, Any]
    done: bool


@dataclass
class ResumePlan:
    """The trials a resume runs: ``fixed`` configs (in order), then ``n_new`` asked of a searcher."""

    fixed: list[dict[str, Any]] = field(default_factory=list)
    resumed: dict[str, dict[str, str]] = field(default_factory=dict)
    """Trial id continued -> its folder and run name."""
    n_new: int = 0
    n_done: int = 0
    n_started_points: int = 0
    """Optuna: the points the launch had asked for (a resumed sampler must not ask them again)."""

    @property
    def n_to_run(self) -> int:
        return len(self.fixed) + self.n_new


def started_trials(experiment: StoragePath) -> list[StartedTrial]:
    """Every trial of a launch that journaled, with its config and whether it ended for good."""
    fs, trials = experiment.fs, []
    for path in trial_folders(fs, experiment.path):
        record = read_trial(Journal(fs, path))
        run = record.run or {}
        config = run.get("config")
        if config is None:  # journaled before configs were: Tune's own JSON copy
            config = _read_json(fs, f"{path}/{PARAMS_JSON}")
        if isinstance(config, dict):
            config = {k: v for k, v in config.items() if k != RESUMES}
        if not (isinstance(config, dict) and isinstance(config.get("params"), dict)):
            raise JournalError(
                f"{path}: no trial config in its journal or {PARAMS_JSON}; move the trial "
                "folder away to run that trial anew"
            )
        done = record.status in ("FINISHED", "STOPPED") or (
            record.status == "FAILED" and record.cause in _DONE_CAUSES
        )
        trial_id = str((run.get("tags") or {}).get("trial_id") or path.rsplit("/", 1)[-1])
        trials.append(StartedTrial(path, trial_id, str(run.get("run_name", "")), config, done))
    return trials


def _read_json(fs: Any, path: str) -> Any:
    try:
        with fs.open_input_stream(path) as handle:
            return json.loads(handle.read().decode())
    except (OSError, ValueError):
        return None


def plan_grid(experiment: StoragePath, param_space: dict[str, Any]) -> ResumePlan:
    """Grid algorithm: the launch's trial list (regenerated, Tune's order) less what ended."""
    configs = [json.loads(config_key(c)) for _, c in generate_variants(param_space)]
    by_key: dict[str, list[StartedTrial]] = {}
    for trial in started_trials(experiment):
        by_key.setdefault(config_key(trial.config), []).append(trial)
    plan = ResumePlan()
    for config in configs:
        found = by_key.get(config_key(config), [])
        if any(t.done for t in found):
            plan.n_done += 1
            continue
        plan.fixed.append(_continuing(plan, config, found[-1] if found else None))
    return plan


def plan_optuna(experiment: StoragePath, n_points: int, repeats: int) -> ResumePlan:
    """Optuna: started points' unfinished trials and never-started repeats; the points never
    started are ``n_new`` trials for the searcher (``repeats`` trials a point)."""
    plan = ResumePlan()
    # A categorical space can be asked the same point twice: each asking is one group of repeats.
    points: dict[str, dict[int, list[StartedTrial]]] = {}
    for trial in started_trials(experiment):
        point = config_key(trial.config["params"])
        index = int(trial.config.get(TRIAL_INDEX, 0))
        points.setdefault(point, {}).setdefault(index, []).append(trial)
    n_started = 0
    for point, by_index in points.items():
        groups = max(len(trials) for trials in by_index.values())
        n_started += groups
        for group in range(groups):
            for index in range(repeats):
                trials = by_index.get(index, [])
                trial = trials[group] if group < len(trials) else None
                if trial is not None and trial.done:
                    plan.n_done += 1
                    continue
                config = {"params": json.loads(point), TRIAL_INDEX: index}
                plan.fixed.append(_continuing(plan, config, trial))
    plan.n_new = max(n_points - n_started, 0) * repeats
    plan.n_started_points = n_started
    return plan


def _continuing(
    plan: ResumePlan, config: dict[str, Any], trial: StartedTrial | None
) -> dict[str, Any]:
    """A rerun trial's config: in the folder, MLflow run and from the newest checkpoint of the
    ``trial`` it continues (if it started)."""
    if trial is None:
        return config
    plan.resumed[trial.trial_id] = {"path": trial.path, "run_name": trial.run_name}
    return {**config, RESUMES: trial.trial_id}


class ResumeSearcher(Searcher):
    """Suggests a resume's fixed configs first, then (Optuna) its searcher's new points.

    Results of the fixed trials are not told to that searcher: it created none of them (it was
    warm-started with what the launch's finished trials measured instead).
    """

    def __init__(self, fixed: list[dict[str, Any]], rest: Searcher | None = None):
        super().__init__(metric=rest.metric if rest else None, mode=rest.mode if rest else None)
        self._fixed = list(fixed)
        self._rest = rest
        self._ours: set[str] = set()

    def set_search_properties(self, metric, mode, config, **spec) -> bool:  # noqa: ANN001
        if self._rest is None:
            return True
        return self._rest.set_search_properties(metric, mode, config, **spec)

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self._fixed:
            self._ours.add(trial_id)
            return self._fixed.pop(0)
        if self._rest is None:
            return Searcher.FINISHED
        return self._rest.suggest(trial_id)

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        if trial_id not in self._ours and self._rest is not None:
            self._rest.on_trial_result(trial_id, result)

    def on_trial_complete(self, trial_id: str, result=None, error: bool = False) -> None:  # noqa: ANN001
        if trial_id not in self._ours and self._rest is not None:
            self._rest.on_trial_complete(trial_id, result=result, error=error)

    def save(self, checkpoint_path: str) -> None:
        """Nothing to save: a resume is planned from the journals, never from Tune's state."""

    def restore(self, checkpoint_path: str) -> None:
        raise NotImplementedError("a resume is planned from the trial journals")
