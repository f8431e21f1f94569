"""What a trainable sees of the world: report metrics, save and restore state, write artifacts.

Trainables know nothing about Ray or MLflow; ``study.launch`` supplies a Ray-backed context and tests use
``LocalContext``. Checkpoints hold tensors and plain containers only and are read with
``weights_only=True``: a crafted checkpoint cannot run code.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch

# MLflow refuses other characters in metric names; a refused record would stay in the journal.
_METRIC_NAME = re.compile(r"[\w\-. :/]+")


def check_metric_names(metrics: dict[str, float]) -> None:
    """A metric name MLflow would refuse is a bug in the family: fail at once, loudly."""
    for name in metrics:
        if not _METRIC_NAME.fullmatch(name):
            raise ValueError(
                f"metric name {name!r}: MLflow allows only letters, digits, _ - . : / and spaces"
            )


class TrialContext(Protocol):
    artifact_dir: Path
    tracking_uri: str | None
    """The MLflow store upstream models are read from (probes); None: MLflow's default."""

    def report(
        self, metrics: dict[str, float], *, step: int, state: dict[str, Any] | None = None
    ) -> None:
        """Record one result at an explicit ``step``; ``state`` is checkpointed with it."""

    def restore(self) -> dict[str, Any] | None:
        """The state of the last checkpoint of this trial, or None on a fresh start."""


class LocalContext:
    """In-process context: keeps every report (with its step) and the last checkpoint on disk."""

    def __init__(self, directory: str | Path | None = None, tracking_uri: str | None = None):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="trial-"))
        self.tracking_uri = tracking_uri
        self.artifact_dir = self.directory / "artifacts"
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.reports: list[dict[str, float]] = []
        self.steps: list[int] = []

    @property
    def checkpoint_path(self) -> Path:
        return self.directory / "checkpoint.pt"

    def report(
        self, metrics: dict[str, float], *, step: int, state: dict[str, Any] | None = None
    ) -> None:
        check_metric_names(metrics)
        self.reports.append(dict(metrics))
        self.steps.append(int(step))
        if state is not None:
            torch.save(state, self.checkpoint_path)

    def restore(self) -> dict[str, Any] | None:
        if not self.checkpoint_path.exists():
            return None
        return torch.load(self.checkpoint_path, weights_only=True)
