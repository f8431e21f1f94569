"""``study status NAME``: where a study's latest launch stands, read from its Ray experiment folder.

Works from another shell while the study runs (and after it ended or died): each trial's tracking
journal says whether it finished, failed or is still going and what it last reported; trials without
a folder yet are pending. Nothing here talks to Ray or MLflow.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from trainables.core.outputs import Declared
from trainables.metrics import selection

from . import causes
from .errors import SpecError
from .journal import JOURNAL, Journal, read_trial, trial_folders
from .params import parse_param, short_value, unflatten, upstream_label
from .records import LAUNCH_STAMP, latest_experiment, read_launch
from .storage import StoragePath, storage_path


@dataclass
class TrialState:
    name: str
    status: str  # FINISHED | FAILED | STOPPED (early, by ASHA) | KILLED | RUNNING (no end yet)
    step: int | None
    metric: float | None
    reason: str = ""
    cause: str = ""
    """Why it did not finish (``study.causes``); empty while it runs or once it finished."""
    trial_id: str = ""
    launch: str = ""
    point: dict[str, Any] = field(default_factory=dict)
    """The trial's values of the study's sweep axes (and its upstream run, for a probe)."""
    upstream: str = ""
    """A probe's upstream by family and point (``params.upstream_label``); empty otherwise."""

    def label(self) -> str:
        """``id: lr=0.0023, seed=0``: which trial, by what sets it apart (a probe's upstream by
        its family and point)."""
        values = ", ".join(
            f"{k}={self.upstream if k == 'upstream' and self.upstream else short_value(k, v)}"
            for k, v in self.point.items()
        )
        who = self.trial_id or self.name
        return f"{who}: {values}" if values else who


def _point(params: dict[str, str], axes: list[str]) -> dict[str, Any]:
    """An axis's value from a run record's flattened params (a dict value was flattened under it)."""
    point: dict[str, Any] = {}
    for axis in axes:
        if axis in params:
            # a run id stays a string even when it looks like a number
            point[axis] = params[axis] if axis == "upstream" else parse_param(params[axis])
            continue
        nested = {
            key[len(axis) + 1 :]: v for key, v in params.items() if key.startswith(f"{axis}.")
        }
        if nested:
            point[axis] = unflatten(nested)
    return point


@dataclass
class StudyStatus:
    study: str
    launch: str
    launch_status: str  # the driver's last word: FINISHED | FAILED | KILLED, or RUNNING
    n_trials: int
    counts: dict[str, int]
    metric: str
    best: TrialState | None
    elapsed_s: float
    remaining_s: float | None
    trials: list[TrialState] = field(default_factory=list)
    extends: list[str] = field(default_factory=list)
    """The earlier launches this one extends (``study run --extend``): one study with it."""
    extended_counts: dict[str, int] = field(default_factory=dict)
    """Their trials' counts by status."""
    best_overall: TrialState | None = None
    """The best finished trial of this launch and those it extends."""
    causes: dict[str, int] = field(default_factory=dict)
    """Trials that did not finish, by cause (``study.causes``): FAILED, STOPPED and KILLED."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _trial_state(journal: Journal, metric: str, axes: list[str], launch: str) -> TrialState:
    trial = read_trial(journal, metric)
    run = trial.run or {}
    return TrialState(
        name=journal.directory.rsplit("/", 1)[-1],
        status=trial.status,
        step=trial.step,
        metric=trial.value,
        reason=trial.reason,
        cause=trial.cause,
        trial_id=run.get("tags", {}).get("trial_id", ""),
        point=_point(run.get("params", {}), axes),
        launch=launch,
        upstream=upstream_label(run.get("tags", {})),
    )


Seen = dict[tuple[str, str], tuple[tuple[int, int], TrialState]]
"""Trial states already read, by (trial folder, metric), with their journal's (size, mtime)."""


