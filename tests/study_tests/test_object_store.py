"""The prepared data reaches trials through Ray's object store, zero-copy."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from trainables import DatasetConfig
from trainables._eval import prepare_view

pytestmark = pytest.mark.ray


@ray.remote(num_cpus=0)
def _inspect(refs):
    import os

    data = ray.get(refs[0])
    images = data["images"]
    return (
        os.getpid(),
        images.flags.writeable,
        int(images.sum(dtype=np.int64)),
        data["factor_names"],
    )


def test_trials_read_the_same_read_only_buffer():
    view = prepare_view(DatasetConfig(subset="quickstart", n_samples=600))
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    try:
        ref = ray.put(view)
        results = ray.get([_inspect.remote([ref]) for _ in range(4)])
    finally:
        ray.shutdown()
    expected = int(view["images"].sum(dtype=np.int64))
    for _, writeable, checksum, names in results:
        # Read-only numpy views mean the arrays were mapped from the store, not unpickled copies.
        assert writeable is False and checksum == expected
        assert names == ["shape", "scale", "posX", "posY"]
