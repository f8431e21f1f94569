"""What every config and spec model refuses beyond its declared types (a base class).

A YAML ``true`` is not the number 1: pydantic's lax mode takes a boolean for an int or float field
(``epochs: true`` trained one epoch); here it is refused unless the field itself takes booleans.
Every whole number in a config has an upper bound, ``MAX_INT`` (a typo of ``1e30`` epochs must not
train forever); fields with a tighter meaning state their own with ``le=``.
"""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, model_validator

MAX_INT = 10**9


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    return any(_accepts_bool(arg) for arg in typing.get_args(annotation) if arg is not type(None))


def _problem(value: Any, takes_bool: bool) -> str | None:
    """Why ``value`` (or an item of it, one level down) is refused, or None."""
    items = value if isinstance(value, list | tuple) else [value]
    for item in items:
        if isinstance(item, bool):
            if not takes_bool:
                return f"{str(value).lower()!s} is a boolean; expected a number or text"
        elif isinstance(item, int) and abs(item) > MAX_INT:
            return f"{item} is too large (whole numbers in a config are at most {MAX_INT:,})"
    return None


class Checked(BaseModel):
    """A pydantic model that refuses booleans for non-boolean fields and huge whole numbers."""

    @model_validator(mode="before")
    @classmethod
    def _plain_values(cls, data: Any) -> Any:
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name) if isinstance(name, str) else None
                if field is None or isinstance(value, dict):
                    continue
                why = _problem(value, _accepts_bool(field.annotation))
                if why:
                    raise ValueError(f"{name}: {why}")
        return data
