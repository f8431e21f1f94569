"""Params as MLflow holds them and as people read them: flattening a config to ``a.b`` strings
and back, and the short values that name trials. Pure: ``study status`` names trials with these
without importing MLflow."""

from __future__ import annotations

import json
import re
from typing import Any


def flatten(params: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested dicts -> ``{"a.b": "value"}`` strings, as MLflow params.

    Strings stay as they are; everything else is JSON (lists stay lists, ``null`` stays None), so
    ``unflatten`` gives back the config.
    """
    flat: dict[str, str] = {}
    for key, value in params.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{name}."))
        elif isinstance(value, str):
            flat[name] = value
        else:
            flat[name] = json.dumps(value)
    return flat


def parse_param(text: str) -> Any:
    """A logged param back to its value: JSON where it parses, else the string itself."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def unflatten(flat: dict[str, str]) -> dict[str, Any]:
    """Inverse of ``flatten``: ``{"a.b": "1"}`` -> ``{"a": {"b": 1}}``."""
    nested: dict[str, Any] = {}
    for name, text in flat.items():
        node = nested
        *parents, leaf = name.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = parse_param(text)
    return nested


def short_value(key: str, value: Any) -> str:
    """A param value as a person reads it in a name or a table: a run id's first characters."""
    if key == "upstream" and isinstance(value, str) and re.fullmatch(r"[0-9a-f]{32}", value):
        return value[:8]  # a run id: its first characters, as MLflow's UI shows it
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {short_value(k, v)}" for k, v in value.items()) + "}"
    return str(value)


def trial_label(trial_id: str, point: dict[str, Any]) -> str:
    """``variant=multi_head, seed=1 (f9e3b_00003)``: the trial by what sets it apart, then its id."""
    values = ", ".join(f"{k}={short_value(k, v)}" for k, v in point.items())
    return f"{values} ({trial_id})" if values else trial_id


def upstream_label(tags: dict[str, Any]) -> str:
    """A probe's upstream run as a person knows it, from the provenance tags the probe's run
    carries: ``multitask/variant=multi_head, seed=1`` (its family, then its run's name without
    the trial id); empty if the tags do not say (the true factors, an old run)."""
    name = re.sub(r" \([^()]*\)$", "", str(tags.get("upstream_run_name", "")))
    return "/".join(part for part in (str(tags.get("upstream_family", "")), name) if part)
