"""The user-facing error of a bad spec, importable without torch or Ray (``study --help`` stays fast)."""

from __future__ import annotations


class SpecError(ValueError):
    """A bad study spec; ``str(err)`` is one line naming the file and key."""

    def __str__(self) -> str:
        # A key or value may hold a line break (YAML allows "x\ny" keys): keep the message one line.
        return "\\n".join(super().__str__().splitlines())
