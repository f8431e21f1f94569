"""`study status`: counts, best so far and time left, read from a launch folder's journals."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import yaml

from study.journal import Journal
from study.records import LAUNCH_FILE, LAUNCH_STAMP, launch_plan
from study.spec import SpecError, parse_spec
from study.status import study_status, to_json

QUICKSTART = Path(__file__).parents[2] / "configs" / "quickstart.yaml"


def _launch(
    storage: Path, status: str | None, minutes_ago: float = 10.0, extends=(), scale: float = 1.0,
    metric: str = "mig", declared=None,
) -> Path:  # fmt: skip
    raw = yaml.safe_load(QUICKSTART.read_text())
    raw["fixed"]["task_index"] = 0  # one single-task model: 4 variants x 2 seeds = 8 trials
    raw["sweep"]["seed"] = [0, 1]
    spec = parse_spec(raw)
    assert spec.n_trials == 8
    stamp = time.strftime(LAUNCH_STAMP, time.localtime(time.time() - 60 * minutes_ago))
    folder = storage / f"quickstart_{stamp}"
    folder.mkdir(parents=True)
    record = {"parent_run_id": "p", "spec": json.loads(spec.model_dump_json()), "status": status,
              "plan": launch_plan(spec, declared)}  # fmt: skip
    record["extends"] = [e.name for e in extends]
    (folder / LAUNCH_FILE).write_text(json.dumps(record))
    fs = pafs.LocalFileSystem()
    # Two finished (mig 0.2 and 0.5), one failed, one still running: four pending.
    for name, mig, end in (("a", 0.2, "FINISHED"), ("b", 0.5, "FINISHED"), ("c", None, "FAILED"),
                           ("d", None, None)):  # fmt: skip
        journal = Journal(fs, str(folder / name))
        params = {"variant": "multi_head", "seed": json.dumps(ord(name) % 2), "lr": "0.001"}
        journal.append({"op": "run", "tags": {"trial_id": name}, "params": params})
        journal.append({"op": "metrics", "step": 1, "metrics": {"train/loss": 1.0}, "time": 0})
        if mig is not None:
            journal.append({"op": "metrics", "step": 5, "metrics": {metric: scale * mig}, "time": 0})
        if end:
            journal.append({"op": "end", "status": end, "reason": ""})
    return folder


def test_counts_best_and_time_left(tmp_path):
    _launch(tmp_path, None)
    state = study_status(tmp_path, "quickstart")
    assert state.counts["FINISHED"] == 2 and state.counts["FAILED"] == 1
    assert state.counts["RUNNING"] == 1 and state.counts["PENDING"] == 4
    assert state.metric == "mig" and state.best.name == "b" and state.best.metric == 0.5
    assert state.extends == [] and state.best_overall is None  # extends no earlier launch
    # a trial is named by its id and its values of the sweep axes (lr is fixed: not shown)
    assert state.best.trial_id == "b" and state.best.point == {"variant": "multi_head", "seed": 0}
    assert state.best.label() == "b: variant=multi_head, seed=0"
    assert 590 < state.elapsed_s < 700
    # 3 trials done in ~10 minutes, 5 left: about 10 * 5 / 3 minutes more.
    assert state.remaining_s == pytest.approx(state.elapsed_s * 5 / 3)


def test_a_kept_cache_rereads_only_the_journals_that_changed(tmp_path, monkeypatch):
    """The progress line's reading: the same answer as a fresh read, each time, while only the
    trials whose journal changed are read again (a study of thousands re-read them all at every
    line: the driver's CPU per trial grew with the study)."""
    import study.status as status_module

    folder = _launch(tmp_path, None)
    reads: list[str] = []
    real = status_module._trial_state
    monkeypatch.setattr(status_module, "_trial_state",
                        lambda journal, *a: reads.append(journal.directory) or real(journal, *a))  # fmt: skip
    seen: status_module.Seen = {}
    first = study_status(tmp_path, "quickstart", seen=seen)
    assert len(reads) == 4 and first.counts["RUNNING"] == 1
    reads.clear()
    again = study_status(tmp_path, "quickstart", seen=seen)
    assert reads == [] and again.trials == first.trials
    # The running trial reports and ends (its journal grows): it alone is read again, and the
    # answer is a fresh read's.
    journal = Journal(pafs.LocalFileSystem(), str(folder / "d"))
    journal.append({"op": "metrics", "step": 5, "metrics": {"mig": 0.9}, "time": 0})
    journal.append({"op": "end", "status": "FINISHED", "reason": ""})
    after = study_status(tmp_path, "quickstart", seen=seen)
    assert reads == [str(folder / "d")]
    fresh = study_status(tmp_path, "quickstart")
    assert after.trials == fresh.trials and after.counts == fresh.counts
    assert after.best.name == "d" and after.counts["RUNNING"] == 0


def test_a_family_output_ranks_by_the_direction_the_plan_carries(tmp_path):
    from trainables import get_family

    # The plan carries multitask's declared outputs: rmse is lower-is-better (a: 0.2, b: 0.5).
    _launch(tmp_path, None, metric="rmse", declared=get_family("multitask").declared)
    state = study_status(tmp_path, "quickstart", metric="rmse")
    assert state.best.name == "a" and state.best.metric == 0.2


def test_an_extension_reports_the_best_of_the_whole_study(tmp_path):
    first = _launch(tmp_path, "FINISHED", minutes_ago=30, scale=1.5)  # its best: b, mig 0.75
    latest = _launch(tmp_path, None, extends=[first])
    state = study_status(tmp_path, "quickstart")
    assert state.launch == latest.name and state.best.metric == 0.5  # this launch's own best
    assert state.extends == [first.name]
    assert state.extended_counts == {"FINISHED": 2, "FAILED": 1, "RUNNING": 1}
    assert state.best_overall.metric == 0.75 and state.best_overall.launch == first.name
    assert json.loads(to_json(state))["best_overall"]["trial_id"] == "b"


def test_a_killed_launch_has_no_running_trials_and_no_estimate(tmp_path):
    _launch(tmp_path, "KILLED")
    state = study_status(tmp_path, "quickstart")
    assert state.counts["RUNNING"] == 0 and state.counts["KILLED"] == 1
    assert state.remaining_s is None


def test_unknown_study_is_one_line(tmp_path):
    with pytest.raises(SpecError, match="no launch of study 'nope'"):
        study_status(tmp_path, "nope")


def test_a_trials_point_reads_flattened_data_axes_back():
    from study.status import TrialState, _point

    params = {
        "dataset.subset.scale": "[0, 5]", "dataset.subset.orientation": "0",
        "dataset.subset.posX.bins": "4", "lr": "0.00229", "upstream": "12345678901234567890123456789012",
    }  # fmt: skip
    point = _point(params, ["dataset.subset", "lr", "seed", "upstream"])  # seed not logged
    assert point == {
        "dataset.subset": {"scale": [0, 5], "orientation": 0, "posX": {"bins": 4}},
        "lr": 0.00229,
        "upstream": "12345678901234567890123456789012",  # a run id stays a string, even all digits
    }
    assert _point({"dataset.subset": "v2"}, ["dataset.subset"]) == {"dataset.subset": "v2"}
    label = TrialState("folder", "RUNNING", None, None, trial_id="t1", point=point).label()
    assert label == (
        "t1: dataset.subset={scale: [0, 5], orientation: 0, posX: {bins: 4}}, lr=0.00229, "
        "upstream=12345678"
    )


@pytest.mark.parametrize("text", ["", '{"parent_run_id": "p", "spe', "[1, 2]", '{"spec": {}}'])
def test_a_cut_or_foreign_launch_record_is_one_line(tmp_path, text):
    folder = _launch(tmp_path, None)
    (folder / LAUNCH_FILE).write_text(text)
    with pytest.raises(SpecError) as err:
        study_status(tmp_path, "quickstart")
    message = str(err.value)
    assert "\n" not in message and LAUNCH_FILE in message and "Error" not in message


def test_sync_into_a_missing_store_is_one_line_and_creates_nothing(tmp_path):
    _launch(tmp_path / "ray_results", "FINISHED")
    missing = tmp_path / "gone.db"
    done = subprocess.run(
        [sys.executable, "-m", "study.cli", "sync", "quickstart", "--storage",
         str(tmp_path / "ray_results"), "--tracking-uri", f"sqlite:///{missing}"],
        cwd=Path(__file__).parents[2], capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2 and len(lines) == 1, done.stderr
    assert "no tracking store" in lines[0] and "Traceback" not in done.stderr
    assert not missing.exists()
