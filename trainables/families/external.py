"""An encoder trained elsewhere, scored under a study's protocol: ``family: external``.

A researcher brings one of three things and the study scores it exactly as it scores its own
families (same data view, metric points and seeds, same artifacts, one trial run per seed in the
study's MLflow experiment, usable as a probe's ``source``):

- ``encoder: model.pt``, a TorchScript file (``torch.jit.save``);
- ``encoder: weights.pt`` plus ``encoder_class: mypkg.nets:Encoder`` (and ``encoder_kwargs``): a
  state dict, read tensors-only (``weights_only=True``), loaded into the class built from the kwargs;
- ``codes: codes.npz``: an array ``codes`` (N, D), one row per image of the dataset, in the
  dataset's own row order (for a file dataset, its rows; for a built-in grid, the official order).

An encoder maps images in [0, 1], float32 (B, C, 64, 64), to codes (B, D); ``output`` says how to
read a tuple it returns (a VAE's mean and log-variance: the sample is then scored too).
Nothing trains: one final report, no checkpoint.
"""

from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, field_validator, model_validator
from torch import nn

from ..core.config import TrainConfig
from ..core.trainer import Trainer
from ..errors import InputError
from ..registry import import_path


def _is_torchscript(path: Path) -> bool:
    """TorchScript archives hold compiled code (``<name>/code/``); a ``torch.save`` state dict
    does not. Read from the zip index, nothing is unpickled."""
    try:
        with zipfile.ZipFile(path) as archive:
            return any("/code/" in name for name in archive.namelist())
    except zipfile.BadZipFile:
        return False


class ExternalConfig(TrainConfig):
    encoder: str | None = None
    """A TorchScript file, or a state dict when ``encoder_class`` is set."""
    encoder_class: str | None = None
    """``package.module:Class`` of the encoder whose state dict ``encoder`` holds."""
    encoder_kwargs: dict[str, Any] = Field(default_factory=dict)
    codes: str | None = None
    """An ``.npz`` with ``codes`` (N, D): the codes of every image of the dataset, in its row order."""
    output: Literal["mean", "mean_logvar", "mean_std"] = "mean"
    """What the encoder returns: codes, or a tuple (mean, log-variance) / (mean, std)."""
    epochs: int = Field(default=0, ge=0, le=0)  # nothing trains

    @field_validator("encoder", "codes")
    @classmethod
    def _existing_file(cls, path: str | None) -> str | None:
        # Absolute: Ray runs each trial in its own working directory.
        if path is None:
            return None
        resolved = Path(path).expanduser().resolve()
        if not resolved.is_file():
            raise ValueError(f"file {path!r} not found")
        return str(resolved)

    @model_validator(mode="after")
    def _one_source(self) -> ExternalConfig:
        if (self.encoder is None) == (self.codes is None):
            raise ValueError("set exactly one of encoder (a model file) and codes (a codes file)")
        if self.codes is not None and (self.encoder_class or self.encoder_kwargs):
            raise ValueError("encoder_class / encoder_kwargs go with encoder, not with codes")
        if self.encoder is not None and self.encoder_class is None:
            if not _is_torchscript(Path(self.encoder)):
                raise ValueError(
                    f"encoder {self.encoder!r} is not a TorchScript file (torch.jit.save); "
                    "for a state dict also set encoder_class: package.module:Class"
                )
        if self.steps:
            raise ValueError("steps: an external encoder does not train; leave steps unset")
        if self.codes is not None and self.output != "mean":
            raise ValueError("output: a codes file holds codes; leave output at mean")
        return self


