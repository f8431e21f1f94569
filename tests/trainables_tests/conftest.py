from __future__ import annotations

import pytest

from trainables.testing import KilledAfter


@pytest.fixture
def killed_after() -> type[KilledAfter]:
    """``killed_after(directory, n)``: a context that dies after n checkpoints; expect
    ``killed_after.Killed``. (A fixture: test modules cannot import conftest under importlib.)"""
    return KilledAfter
