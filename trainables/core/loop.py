"""The one training loop every family runs.

A family is a ``Trainer`` subclass: its modules, optimisers and ``train_step`` (and, where it has them,
several optimisers or phases, declared as data). Everything every family does lives here once:

- seeding and the batch order: epoch ``e``'s permutation of the train split depends only on
  ``(seed, e)``, so a trial resumed at any report point sees the same batches as one never stopped;
- progress in epochs or in steps (Locatello et al. count optimiser steps), phases by step;
- a checkpoint at every report holding every module, optimiser, scheduler, the phase, the position in
  the batch stream and the torch RNG state;
- reports with an explicit step (the epoch in epoch mode, the optimiser step in step mode);
- mixed precision (``precision``): each ``train_step`` runs under ``torch.autocast``; for fp16 on
  CUDA a ``GradScaler`` scales the losses families pass to ``Trainer.backward_step`` (its state is
  checkpointed); ``compile`` runs the modules' forwards through ``torch.compile`` while training;
- a non-finite loss ends the trial with a recorded reason (``NonFiniteLoss``) instead of training on
  NaNs; the study runner records it and goes on with the other trials;
- after training: the family's test metrics, the shared evaluation path (``core.evaluation.evaluate``), the
  pictures, and the saved model (``model/weights.pt`` + ``model/config.json``).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from .config import TrainConfig
from .context import TrialContext
from .evaluation import evaluate
from .saved import save_model
from .trainer import NonFiniteLoss, Phase, Trainer
from .view import as_tensor, resolve_device


@dataclass(frozen=True)
class Schedule:
    """Where the batch stream stands: steps per epoch, total steps, and when to report."""

    steps_per_epoch: int
    total_steps: int
    by_steps: bool
    report_every: int

    @classmethod
    def of(cls, cfg: TrainConfig, n_train: int, batches_per_step: int) -> Schedule:
        chunk = cfg.batch_size * batches_per_step
        # One batch per step: the last, partial batch of an epoch trains too. Several: every
        # batch of a step must be full-sized, so the remainder is dropped.
        per_epoch = math.ceil(n_train / chunk) if batches_per_step == 1 else n_train // chunk
        if per_epoch < 1:
            raise ValueError(
                f"the train split has {n_train} rows, fewer than the {chunk} one step needs "
                f"(batch_size {cfg.batch_size} x {batches_per_step} batches)"
            )
        if cfg.steps is not None:
            return cls(per_epoch, cfg.steps, True, cfg.report_every)
        return cls(per_epoch, per_epoch * cfg.epochs, False, per_epoch)

    def report_step(self, step: int) -> int:
        """The explicit step a report at optimiser step ``step`` carries."""
        return step if self.by_steps else step // self.steps_per_epoch


def epoch_order(train: np.ndarray, seed: int, epoch: int) -> np.ndarray:
    # DO NOT REORDER: the shuffle depends only on (seed, epoch), so a resumed trial repeats it.
    shuffle = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return train[torch.randperm(len(train), generator=shuffle).numpy()]


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and device.type == "cuda":
        torch.cuda.set_rng_state(state["cuda"], device)


def _phase_at(phases: list[Phase], step: int) -> str:
    return [p for p in phases if p.start <= step][-1].name


_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def _autocast(precision: str, device: torch.device) -> contextlib.AbstractContextManager:
    if precision == "fp32":
        return contextlib.nullcontext()  # no autocast at all: fp32 numbers as before
    return torch.autocast(device_type=device.type, dtype=_AUTOCAST_DTYPES[precision])


def _require_backward_step(trainer: Trainer) -> None:
    """With loss scaling on, an optimiser stepped outside ``backward_step`` would apply gradients
    of an unscaled backward as if scaled: refuse it at the first step instead."""

    def check(optimizer, args, kwargs, key):
        if not trainer._in_backward_step:
            raise RuntimeError(
                f"precision fp16: {type(trainer).__name__}.train_step steps optimiser {key!r} "
                "itself; with loss scaling it must call self.backward_step(loss, optimizer)"
            )

    for key, optimizer in trainer.optimizers.items():
        optimizer.register_step_pre_hook(lambda o, a, k, key=key: check(o, a, k, key))


def _compile_forwards(modules: nn.Module) -> list[nn.Module]:
    """``torch.compile`` each module's forward in place (containers: their members'). The modules,
    their parameters and state-dict keys stay the same objects and names (no ``_orig_mod.``), so
    optimisers, checkpoints and saved models do not see it. (``nn.Module.compile()`` left calls
    eager in torch 2.13 here.)"""
    compiled: list[nn.Module] = []
    for module in modules.children():
        if isinstance(module, (nn.ModuleDict, nn.ModuleList)):  # iterated by families, not called
            compiled += _compile_forwards(module)
        else:
            module.forward = torch.compile(module.forward)
            compiled.append(module)
    return compiled


def train(trainer: Trainer, data: dict[str, Any], ctx: TrialContext) -> int:
    """Run (or resume) training to the end of the schedule; returns the last report step."""
    cfg = trainer.cfg
    train_rows = np.asarray(data["train"])
    if len(train_rows) == 0:
        raise ValueError("the train split is empty: check dataset.split and dataset.n_samples")
    k = trainer.batches_per_step
    schedule = Schedule.of(cfg, len(train_rows), k)
    phases = sorted(trainer.phases(), key=lambda p: p.start)
    step = 0
    state = ctx.restore()
    if state is not None:
        trainer.load_state_dict(state["trainer"])
        _set_rng_state(state["rng"], trainer.device)
        step = int(state["step"])
    if trainer.scaler.is_enabled():
        _require_backward_step(trainer)
    sums: dict[str, float] = {}
    seen = 0
    while step < schedule.total_steps:
        epoch, position = divmod(step, schedule.steps_per_epoch)
        order = epoch_order(train_rows, cfg.seed, epoch)
        trainer.modules.train()
        chunk = cfg.batch_size * k
        while position < schedule.steps_per_epoch and step < schedule.total_steps:
            rows = order[position * chunk : (position + 1) * chunk]
            batches = np.array_split(rows, k) if k > 1 else [rows]
            phase = _phase_at(phases, step)
            with _autocast(cfg.precision, trainer.device):
                terms = trainer.train_step(batches, phase, step)
            if trainer._scaled_steps:  # once per step, after every optimiser of the step
                trainer.scaler.update()
                trainer._scaled_steps = 0
                trainer._stepped.clear()
            for key, value in terms.items():
                if not math.isfinite(value):
                    raise NonFiniteLoss(
                        f"non-finite loss term {key!r} = {value} at step {step + 1} ({phase})"
                    )
                sums[key] = sums.get(key, 0.0) + value * len(batches[0])
            seen += len(batches[0])
            step += 1
            position += 1
            end_of_epoch = position == schedule.steps_per_epoch
            if end_of_epoch:
                trainer.on_epoch_end(epoch)
            if step % schedule.report_every == 0 or step == schedule.total_steps:
                _report(trainer, data, ctx, schedule, step, phase, sums, seen)
                sums, seen = {}, 0
                trainer.modules.train()
    return schedule.report_step(schedule.total_steps)


def _report(trainer, data, ctx, schedule: Schedule, step: int, phase, sums, seen) -> None:
    metrics: dict[str, float] = {f"train/{k}": v / max(seen, 1) for k, v in sums.items()}
    metrics.update(trainer.validate(data))
    metrics["epoch"] = step / schedule.steps_per_epoch  # fractional in step mode
    if schedule.by_steps:
        metrics["step"] = float(step)
    state = {
        "step": step,
        "phase": phase,
        "trainer": trainer.state_dict(),
        "rng": _rng_state(trainer.device),
    }
    ctx.report(metrics, step=schedule.report_step(step), state=state)


def fit(
    trainer_cls: type[Trainer], cfg: TrainConfig, data: dict[str, Any], ctx: TrialContext,
    family: str | None = None,
) -> dict[str, float]:  # fmt: skip
    """Train, then evaluate the representation, draw the pictures and save the model (recorded
    as ``family``: the registry key that finds ``trainer_cls`` again)."""
    device = resolve_device(cfg.device)
    if cfg.precision == "fp16" and device.type != "cuda":  # e.g. ``auto`` on a node without GPU
        raise ValueError(
            f"precision: fp16 needs a CUDA device (loss scaling); device {cfg.device!r} is "
            f"{device} here: use bf16"
        )
    torch.manual_seed(cfg.seed)
    images = as_tensor(data["images"], device)  # uint8 stays uint8 on the device
    trainer = trainer_cls(cfg, images.shape[1], device)
    trainer.tracking_uri = getattr(ctx, "tracking_uri", None)  # where probes find their upstream
    trainer.setup(data, images)
    if cfg.compile:  # a reused Ray actor compiled other shapes: start from an empty cache
        torch._dynamo.reset()
    compiled = _compile_forwards(trainer.modules) if cfg.compile else []
    try:
        last_step = train(trainer, data, ctx)
    finally:
        for module in compiled:
            del module.forward  # evaluation runs eager: the scored codes are the saved model's
    trainer.modules.eval()
    final: dict[str, float] = (
        {"epoch": float(cfg.epochs)} if cfg.steps is None else {"step": float(cfg.steps)}
    )
    final.update(trainer.test_metrics(data))
    final.update(evaluate(trainer, data, images, ctx.artifact_dir))
    save_model(trainer, data, ctx.artifact_dir, family)
    ctx.report(final, step=last_step)
    return final