def _load_encoder(cfg: ExternalConfig) -> nn.Module:
    if cfg.encoder_class is None:
        return torch.jit.load(cfg.encoder, map_location="cpu")
    cls = import_path(cfg.encoder_class)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise InputError(f"encoder_class {cfg.encoder_class!r} is not a torch.nn.Module class")
    module = cls(**cfg.encoder_kwargs)
    state = torch.load(cfg.encoder, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]  # a training checkpoint that wraps the weights
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = str(exc).strip().splitlines()[0]
        raise InputError(
            f"encoder {cfg.encoder!r} does not fit {cfg.encoder_class}: {first}"
        ) from None
    return module


def read_codes(path: str) -> np.ndarray:
    """The ``codes`` array of a codes file, float64 (N, D); one line if it is malformed."""
    try:
        with np.load(path, allow_pickle=False) as archive:
            codes = np.asarray(archive["codes"], dtype=np.float64)
    except KeyError:
        raise InputError(f"codes file {path!r} has no array 'codes'") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"codes file {path!r} is not a readable .npz ({exc})") from None
    if codes.ndim != 2 or not np.isfinite(codes).all():
        raise InputError(f"codes file {path!r}: 'codes' must be finite, shape (N, D)")
    return codes


class External(Trainer):
    name = "external"
    Config = ExternalConfig
    description = "an encoder trained elsewhere (TorchScript, state dict + class, or codes)"
    trains: ClassVar[bool] = False

    @classmethod
    def build_modules(cls, cfg: ExternalConfig, in_channels: int) -> dict[str, nn.Module]:
        return {} if cfg.encoder is None else {"encoder": _load_encoder(cfg)}

    @classmethod
    def tiny_inputs(cls, directory: Path) -> dict[str, Any]:
        """A small random conv encoder, saved as TorchScript, for the contract checks."""
        path = Path(directory) / "tiny_encoder.pt"
        if not path.exists():
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                net = nn.Sequential(
                    nn.Conv2d(1, 4, 4, 4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 16 * 16, 6)
                )
            path.parent.mkdir(parents=True, exist_ok=True)
            partial = path.with_suffix(f".{os.getpid()}.tmp")  # concurrent test processes
            torch.jit.save(torch.jit.script(net), str(partial))
            os.replace(partial, path)
        return {"encoder": str(path)}

    def setup(self, data: dict[str, Any], images: torch.Tensor) -> None:
        super().setup(data, images)
        self.codes = None
        if self.cfg.codes is not None:
            self.codes = self._view_codes(data)

    def _view_codes(self, data: dict[str, Any]) -> torch.Tensor:
        codes = read_codes(self.cfg.codes)
        rows = np.asarray(data["rows"])
        if len(codes) <= rows.max():
            raise InputError(
                f"codes file {self.cfg.codes!r} has {len(codes)} rows; the dataset's rows go up "
                f"to {rows.max()} (one code per image of the dataset, in its row order)"
            )
        return torch.as_tensor(codes[rows], dtype=torch.float32, device=self.device)

    def fixed_codes(self, data: dict[str, Any]) -> np.ndarray | None:
        """A codes file's codes for the rows of ``data`` (a probe sitting on this encoder)."""
        if self.cfg.codes is None:
            return None
        return self._view_codes(data).cpu().numpy()

    def encode_rows(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.codes is not None:
            return self.codes[rows.to(self.codes.device)], None
        return self.encode(self.batch(rows))

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cfg.encoder is None:
            raise InputError("a codes file has no image encoder: its codes are fixed per row")
        out = self.modules["encoder"](x)
        if self.cfg.output == "mean":
            mean = out[0] if isinstance(out, (tuple, list)) else out
            return mean.float(), None
        if not (isinstance(out, (tuple, list)) and len(out) >= 2):
            raise InputError(f"output: {self.cfg.output}, but the encoder returned one tensor")
        mean, spread = out[0].float(), out[1].float()
        std = torch.exp(0.5 * spread) if self.cfg.output == "mean_logvar" else spread
        return mean, std

    def train_step(self, batches: list[np.ndarray], phase: str, step: int) -> dict[str, float]:
        raise RuntimeError("an external encoder does not train (epochs: 0)")
