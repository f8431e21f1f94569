"""The one base class of a user's mistake (a bad spec, file, name or option), importable for free.

``study`` turns a ``UserError`` into one line and exit 2; anything else is a bug in this code and
keeps its traceback (a ``KeyError`` or ``ValueError`` from deep inside a metric is never reported to
the user as their mistake).
"""

from __future__ import annotations


class UserError(ValueError):
    """Bad input; ``str(err)`` is one line naming the key, file or value."""

    def __str__(self) -> str:
        # A key or value may hold a line break (YAML allows "x\ny" keys): keep the message one line.
        return "\\n".join(super().__str__().splitlines())


class InputError(UserError):
    """Arrays or files given to score that cannot be scored (``study score``, ``score_arrays``)."""
