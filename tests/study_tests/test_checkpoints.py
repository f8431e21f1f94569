"""Trial checkpoints live in the trial folder, not in Tune's checkpoint manager.

Tune's experiment snapshot lags the checkpoints it deletes: a driver killed between the two resumed
from a deleted checkpoint and the trial failed (seen in CI). Now Tune never names a checkpoint; the
trial keeps its newest two and restores the newest readable one.
"""

from __future__ import annotations

import pyarrow.fs as pafs
import torch

from study.trial import STATE_FILE, RayContext


def _context(folder) -> RayContext:
    ctx = object.__new__(RayContext)  # only the storage half: no Tune session needed
    ctx.fs, ctx.trial_path = pafs.LocalFileSystem(), str(folder)
    return ctx


def test_keeps_the_newest_two_and_restores_the_newest(tmp_path):
    ctx = _context(tmp_path)
    assert ctx.restore() is None  # a fresh trial
    for step in (1, 2, 10, 11):  # 10 after 2: names must sort by step, not as text
        ctx._checkpoint({"step": step, "w": torch.full((3,), float(step))}, step)
    kept = sorted(p.name for p in tmp_path.iterdir())
    assert kept == ["checkpoint_000000000010", "checkpoint_000000000011"]
    assert not list(tmp_path.glob("*/*.partial"))
    state = ctx.restore()
    assert state["step"] == 11 and torch.equal(state["w"], torch.full((3,), 11.0))


def test_a_checkpoint_cut_short_falls_back_to_the_one_before(tmp_path):
    ctx = _context(tmp_path)
    for step in (3, 4):
        ctx._checkpoint({"step": step}, step)
    newest = tmp_path / "checkpoint_000000000004" / STATE_FILE
    newest.write_bytes(newest.read_bytes()[:20])  # a kill mid-write on a store without rename
    assert ctx.restore()["step"] == 3


def test_rewriting_a_step_after_resume_replaces_it(tmp_path):
    ctx = _context(tmp_path)
    ctx._checkpoint({"step": 5, "v": 1}, 5)
    ctx._checkpoint({"step": 5, "v": 2}, 5)
    assert ctx.restore() == {"step": 5, "v": 2}
    assert len(list(tmp_path.iterdir())) == 1
