"""Factor subsets from config: fix, restrict (indices or value ranges), bin, mark nuisance.

Per factor, a spec is one of
  3                       fix the factor at class 3
  [0, 2, 4] / "0:32:2"    keep these classes (a slice string: start:stop:step)
  {values: ..., range: [lo, hi], bins: 3 | [[...], ...], role: relevant | nuisance}
                          ``range`` keeps classes whose *value* lies in [lo, hi]; ``bins`` groups
                          kept classes into labels (an int: that many contiguous equal groups);
                          nuisance factors vary in the images but are not scored.
A subset may also be a name from ``NAMED_SUBSETS`` (e.g. ``weak_disentanglement``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .base import DataError, FactorSubset, GroundTruthData, parse_index_spec

_THIRDS = [list(range(0, 5)), list(range(13, 18)), list(range(27, 32))]

# Valenti & Bacciu's weak-disentanglement view: 3 shapes x 3 x-bins x 3 y-bins = 27 classes; scale
# and a few orientations near 0 vary as nuisance.
_DSPRITES_V2 = {
    "scale": {"values": [2, 3, 4], "role": "nuisance"},
    "orientation": {"values": [0, 1, 2, 37, 38, 39], "role": "nuisance"},
    "posX": {"bins": _THIRDS},
    "posY": {"bins": _THIRDS},
}
# The modular paper's versions (its Tables 1-2). It gives the factor-combination counts, not the
# splits; these match the counts: v3 adds 5 scales (135), v4 8 orientation bins of 5 (1,080).
_DSPRITES_V3 = {**_DSPRITES_V2, "scale": "1:6"}
_DSPRITES_V4 = {**_DSPRITES_V3, "orientation": {"bins": 8}}
# Shapes3D: v2 = object hue x shape (40) with scale and 5 mid orientations as nuisance and the
# floor and wall hues fixed; v3 adds scale in 3 bins (120); v5 frees floor and wall hue (12,000).
_SHAPES3D_V2 = {
    "floor_hue": 0,
    "wall_hue": 0,
    "scale": {"role": "nuisance"},
    "orientation": {"values": "5:10", "role": "nuisance"},
}
_SHAPES3D_V3 = {**_SHAPES3D_V2, "scale": {"bins": 3}}
_SHAPES3D_V5 = {k: v for k, v in _SHAPES3D_V3.items() if k not in ("floor_hue", "wall_hue")}

NAMED_SUBSETS: dict[str, dict[str, dict[str, Any]]] = {
    "dsprites": {
        "weak_disentanglement": _DSPRITES_V2,
        "v2": _DSPRITES_V2,
        "v3": _DSPRITES_V3,
        "v4": _DSPRITES_V4,
        "quickstart": {"orientation": 0, "posX": "0:32:2", "posY": "0:32:2"},
    },
    "shapes3d": {
        "v2": _SHAPES3D_V2,
        "v3": _SHAPES3D_V3,
        "v5": _SHAPES3D_V5,
        "small": {
            "floor_hue": "0:10:3",
            "wall_hue": "0:10:3",
            "object_hue": "0:10:3",
            "scale": "0:8:2",
            "orientation": "0:15:2",
        },  # fmt: skip
    },
    "mpi3d": {
        "small": {"horizontal_axis": "0:40:4", "vertical_axis": "0:40:4", "camera_height": 1},
    },
}
_KEYS = {"values", "range", "bins", "role"}


def resolve(dataset: GroundTruthData, spec: str | dict[str, Any] | None) -> GroundTruthData:
    if not spec:
        return dataset
    if isinstance(spec, str):
        named = NAMED_SUBSETS.get(dataset.name, {})
        if spec not in named:
            raise DataError(
                f"dataset.subset: unknown named subset {spec!r} for {dataset.name}; "
                f"known: {sorted(named)}"
            )
        spec = named[spec]
    keep: dict[str, list[int]] = {}
    bins: dict[str, list[list[int]]] = {}
    nuisance: list[str] = []
    for name, item in spec.items():
        where = f"dataset.subset.{name}"
        if name not in dataset.factor_names:
            raise DataError(
                f"{where}: unknown factor {name!r} of {dataset.name}; "
                f"factors are {list(dataset.factor_names)}"
            )
        k = dataset.factor_names.index(name)
        size = dataset.factor_sizes[k]
        if not isinstance(item, dict):
            keep[name] = parse_index_spec(item, size, where)
            continue
        unknown = set(item) - _KEYS
        if unknown:
            raise DataError(f"{where}: unknown key {sorted(unknown)[0]!r}; use {sorted(_KEYS)}")
        classes = parse_index_spec(item.get("values", f"0:{size}"), size, f"{where}.values")
        if "range" in item:
            lo, hi = item["range"]
            values = dataset.factor_values[k]
            classes = [c for c in classes if lo <= values[c] <= hi]
            if not classes:
                raise DataError(f"{where}.range: no {name} value lies in [{lo}, {hi}]")
        keep[name] = classes
        if "bins" in item:
            groups = item["bins"]
            if isinstance(groups, int):
                if not 1 <= groups <= len(classes):
                    raise DataError(f"{where}.bins: need 1..{len(classes)} bins, got {groups}")
                groups = [list(g) for g in np.array_split(np.array(classes), groups)]
            groups = [[int(i) for i in group] for group in groups]
            stray = {i for g in groups for i in g} - set(classes)
            if stray:
                raise DataError(f"{where}.bins: classes {sorted(stray)} are not kept")
            if "values" not in item and "range" not in item:
                keep[name] = sorted({i for g in groups for i in g})
            bins[name] = groups
        role = item.get("role", "relevant")
        if role not in ("relevant", "nuisance"):
            raise DataError(f"{where}.role: must be 'relevant' or 'nuisance', got {role!r}")
        if role == "nuisance":
            nuisance.append(name)
    return FactorSubset(dataset, keep, bins=bins, nuisance=nuisance)
