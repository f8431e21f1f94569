"""The seed papers' published numbers, stored as data so reports can set them beside ours.

One YAML file per paper (``multitask.yaml``, ``modular.yaml``, ``locatello.yaml``) sits beside this
module. Each holds a list of tables; a table has an ``id`` (``table5``), a ``caption``, the paper
``section``, the ``unit`` of its numbers, ``ours`` (which of our logged metrics correspond and what
differs), ``comparable`` (``value``: the numbers may be compared directly; ``rank``: only orderings;
``none``), an optional ``ambiguity`` (how a scrambled extraction was read), optional
``uncertain_metrics`` and its ``rows``. A row names ``dataset``, ``group`` and ``metric`` (and, where
they apply, ``version``, ``task`` and ``trained_on``) and carries ``mean``/``sd``, ``value`` and/or
``count`` (the number of seeds behind a mean).

Example:
    >>> from analysis import paper_values
    >>> frame = paper_values.table("multitask", "table4")
    >>> frame.query("dataset == 'dsprites' and group == 'multi_head'")["value"].item()
    35.97
"""

from __future__ import annotations

import copy
import functools
import math
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

HERE = Path(__file__).resolve().parent
PAPERS = {
    "multitask": HERE / "multitask.yaml",
    "modular": HERE / "modular.yaml",
    "locatello": HERE / "locatello.yaml",
}
"""Known papers and their files."""
COMPARABLE = ("value", "rank", "none")
"""What a comparison with our numbers may use."""
KEY_COLUMNS = ["dataset", "version", "group", "metric", "task", "trained_on"]
"""Columns that identify a row; (dataset, version, group, metric, task, trained_on) is unique."""
NUMBER_COLUMNS = ["mean", "sd", "value", "count"]
COLUMNS = KEY_COLUMNS + NUMBER_COLUMNS + ["unit", "comparable"]
"""Columns of ``table``'s frame, in order."""

_REQUIRED_TEXT = ("id", "unit", "ours")
_OPTIONAL_TEXT = ("caption", "section", "ambiguity")
_ROW_TEXT = ("dataset", "group", "metric")
_ROW_INDEX = ("task", "trained_on")
_ROW_KEYS = set(KEY_COLUMNS) | set(NUMBER_COLUMNS)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _is_text(value: Any) -> bool:
    return isinstance(value, str) and bool(value.strip())


def _validate(data: Any, source: str) -> None:
    """Raise ValueError, naming ``source`` and the table, at the first malformed entry."""
    if not isinstance(data, dict):
        raise ValueError(f"{source}: expected a mapping at the top level")
    if not _is_text(data.get("paper")):
        raise ValueError(f"{source}: 'paper' must be a non-empty string")
    entries = data.get("tables")
    if not isinstance(entries, list) or not entries:
        raise ValueError(f"{source}: 'tables' must be a non-empty list")
    seen_ids: set[str] = set()
    for position, entry in enumerate(entries):
        label = f"{source}, table #{position}"
        if not isinstance(entry, dict):
            raise ValueError(f"{label}: expected a mapping")
        if _is_text(entry.get("id")):
            label = f"{source}, table {entry['id']!r}"
        for key in _REQUIRED_TEXT:
            if not _is_text(entry.get(key)):
                raise ValueError(f"{label}: '{key}' must be a non-empty string")
        for key in _OPTIONAL_TEXT:
            if key in entry and not _is_text(entry[key]):
                raise ValueError(f"{label}: '{key}' must be a non-empty string when given")
        if entry["id"] in seen_ids:
            raise ValueError(f"{label}: duplicate table id")
        seen_ids.add(entry["id"])
        if entry.get("comparable") not in COMPARABLE:
            raise ValueError(
                f"{label}: 'comparable' must be one of {COMPARABLE}, got {entry.get('comparable')!r}"
            )
        uncertain = entry.get("uncertain_metrics", [])
        if not isinstance(uncertain, list) or not all(_is_text(m) for m in uncertain):
            raise ValueError(f"{label}: 'uncertain_metrics' must be a list of metric names")
        rows = entry.get("rows")
        if not isinstance(rows, list) or not rows:
            raise ValueError(f"{label}: 'rows' must be a non-empty list")
        seen_rows: set[tuple] = set()
        for index, row in enumerate(rows):
            _validate_row(row, f"{label}, row {index}")
            key = tuple(row.get(column) for column in KEY_COLUMNS)
            if key in seen_rows:
                raise ValueError(f"{label}, row {index}: duplicate row {row}")
            seen_rows.add(key)


