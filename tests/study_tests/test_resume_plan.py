"""What a resume runs, planned from the trial journals alone (no Tune state is read): a grid's
unfinished and never-started trials in Tune's order, Optuna's started points' missing seeds and
the points it never started; finished, stopped and diverged trials are never rerun."""

from __future__ import annotations

import json

import pyarrow.fs as pafs
import pytest

from study import causes, space
from study.journal import Journal, JournalError
from study.resume import RESUMES, TRIAL_INDEX, ResumeSearcher, plan_grid, plan_optuna
from study.spec import parse_spec
from study.storage import storage_path

RAW = {
    "name": "plan_case",
    "family": "multitask",
    "dataset": {"name": "dsprites", "subset": "quickstart"},
    "fixed": {"epochs": 2, "n_tasks": 2},
    "sweep": {"variant": ["multi_head", "random"], "seed": [0, 1, 2]},
}


def _trial(experiment, name: str, config: dict, end: dict | None = None, journaled=True) -> str:
    """A trial folder as a trial leaves it: its run record (with Tune's config), an end or not."""
    folder = experiment / name
    journal = Journal(pafs.LocalFileSystem(), str(folder))
    run = {"op": "run", "run_name": name, "tags": {"trial_id": name}, "params": {}}
    if journaled:
        run["config"] = config
    else:  # a launch from before configs were journaled: Tune's params.json says it
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "params.json").write_text(json.dumps(config))
    journal.append(run)
    journal.append({"op": "metrics", "step": 1, "metrics": {"train/loss": 1.0}, "time": 0})
    if end is not None:
        journal.append({"op": "end", **end})
    return str(folder)


def _grid_configs(spec) -> list[dict]:
    from ray.tune.search.variant_generator import generate_variants

    return [json.loads(json.dumps(c)) for _, c in generate_variants(space.to_param_space(spec))]


def test_a_grid_resume_runs_what_did_not_end_in_tunes_order(tmp_path):
    spec = parse_spec(RAW)
    configs = _grid_configs(spec)
    assert len(configs) == 6
    experiment = tmp_path / "plan_case_20260101-000000"
    finished = {"status": "FINISHED", "reason": ""}
    diverged = {"status": "FAILED", "reason": "nan", "tags": {causes.TAG: causes.DIVERGED}}
    killed = {"status": "KILLED", "reason": "", "tags": {causes.TAG: causes.SIGNAL}}
    errored = {"status": "FAILED", "reason": "boom", "tags": {causes.TAG: causes.ERROR}}
    _trial(experiment, "t0", configs[0], finished)
    _trial(experiment, "t1", configs[1], diverged)  # would diverge again: ended for good
    path2 = _trial(experiment, "t2", configs[2], killed)
    path3 = _trial(experiment, "t3", configs[3], None, journaled=False)  # no end: was running
    path4 = _trial(experiment, "t4", configs[4], errored)  # Tune's resume_errored reran these
    # configs[5] never started: no folder
    plan = plan_grid(storage_path(experiment), space.to_param_space(spec))
    assert plan.n_done == 2 and plan.n_new == 0
    assert plan.fixed == [
        {**configs[2], RESUMES: "t2"},
        {**configs[3], RESUMES: "t3"},
        {**configs[4], RESUMES: "t4"},
        configs[5],
    ]
    assert plan.resumed == {
        "t2": {"path": path2, "run_name": "t2"},
        "t3": {"path": path3, "run_name": "t3"},
        "t4": {"path": path4, "run_name": "t4"},
    }


def test_an_optuna_resume_repeats_started_points_and_asks_for_the_rest(tmp_path):
    experiment = tmp_path / "opt_20260101-000000"
    point_a = {"params": {"lr": 0.01, "epochs": 2}}
    point_b = {"params": {"lr": 0.002, "epochs": 2}}
    finished = {"status": "FINISHED", "reason": ""}
    stopped = {"status": "KILLED", "reason": "", "tags": {"stopped": "asha"}}
    _trial(experiment, "a0", {**point_a, TRIAL_INDEX: 0}, finished)
    _trial(experiment, "a1", {**point_a, TRIAL_INDEX: 1}, stopped)  # the scheduler ended it
    _trial(experiment, "b0", {**point_b, TRIAL_INDEX: 0}, None)  # was running
    # point b's seed 1 never started; 5 points were asked for, 2 started
    plan = plan_optuna(storage_path(experiment), n_points=5, repeats=2)
    assert plan.n_done == 2
    assert plan.fixed == [
        {**point_b, TRIAL_INDEX: 0, RESUMES: "b0"},
        {**point_b, TRIAL_INDEX: 1},
    ]
    assert set(plan.resumed) == {"b0"}
    assert plan.n_new == 3 * 2 and plan.n_to_run == 8


def test_the_same_point_asked_twice_is_two_groups_not_one_folder(tmp_path):
    """A categorical space can be asked the same point twice: each asking reruns in its own folder."""
    experiment = tmp_path / "opt_20260101-000000"
    point = {"params": {"variant": "random"}}
    _trial(experiment, "x0", {**point, TRIAL_INDEX: 0}, None)
    _trial(experiment, "y0", {**point, TRIAL_INDEX: 0}, None)
    plan = plan_optuna(storage_path(experiment), n_points=2, repeats=1)
    assert [c[RESUMES] for c in plan.fixed] == ["x0", "y0"] and plan.n_new == 0


def test_a_trial_folder_without_a_config_is_one_line_naming_it(tmp_path):
    experiment = tmp_path / "plan_case_20260101-000000"
    folder = _trial(experiment, "t0", {"params": {}}, None, journaled=False)
    (tmp_path / experiment / "t0" / "params.json").write_text("[1, 2]")  # not a Tune config
    with pytest.raises(JournalError, match=f"{folder}: no trial config"):
        plan_grid(storage_path(experiment), space.to_param_space(parse_spec(RAW)))


def test_the_searcher_gives_the_fixed_trials_first_and_tells_its_own_only():
    class Inner:
        metric, mode = "rmse", "min"

        def __init__(self):
            self.told: list[str] = []

        def suggest(self, trial_id):
            return {"params": {"lr": 0.5}, "asked_for": trial_id}

        def on_trial_complete(self, trial_id, result=None, error=False):
            self.told.append(trial_id)

    inner = Inner()
    searcher = ResumeSearcher([{"params": {"lr": 0.1}}], inner)
    assert searcher.suggest("r1") == {"params": {"lr": 0.1}}
    assert searcher.suggest("n1") == {"params": {"lr": 0.5}, "asked_for": "n1"}
    searcher.on_trial_complete("r1", {"rmse": 1.0})
    searcher.on_trial_complete("n1", {"rmse": 2.0})
    assert inner.told == ["n1"]  # the searcher made n1 only
    assert ResumeSearcher([]).suggest("x") == ResumeSearcher.FINISHED
