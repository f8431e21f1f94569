"""Saved models: what a trial leaves for later studies (probes, traversals, re-scoring).

``model/weights.pt`` holds every module's state dict (tensors only: it loads with
``torch.load(..., weights_only=True)``); ``model/config.json`` holds the family name, the full
validated config and what the modules' shapes depend on. ``load_model`` rebuilds the trained modules
exactly: the codes it gives are the ones the trial scored.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .builtins import family_key
from .evaluation import encode
from .trainer import Trainer
from .view import as_tensor

MODEL_DIR = "model"
_DOWNLOAD_PREFIX = "downloaded-model-"
FORMAT = 1


def save_model(
    trainer: Trainer, data: dict[str, Any], artifact_dir: Path, family: str | None = None
) -> Path:
    """Weights and ``config.json``; ``family`` is the registry name that finds the trainer's class
    again (default: ``builtins.family_key``)."""
    directory = Path(artifact_dir) / MODEL_DIR
    directory.mkdir(parents=True, exist_ok=True)
    weights = {name: module.state_dict() for name, module in trainer.modules.items()}
    torch.save(weights, directory / "weights.pt")
    config = {
        "format": FORMAT,
        "family": family or family_key(type(trainer)),
        "config": trainer.cfg.model_dump(mode="json"),
        "in_channels": trainer.in_channels,
        "dataset": data.get("dataset"),
        "factor_names": list(data["factor_names"]),
        "factor_sizes": [int(s) for s in data["factor_sizes"]],
        **trainer.saved_info(),
    }
    (directory / "config.json").write_text(json.dumps(config, indent=2))
    return directory


@dataclass
class SavedModel:
    """A trained family model rebuilt from its artifacts, in eval mode with gradients off."""

    trainer: Trainer
    info: dict[str, Any]

    @property
    def family(self) -> str:
        return self.info["family"]

    def encode(self, images: np.ndarray | torch.Tensor, *, batch_size: int = 512) -> np.ndarray:
        """Mean codes (float64, (N, D)) of uint8 images (N, C, 64, 64)."""
        tensor = images if isinstance(images, torch.Tensor) else as_tensor(images, "cpu")
        tensor = tensor.to(self.trainer.device)

        def encode_rows(rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
            return self.trainer.encode(tensor[rows].float().div_(255.0))

        codes, _ = encode(encode_rows, np.arange(len(tensor)), tensor.device, batch_size)
        return codes


def _model_dir(source: str | Path, tracking_uri: str | None) -> Path:
    path = Path(source)
    for candidate in (path, path / MODEL_DIR, path / "artifacts" / MODEL_DIR):
        if (candidate / "config.json").is_file() and (candidate / "weights.pt").is_file():
            return candidate
    if path.exists():
        raise FileNotFoundError(f"{source}: no {MODEL_DIR}/config.json and weights.pt here")
    # Otherwise an MLflow run id: download its model artifacts (without a progress bar per file in
    # every probe trial's log).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri)
    target = Path(tempfile.mkdtemp(prefix=_DOWNLOAD_PREFIX))
    try:
        client.download_artifacts(str(source), MODEL_DIR, str(target))
    except Exception as exc:  # mlflow raises several types for a missing run or artifact
        raise FileNotFoundError(f"run {source}: no saved model ({exc})") from None
    return target / MODEL_DIR


def read_model(
    source: str | Path, *, tracking_uri: str | None = None, device: str = "cpu"
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A saved model's ``config.json`` and weights (tensors only), from an artifact directory or
    an MLflow run id; ``trainables.load_model`` rebuilds the trainer from them."""
    directory = _model_dir(source, tracking_uri)
    info = json.loads((directory / "config.json").read_text())
    weights = torch.load(directory / "weights.pt", weights_only=True, map_location=device)
    if directory.parent.name.startswith(_DOWNLOAD_PREFIX):  # ours, from MLflow: all read now
        shutil.rmtree(directory.parent, ignore_errors=True)
    return info, weights


def rebuild(
    trainer_cls: type[Trainer], info: dict[str, Any], weights: dict[str, Any], device: str,
    tracking_uri: str | None = None,
) -> SavedModel:  # fmt: skip
    """The trained modules of ``trainer_cls`` with ``weights`` loaded, in eval mode, no gradients."""
    cfg = trainer_cls.Config(**info["config"])
    trainer = trainer_cls.from_saved(cfg, info, torch.device(device))
    trainer.tracking_uri = tracking_uri  # a probe finds its own upstream in the same store
    for name, module in trainer.modules.items():
        module.load_state_dict(weights[name])
    trainer.modules.eval()
    trainer.modules.requires_grad_(False)
    return SavedModel(trainer, info)