def _launch_trials(
    experiment: StoragePath, metric: str, axes: list[str], seen: Seen | None = None
) -> list[TrialState]:
    """Each trial's state from its journal; with ``seen``, only journals that changed since it
    was filled are read again (a running study's progress line: most trials ended long ago)."""
    fs = experiment.fs
    folders = trial_folders(fs, experiment.path)
    if seen is None:
        return [_trial_state(Journal(fs, f), metric, axes, experiment.name) for f in folders]
    trials = []
    for folder, info in zip(folders, fs.get_file_info([f"{f}/{JOURNAL}" for f in folders]),
                            strict=True):  # fmt: skip
        stamp = (info.size, info.mtime_ns)  # read before the journal: a later change misses
        known = seen.get((folder, metric))
        if known is None or known[0] != stamp:
            state = _trial_state(Journal(fs, folder), metric, axes, experiment.name)
            known = seen[(folder, metric)] = (stamp, state)
        trials.append(known[1])
    return trials


def study_status(
    storage: str | Path | StoragePath,
    study: str,
    metric: str | None = None,
    seen: Seen | None = None,
) -> StudyStatus:
    """``seen``: a cache kept between calls by one caller (``study.progress``), or None."""
    storage = storage_path(storage)
    experiment = latest_experiment(storage, study)
    if experiment is None:
        raise SpecError(f"status: no launch of study {study!r} under {storage}")
    record = read_launch(experiment)
    plan = record.get("plan")
    if not isinstance(plan, dict):
        raise SpecError(
            f"{experiment}/study_launch.json has no plan (a launch recorded by an older version, "
            "or not by `study run`): its status cannot be read"
        )
    metric = metric or plan["metric"]
    axes = list(plan["axes"])
    trials = _launch_trials(experiment, metric, axes, seen)
    counts = {"FINISHED": 0, "RUNNING": 0, "FAILED": 0, "STOPPED": 0, "KILLED": 0}
    counts.update(Counter(t.status for t in trials))
    counts["PENDING"] = max(plan["n_trials"] - len(trials), 0)
    launch_status = record.get("status") or "RUNNING"
    unfinished = Counter(t.cause for t in trials if t.status not in ("FINISHED", "RUNNING"))
    if launch_status == "KILLED":  # the driver stopped: its running trials stopped with it
        interrupted = record.get("interrupted")
        cause = causes.interruption(None if interrupted == causes.ENDED_EARLY else interrupted)[0]
        unfinished[cause] += counts["RUNNING"]
        counts["KILLED"] += counts.pop("RUNNING")
        counts["RUNNING"] = 0
    own = metric == plan["metric"] and plan["mode"] is not None
    # Directions of the family's own outputs from the plan (launches recorded before it carried
    # them: the metric registry's only).
    declared = Declared.from_dict(plan.get("outputs"))
    if own:
        mode = plan["mode"]
    elif metric == plan["metric"] and plan.get("metric_mode"):
        mode = plan["metric_mode"]
    else:
        mode = selection.default_mode(metric, declared.direction)

    def best_of(states: list[TrialState]) -> TrialState | None:
        finished = [t for t in states if t.status == "FINISHED"]
        return selection.best(finished, lambda t: t.metric, mode)

    best = best_of(trials)
    # An extension is one study with the launches it extends: their trials count for the best.
    extends = list(record.get("extends", []))
    earlier = [t for name in extends for t in _launch_trials(storage / name, metric, axes, seen)]
    extended_counts = dict(Counter(t.status for t in earlier))
    started = time.mktime(time.strptime(experiment.name.rsplit("_", 1)[-1], LAUNCH_STAMP))
    ended = record.get("ended_at")
    elapsed = (ended or time.time()) - started
    done = counts["FINISHED"] + counts["FAILED"] + counts["STOPPED"]
    left = counts["RUNNING"] + counts["PENDING"]
    # Naive: the trials left take as long, on average, as the ones done so far did.
    remaining = elapsed * left / done if done and left and launch_status == "RUNNING" else None
    return StudyStatus(
        study, experiment.name, launch_status, plan["n_trials"], counts, metric, best, elapsed,
        remaining, trials, extends, extended_counts,
        best_of(trials + earlier) if extends else None,
        {k: n for k, n in unfinished.items() if n},
    )  # fmt: skip


def to_json(status: StudyStatus) -> str:
    return json.dumps(status.as_dict(), indent=2)
