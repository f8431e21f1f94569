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
- after training: the family's test metrics, the shared evaluation path (``_eval.evaluate``), the
  pictures, and the saved model (``model/weights.pt`` + ``model/config.json``).
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ._config import DatasetConfig, TrainConfig
from ._context import TrialContext
from ._eval import as_tensor, prepare_view, resolve_device


class NonFiniteLoss(RuntimeError):
    """A loss term became NaN or infinite: the trial ends, with this message as its reason."""


@dataclass(frozen=True)
class Phase:
    """A training phase starting at optimiser step ``start`` (e.g. a warm-up, then the full model)."""

    name: str
    start: int = 0


class Trainer:
    """What a family defines; ``fit`` runs it.

    Subclasses set ``Config`` and implement ``build_modules``, ``setup`` (optimisers, data-dependent
    state), ``train_step`` and ``encode``; auto-encoders also ``decode``. ``modules`` holds every
    ``nn.Module`` (checkpointed and saved), ``optimizers`` / ``schedulers`` every optimiser and LR
    schedule (checkpointed).
    """

    name: ClassVar[str]
    Config: ClassVar[type[TrainConfig]]
    description: ClassVar[str] = ""
    stochastic: ClassVar[bool] = False
    """The encoder is a distribution: its sample is scored too (``*_sampled``)."""
    batches_per_step: ClassVar[int] = 1
    """Independent batches one step consumes (FactorVAE's discriminator trains on a second one)."""

    def __init__(self, cfg: TrainConfig, in_channels: int, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.in_channels = in_channels
        self.device = torch.device(device)
        self.modules = nn.ModuleDict(self.build_modules(cfg, in_channels)).to(self.device)
        self.optimizers: dict[str, torch.optim.Optimizer] = {}
        self.schedulers: dict[str, Any] = {}
        # Loss scaling for fp16 on CUDA only; disabled, it passes losses and steps through untouched.
        fp16_cuda = cfg.precision == "fp16" and self.device.type == "cuda"
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=fp16_cuda)
        self._scaled_steps = 0  # backward_step calls since the loop last updated the scale
        self._stepped: set[int] = set()  # optimisers stepped since then
        self._in_backward_step = False

    # -- what a family implements -------------------------------------------------------------
    @classmethod
    def build_modules(cls, cfg: Any, in_channels: int) -> dict[str, nn.Module]:
        raise NotImplementedError

    @classmethod
    def prepare_data(cls, dataset: DatasetConfig, configs: Sequence[Any]) -> dict[str, Any]:
        """Driver side, once per study: images, factors and splits (plus family extras)."""
        return prepare_view(dataset)

    @classmethod
    def expand(cls, params: dict[str, Any]) -> list[dict[str, Any]]:
        """The trials one grid combination of a study stands for, as params added to it.

        ``[{}]``: the combination itself. A family whose paper defines a baseline as several
        models (the multi-task paper's single-task baseline: one model per task) says so here, so
        every study trains it that way without listing the models.
        """
        return [{}]

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        """Optimisers and data-dependent state; ``images`` is the uint8 view on the device."""
        self.images = images

    def phases(self) -> list[Phase]:
        return [Phase("train")]

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        """One optimiser step on ``batches`` (row indices); returns loss terms, ``loss`` first."""
        raise NotImplementedError

    def validate(self, data: dict[str, Any]) -> dict[str, float]:
        """Validation metrics at each report (e.g. ``val/loss``)."""
        return {}

    def test_metrics(self, data: dict[str, Any]) -> dict[str, float]:
        """Final metrics on the test split (e.g. ``rmse``, ``reconstruction_mse``)."""
        return {}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images in [0, 1] (B, C, 64, 64) -> (code mean (B, D), code std (B, D) or None)."""
        raise NotImplementedError

    def encode_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes of rows of the study's images (row indices on the device); probes look up the
        frozen codes computed once instead."""
        return self.encode(self.batch(rows))

    def decode(self, codes: torch.Tensor) -> torch.Tensor | None:
        """Codes (B, D) -> images in [0, 1] (B, C, 64, 64); None when the family has no decoder."""
        return None

    @classmethod
    def from_saved(cls, cfg: Any, info: dict[str, Any], device: torch.device) -> Trainer:
        """The untrained modules a saved model's weights load into (``model/config.json``)."""
        return cls(cfg, int(info["in_channels"]), device)

    def saved_info(self) -> dict[str, Any]:
        """What ``from_saved`` needs besides the config (written into ``model/config.json``)."""
        return {}

    def on_epoch_end(self, epoch: int) -> None:
        """Called after each full pass over the train split (LR schedules step here)."""
        for scheduler in self.schedulers.values():
            scheduler.step()

    # -- shared helpers -----------------------------------------------------------------------
    def backward_step(self, loss: torch.Tensor, *optimizers: torch.optim.Optimizer) -> None:
        """``zero_grad(set_to_none=True)``, ``loss.backward()`` and ``step()`` of ``optimizers``,
        with fp16 loss scaling when ``self.scaler`` is enabled (a skipped step on inf/NaN
        gradients, as GradScaler does); at fp32 and bf16 exactly those three calls."""
        # An optimiser stepped twice in one loop step (modular_ae's relational updates): the
        # scaler must update in between, or GradScaler refuses the second step.
        if self.scaler.is_enabled() and any(id(o) in self._stepped for o in optimizers):
            self.scaler.update()
            self._stepped.clear()
        self._stepped.update(id(o) for o in optimizers)
        for optimizer in optimizers:
            optimizer.zero_grad(set_to_none=True)
        # Backward and the step outside autocast, as torch advises.
        with torch.autocast(self.device.type, enabled=False):
            self.scaler.scale(loss).backward()
            self._in_backward_step = True
            try:
                for optimizer in optimizers:
                    self.scaler.step(optimizer)
            finally:
                self._in_backward_step = False
        self._scaled_steps += 1

    def batch(self, rows: np.ndarray) -> torch.Tensor:
        """The data path: index uint8 images on their device, then convert (no host copies)."""
        index = torch.as_tensor(rows, device=self.images.device)
        return self.images[index].float().div_(255.0)  # (B, C, 64, 64)

    def state_dict(self) -> dict[str, Any]:
        state = {
            "modules": self.modules.state_dict(),
            "optimizers": {k: o.state_dict() for k, o in self.optimizers.items()},
            "schedulers": {k: s.state_dict() for k, s in self.schedulers.items()},
        }
        if self.scaler.is_enabled():  # the scale and its growth count: resume stays exact
            state["scaler"] = self.scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.modules.load_state_dict(state["modules"])
        for key, optimizer in self.optimizers.items():
            optimizer.load_state_dict(state["optimizers"][key])
        for key, scheduler in self.schedulers.items():
            scheduler.load_state_dict(state["schedulers"][key])
        if self.scaler.is_enabled():
            self.scaler.load_state_dict(state["scaler"])


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
    trainer_cls: type[Trainer], cfg: TrainConfig, data: dict[str, Any], ctx: TrialContext
) -> dict[str, float]:
    """Train, then evaluate the representation, draw the pictures and save the model."""
    from ._eval import evaluate
    from ._saved import save_model

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
    save_model(trainer, data, ctx.artifact_dir)
    ctx.report(final, step=last_step)
    return final
