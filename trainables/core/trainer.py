"""The interface a model family implements: a ``Trainer`` subclass.

A family defines its ``Config``, modules, optimisers and ``train_step`` (and, where it has them,
several optimisers or phases, declared as data); ``core.loop`` runs it. Nothing here trains.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from .config import DatasetConfig, TrainConfig
from .outputs import Output
from .view import prepare_view


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
    is_probe: ClassVar[bool] = False
    """Trains on a frozen upstream representation (``Config.upstream``), not on images."""
    trains: ClassVar[bool] = True
    """False: nothing trains (an encoder brought from elsewhere): one final report, no checkpoint."""
    tiny_config: ClassVar[dict[str, Any]] = {}
    """What the family needs on top of ``trainables.testing``'s tiny config (a few steps on 96
    images) for the contract checks to run it, e.g. a small ``latent_dim``."""
    outputs: ClassVar[tuple[Output, ...]] = ()
    """What ``test_metrics`` (and ``validate``, for learning curves) report besides the registered
    metrics' outputs: name or prefix, direction, bounds, whether a report leads with it or keeps it
    out of its main tables. Analysis and ``study status`` rank by these, never by a family's name."""
    pictures: ClassVar[tuple[str, ...]] = ("umap.png",)
    """The PNGs a report shows of a run, best first (every family's codes get a UMAP)."""

    @classmethod
    def tiny_inputs(cls, directory: Path) -> dict[str, Any]:
        """Config entries naming files the tiny config needs, written under ``directory`` (e.g. an
        encoder to load); most families need none."""
        return {}

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
        """Final metrics on the test split (e.g. ``rmse``, ``reconstruction_mse``), each declared
        in ``outputs``."""
        return {}

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Images in [0, 1] (B, C, 64, 64) -> (code mean (B, D), code std (B, D) or None)."""
        raise NotImplementedError

    def encode_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Codes of rows of the study's images (row indices on the device); probes look up the
        frozen codes computed once instead."""
        return self.encode(self.batch(rows))

    def fixed_codes(self, data: dict[str, Any]) -> np.ndarray | None:
        """Codes of the rows of ``data`` that do not come from images (a file of codes), so a
        probe on this model reads them instead of encoding; None: encode the images."""
        return None

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
