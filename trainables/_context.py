"""What a trainable sees of the world: report metrics, save and restore state, write artifacts.

Trainables know nothing about Ray or MLflow; ``study.launch`` supplies a Ray-backed context and tests use
``LocalContext``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any, Protocol

import torch


class TrialContext(Protocol):
    artifact_dir: Path

    def report(self, metrics: dict[str, float], *, state: dict[str, Any] | None = None) -> None:
        """Record one result; ``state`` (torch-serialisable) is checkpointed with it."""

    def restore(self) -> dict[str, Any] | None:
        """The state of the last checkpoint of this trial, or None on a fresh start."""


class LocalContext:
    """In-process context: keeps every report and the last checkpoint on disk."""

    def __init__(self, directory: str | Path | None = None):
        self.directory = Path(directory or tempfile.mkdtemp(prefix="trial-"))
        self.artifact_dir = self.directory / "artifacts"
        self.artifact_dir.mkdir(parents=True, exist_ok=True)
        self.reports: list[dict[str, float]] = []

    @property
    def _checkpoint(self) -> Path:
        return self.directory / "checkpoint.pt"

    def report(self, metrics: dict[str, float], *, state: dict[str, Any] | None = None) -> None:
        self.reports.append(dict(metrics))
        if state is not None:
            torch.save(state, self._checkpoint)

    def restore(self) -> dict[str, Any] | None:
        if not self._checkpoint.exists():
            return None
        return torch.load(self._checkpoint, weights_only=False)
