from __future__ import annotations

import pytest

from trainables._context import LocalContext


class TrialKilled(Exception):
    """What ``KilledAfter`` raises: the trial process died."""


class KilledAfter(LocalContext):
    """Dies right after its n-th checkpoint, as a trial process killed between reports."""

    Killed = TrialKilled

    def __init__(self, directory, n: int):
        super().__init__(directory)
        self.n = n

    def report(self, metrics, *, step, state=None):
        super().report(metrics, step=step, state=state)
        if state is not None and len(self.reports) == self.n:
            raise TrialKilled


@pytest.fixture
def killed_after() -> type[KilledAfter]:
    """``killed_after(directory, n)``: a context that dies after n checkpoints; expect
    ``killed_after.Killed``. (A fixture: test modules cannot import conftest under importlib.)"""
    return KilledAfter