def _validate_row(row: Any, label: str) -> None:
    if not isinstance(row, dict):
        raise ValueError(f"{label}: expected a mapping")
    unknown = set(row) - _ROW_KEYS
    if unknown:
        raise ValueError(f"{label}: unknown keys {sorted(unknown)}")
    for key in _ROW_TEXT:
        if not _is_text(row.get(key)):
            raise ValueError(f"{label}: '{key}' must be a non-empty string")
    if "version" in row and not _is_text(row["version"]):
        raise ValueError(f"{label}: 'version' must be a non-empty string when given")
    for key in _ROW_INDEX:
        if key in row and (
            not isinstance(row[key], int) or isinstance(row[key], bool) or row[key] < 0
        ):
            raise ValueError(f"{label}: '{key}' must be a non-negative integer")
    for key in NUMBER_COLUMNS:
        if key in row and not _is_number(row[key]):
            raise ValueError(f"{label}: '{key}' must be a finite number, got {row[key]!r}")
    if "mean" not in row and "value" not in row:
        raise ValueError(f"{label}: needs a numeric 'mean' or 'value'")
    if "sd" in row and "mean" not in row:
        raise ValueError(f"{label}: 'sd' without 'mean'")
    if "sd" in row and row["sd"] < 0:
        raise ValueError(f"{label}: 'sd' must be >= 0")
    if "count" in row and (not float(row["count"]).is_integer() or row["count"] < 1):
        raise ValueError(f"{label}: 'count' must be a positive whole number")


def load_file(path: str | Path) -> dict:
    """Read and validate one paper-values file.

    Args:
        path: A YAML file shaped like ``multitask.yaml``.

    Returns:
        The parsed mapping (``paper``, ``tables``, ...).

    Raises:
        ValueError: The file is not valid YAML or a table or row is malformed; the message names
            the file and the table.
    """
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ValueError(f"{path}: not valid YAML ({error})") from error
    _validate(data, str(path))
    return data


@functools.cache
def _load_cached(paper: str) -> dict:
    return load_file(PAPERS[paper])


def _check_paper(paper: str) -> None:
    if paper not in PAPERS:
        raise ValueError(f"unknown paper {paper!r}; known papers: {sorted(PAPERS)}")


def load(paper: str) -> dict:
    """The validated contents of one paper's file.

    Args:
        paper: ``"multitask"``, ``"modular"`` or ``"locatello"``.

    Returns:
        A fresh copy of the parsed mapping (callers may modify it).

    Raises:
        ValueError: ``paper`` is unknown, or its file is malformed.
    """
    _check_paper(paper)
    return copy.deepcopy(_load_cached(paper))


def _table_entry(paper: str, table_id: str) -> dict:
    _check_paper(paper)
    for entry in _load_cached(paper)["tables"]:
        if entry["id"] == table_id:
            return entry
    raise ValueError(f"{paper}: no table {table_id!r}; tables: {tables(paper)}")


def tables(paper: str) -> list[str]:
    """Table ids of a paper, in file order.

    Args:
        paper: ``"multitask"``, ``"modular"`` or ``"locatello"``.

    Returns:
        Ids such as ``["table1", "table4", ...]``.
    """
    _check_paper(paper)
    return [entry["id"] for entry in _load_cached(paper)["tables"]]


def meta(paper: str, table_id: str) -> dict:
    """Everything about a table except its rows.

    Args:
        paper: ``"multitask"``, ``"modular"`` or ``"locatello"``.
        table_id: One of ``tables(paper)``.

    Returns:
        ``caption``, ``section``, ``unit``, ``ours``, ``comparable``, ``ambiguity`` (None where
        the table has none) and ``uncertain_metrics`` (metric labels the extraction leaves in
        doubt; empty if none).

    Raises:
        ValueError: Unknown paper or table.
    """
    entry = _table_entry(paper, table_id)
    return {
        "caption": entry.get("caption"),
        "section": entry.get("section"),
        "unit": entry["unit"],
        "ours": entry["ours"],
        "comparable": entry["comparable"],
        "ambiguity": entry.get("ambiguity"),
        "uncertain_metrics": list(entry.get("uncertain_metrics", [])),
    }


def table(paper: str, table_id: str) -> pd.DataFrame:
    """One table as a long frame: a row per (dataset, version, group, metric, task, trained_on).

    Args:
        paper: ``"multitask"``, ``"modular"`` or ``"locatello"``.
        table_id: One of ``tables(paper)``.

    Returns:
        Columns ``COLUMNS``: the key columns (``version``, ``task`` and ``trained_on`` NaN where
        a table has none; ``task`` and ``trained_on`` are 0-based task indices), ``mean``,
        ``sd``, ``value`` and ``count`` as floats (NaN where absent), and the table's ``unit``
        and ``comparable`` repeated on every row.

    Raises:
        ValueError: Unknown paper or table.
    """
    entry = _table_entry(paper, table_id)
    frame = pd.DataFrame.from_records(
        [{column: row.get(column) for column in COLUMNS} for row in entry["rows"]], columns=COLUMNS
    )
    for column in ["task", "trained_on", *NUMBER_COLUMNS]:
        frame[column] = pd.to_numeric(frame[column], errors="raise").astype(float)
    frame["version"] = frame["version"].astype(object).where(frame["version"].notna(), math.nan)
    frame["unit"] = entry["unit"]
    frame["comparable"] = entry["comparable"]
    return frame
