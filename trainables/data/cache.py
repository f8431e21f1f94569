"""On-disk cache of derived arrays (task targets, renders), keyed by content and generator version.

Writes go to a temporary file in the same folder and are renamed into place, so concurrent trials and
interrupted runs never leave a half-written entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np


def cache_dir() -> Path:
    """``$DISENTANGLE_CACHE``, else ``~/.cache/disentangle-study``."""
    root = os.environ.get("DISENTANGLE_CACHE") or Path.home() / ".cache" / "disentangle-study"
    return Path(root)


def cache_key(**parts: object) -> str:
    """Stable hex key of JSON-serialisable parts (arrays are hashed by content)."""
    digest = hashlib.sha256()
    for name in sorted(parts):
        value = parts[name]
        digest.update(name.encode())
        if isinstance(value, np.ndarray):
            digest.update(str((value.dtype, value.shape)).encode())
            digest.update(np.ascontiguousarray(value).tobytes())
        else:
            digest.update(json.dumps(value, sort_keys=True, default=str).encode())
    return digest.hexdigest()[:32]


def atomic_save(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            np.save(handle, array, allow_pickle=False)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cached_array(kind: str, key: str, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Load ``kind/key.npy`` from the cache, or compute, store atomically and return it."""
    path = cache_dir() / kind / f"{key}.npy"
    if path.is_file():
        try:
            return np.load(path, allow_pickle=False)
        except (ValueError, OSError):
            path.unlink(missing_ok=True)  # unreadable entry (e.g. foreign write): recompute
    array = compute()
    atomic_save(path, array)
    return array
