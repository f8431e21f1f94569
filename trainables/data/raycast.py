"""A small orthographic ray caster of ellipsoids and boxes: the procedural smallNORB and Cars3D stand-ins.

An object is a list of primitives in its own frame (x forward, y up, z sideways), each an axis-aligned
ellipsoid or box given by centre and half-extents, and a part id (the caller colours parts). A camera
on a sphere around the origin (elevation above the horizon, azimuth about the y axis, degrees) looks at
the origin; every pixel casts one parallel ray (only those of a primitive's bounding square on screen
test it). One 64x64 view costs under a millisecond, so images are rendered on demand, never the whole
grid up front.
"""

from __future__ import annotations

import numpy as np

ELLIPSOID, BOX = 0, 1


def primitives(*rows: tuple[int, int, tuple, tuple]) -> np.ndarray:
    """Pack ``(kind, part, centre, half)`` rows into float (K, 8): kind, part, centre xyz, half xyz."""
    return np.array([[kind, part, *centre, *half] for kind, part, centre, half in rows], float)


def fit(prims: np.ndarray, radius: float) -> np.ndarray:
    """Shrink an object about the origin (if needed) to lie within a sphere of ``radius``, so no
    view crops it."""
    reach = np.linalg.norm(np.abs(prims[:, 2:5]) + np.abs(prims[:, 5:8]), axis=1).max()
    scaled = prims.copy()
    scaled[:, 2:8] *= min(1.0, radius / reach)
    return scaled


def camera(elevation_deg: float, azimuth_deg: float) -> np.ndarray:
    """Rows forward, right, up (unit vectors) of a camera looking at the origin: (3, 3)."""
    e, a = np.deg2rad(elevation_deg), np.deg2rad(azimuth_deg)
    forward = -np.array([np.cos(e) * np.sin(a), np.sin(e), -np.cos(e) * np.cos(a)])
    right = np.array([np.cos(a), 0.0, np.sin(a)])  # (world up x forward), normalised
    up = np.array([-np.sin(e) * np.sin(a), np.cos(e), np.sin(e) * np.cos(a)])  # forward x right
    return np.stack([forward, right, up])


def cast(
    prims: np.ndarray, elevation_deg: float, azimuth_deg: float, *, extent: float, size: int = 64
) -> tuple[np.ndarray, np.ndarray]:
    """Visible part id per pixel (-1: background), int (size, size), and the unit surface normal
    there, float (size, size, 3), of primitives ``prims`` (K, 8) seen over [-extent, extent]^2.

    Coordinates are kept as separate x, y, z planes (fast elementwise numpy, no size-3 axis)."""
    forward, right, up = camera(elevation_deg, azimuth_deg)
    ticks = ((np.arange(size) + 0.5) / size * 2 - 1) * extent  # pixel centres, left to right
    v, u = -ticks[:, None], ticks[None, :]  # image rows run top to bottom
    origin = [u * right[i] + v * up[i] - 10.0 * forward[i] for i in range(3)]  # 3 x (size, size)
    best = np.full((size, size), np.inf)  # ray depth of the nearest hit
    winner = np.full((size, size), -1)  # its primitive
    for k, (kind, _, *rest) in enumerate(prims):
        centre, half = np.asarray(rest[:3]), np.maximum(np.asarray(rest[3:]), 1e-9)
        # Only the pixels of the primitive's bounding square on screen can hit it.
        reach = np.sqrt(half @ half)
        cols = np.flatnonzero(np.abs(ticks - centre @ right) <= reach)
        rows = np.flatnonzero(np.abs(-ticks - centre @ up) <= reach)
        if not len(cols) or not len(rows):
            continue
        window = np.s_[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        rel = [origin[i][window] - centre[i] for i in range(3)]
        t = (_ellipsoid if kind == ELLIPSOID else _box)(rel, forward, half)
        closer = t < best[window]
        best[window] = np.where(closer, t, best[window])
        winner[window] = np.where(closer, k, winner[window])
    # Normals of the visible surfaces only: the hit point in the primitive's unit frame (sphere or
    # cube) gives the ellipsoid's normal (q / half) or the box face (largest |q|).
    hit = winner >= 0
    won = prims[winner[hit]]  # (H, 8)
    q = [
        (origin[i][hit] + best[hit] * forward[i] - won[:, 2 + i]) / won[:, 5 + i] for i in range(3)
    ]
    a = [np.abs(c) for c in q]
    faces = [(a[0] >= a[1]) & (a[0] >= a[2]), (a[1] > a[0]) & (a[1] >= a[2])]
    faces.append(~(faces[0] | faces[1]))
    ellipsoid = won[:, 0] == ELLIPSOID
    n = np.stack([np.where(ellipsoid, q[i] / won[:, 5 + i], faces[i] * np.sign(q[i]))
                  for i in range(3)], axis=1)  # fmt: skip
    normal = np.zeros((size, size, 3))
    normal[hit] = n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
    part = np.where(hit, prims[winner, 1].astype(int), -1)
    return part, normal


def _ellipsoid(rel, d, half):
    """Depth of the first hit of rays from ``rel`` (3 planes, relative to the centre) along
    ``d``, or inf: the unit sphere in coordinates scaled by ``half``."""
    o = [rel[i] / half[i] for i in range(3)]
    dd = d / half
    a = dd @ dd
    b = o[0] * dd[0] + o[1] * dd[1] + o[2] * dd[2]
    c = o[0] ** 2 + o[1] ** 2 + o[2] ** 2 - 1.0
    disc = b**2 - a * c
    t = (-b - np.sqrt(np.maximum(disc, 0.0))) / a
    return np.where((disc >= 0) & (t > 0), t, np.inf)


def _box(rel, d, half):
    """Slab test of the box [-half, half] (relative coordinates), as ``_ellipsoid``."""
    enter, leave = -np.inf, np.inf
    for i in range(3):
        if abs(d[i]) < 1e-12:  # parallel to the slab: inside it or never
            inside = np.abs(rel[i]) <= half[i]
            enter = np.where(inside, enter, np.inf)
            continue
        t0, t1 = (-half[i] - rel[i]) / d[i], (half[i] - rel[i]) / d[i]
        enter, leave = np.maximum(enter, np.minimum(t0, t1)), np.minimum(leave, np.maximum(t0, t1))
    return np.where((enter <= leave) & (enter > 0), enter, np.inf)


def lambert(normal: np.ndarray, light: np.ndarray) -> np.ndarray:
    """Diffuse term max(0, n . l) for a light direction (towards the light): (..., 3) -> (...)."""
    light = np.asarray(light, float) / np.linalg.norm(light)
    return np.clip(normal @ light, 0.0, 1.0)
