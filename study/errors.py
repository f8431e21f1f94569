"""The user-facing error of a bad spec, importable without torch or Ray (``study --help`` stays fast)."""

from __future__ import annotations

from trainables.errors import UserError


class SpecError(UserError):
    """A bad study spec; ``str(err)`` is one line naming the file and key."""
