"""The prepared data reaches trials through Ray's object store, zero-copy."""

from __future__ import annotations

import numpy as np
import pytest
import ray

from trainables import DatasetConfig
from trainables.core.view import prepare_view

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


@ray.remote(num_cpus=1)
def _inspect_on_node(refs):
    data = ray.get(refs[0])
    return ray.get_runtime_context().get_node_id(), data["images"].flags.writeable


def test_each_node_of_a_cluster_maps_the_data():
    from ray.cluster_utils import Cluster

    view = prepare_view(DatasetConfig(subset="quickstart", n_samples=300))
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    try:
        ray.init(address=cluster.address, logging_level="ERROR")
        cluster.wait_for_nodes()
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        ref = ray.put(view)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        results = ray.get([
            _inspect_on_node.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(node, soft=False)
            ).remote([ref])
            for node in nodes
            for _ in range(2)
        ])  # fmt: skip
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert len({node for node, _ in results}) == 2  # trials ran on both nodes
    assert not any(writeable for _, writeable in results)  # and read the node's store copy
