"""The shared loop on a toy family: phases, several optimisers and an LR schedule, all checkpointed;
resume at any report in step mode; weights-only checkpoints."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch
from torch import nn

from trainables import LocalContext, TrainConfig
from trainables.core.loop import Schedule, epoch_order, train
from trainables.core.trainer import Phase, Trainer


class _ToyConfig(TrainConfig):
    warmup: int = 3


class _Toy(Trainer):
    """Two linear maps with their own optimisers; the second trains only after the warm-up."""

    name = "toy"
    Config = _ToyConfig

    @classmethod
    def build_modules(cls, cfg, in_channels):
        return {"first": nn.Linear(4, 1), "second": nn.Linear(4, 1)}

    def setup(self, data, images):
        self.x = torch.as_tensor(data["x"], dtype=torch.float32)
        self.optimizers["first"] = torch.optim.Adam(self.modules["first"].parameters(), lr=0.1)
        self.optimizers["second"] = torch.optim.SGD(self.modules["second"].parameters(), lr=0.1)
        self.schedulers["first"] = torch.optim.lr_scheduler.StepLR(
            self.optimizers["first"], step_size=1, gamma=0.5
        )
        self.seen: list[tuple[str, int, tuple[int, ...]]] = []

    def phases(self):
        return [Phase("warmup"), Phase("full", self.cfg.warmup)]

    def train_step(self, batches, phase, step):
        (rows,) = batches
        self.seen.append((phase, step, tuple(rows.tolist())))
        x = self.x[rows]
        noise = torch.randn(len(rows), 1)  # draws from the global RNG: must resume exactly
        loss = ((self.modules["first"](x) - noise) ** 2).mean()
        names = ["first"] + (["second"] if phase == "full" else [])
        if phase == "full":
            loss = loss + (self.modules["second"](x) ** 2).mean()
        for name in names:
            self.optimizers[name].zero_grad()
        loss.backward()
        for name in names:
            self.optimizers[name].step()
        return {"loss": loss.item()}


def _data():
    rng = np.random.default_rng(0)
    return {"x": rng.normal(size=(20, 4)), "train": np.arange(20)}


def _trainer(**params):
    torch.manual_seed(0)
    trainer = _Toy(_ToyConfig(batch_size=6, steps=10, report_every=2, **params), 1)
    trainer.setup(_data(), None)
    return trainer


class _Stop(Exception):
    pass


class _StopAfter(LocalContext):
    def __init__(self, directory, n):
        super().__init__(directory)
        self.n = n

    def report(self, metrics, *, step, state=None):
        super().report(metrics, step=step, state=state)
        if len(self.reports) == self.n:
            raise _Stop


def test_schedule_counts_steps_or_epochs():
    cfg = TrainConfig(batch_size=6, epochs=2)
    assert Schedule.of(cfg, 20, 1) == Schedule(4, 8, False, 4)  # last partial batch trains
    assert Schedule.of(cfg, 20, 2) == Schedule(1, 2, False, 1)  # two full batches a step
    stepped = Schedule.of(TrainConfig(batch_size=6, steps=7, report_every=3), 20, 1)
    assert (stepped.total_steps, stepped.report_step(6)) == (7, 6)
    with pytest.raises(ValueError, match="fewer than"):
        Schedule.of(cfg, 10, 2)


def test_epoch_order_depends_only_on_seed_and_epoch():
    train = np.arange(10, 30)
    assert np.array_equal(epoch_order(train, 1, 3), epoch_order(train, 1, 3))
    assert not np.array_equal(epoch_order(train, 1, 3), epoch_order(train, 1, 4))
    assert sorted(epoch_order(train, 1, 3).tolist()) == train.tolist()


@pytest.mark.parametrize("stop_after", [1, 2, 3])  # before, at and after the warm-up ends
def test_resume_at_any_report_repeats_phases_batches_and_numbers(stop_after, tmp_path):
    straight = _trainer()
    ctx = LocalContext(tmp_path / "straight")
    train(straight, _data(), ctx)
    assert [p for p, _, _ in straight.seen] == ["warmup"] * 3 + ["full"] * 7

    stopped = _trainer()
    with pytest.raises(_Stop):
        train(stopped, _data(), _StopAfter(tmp_path / "resumed", stop_after))
    resumed = _trainer()
    resumed_ctx = LocalContext(tmp_path / "resumed")
    train(resumed, _data(), resumed_ctx)
    assert stopped.seen + resumed.seen == straight.seen  # same phases, steps and batches
    assert resumed_ctx.steps == ctx.steps[stop_after:]
    assert resumed_ctx.reports == ctx.reports[stop_after:]
    for name in ("first", "second"):
        for a, b in zip(
            straight.modules[name].parameters(), resumed.modules[name].parameters(), strict=True
        ):
            assert torch.equal(a, b)
    assert straight.schedulers["first"].get_last_lr() == resumed.schedulers["first"].get_last_lr()


def test_epochs_end_step_the_schedule():
    trainer = _trainer()
    train(trainer, _data(), LocalContext())
    # 20 rows, batch 6: 4 steps an epoch; 10 steps finish 2 epochs, each halving the LR.
    assert trainer.schedulers["first"].get_last_lr() == [0.1 * 0.5**2]


class _Payload:
    def __reduce__(self):
        return (open, ("/tmp/_pwned_by_checkpoint", "w"))


def test_a_crafted_checkpoint_does_not_run(tmp_path):
    ctx = LocalContext(tmp_path)
    torch.save({"step": 1, "evil": _Payload()}, ctx.checkpoint_path)
    with pytest.raises(pickle.UnpicklingError):
        ctx.restore()
    import os

    assert not os.path.exists("/tmp/_pwned_by_checkpoint")


def test_empty_train_split_is_an_error():
    trainer = _trainer()
    with pytest.raises(ValueError, match="train split is empty"):
        train(trainer, {"x": _data()["x"], "train": np.array([], dtype=int)}, LocalContext())
