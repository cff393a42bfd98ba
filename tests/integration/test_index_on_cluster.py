"""``pipeline.index_build: ray`` on a real two-node Ray cluster (head + worker started with the ``ray`` CLI):
Ray Data embeds an index's chunks on both nodes, and the index it writes equals a local build's."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.embedders.local import Embedder
from ragsweep.pipelines.embedders.ray_data import RayEncoder
from ragsweep.pipelines.index import IndexCache, IndexSpec
from tests.integration.local_cluster import LocalCluster

pytestmark = pytest.mark.integration


def test_ray_data_embeds_on_every_node_and_matches_a_local_build(tmp_path: Path, xquad_slice) -> None:  # type: ignore[no-untyped-def]
    import ray

    ds = load_dataset(*xquad_slice)
    spec = IndexSpec(ds.corpus_digest, 60, 0, "default")  # many small chunks: work for both nodes
    local = IndexCache(tmp_path / "local").get_or_build(spec, ds.corpus, Embedder())
    ray.shutdown()  # an earlier test's local Ray instance must not be the one joined
    with LocalCluster(head_cpus=1) as cluster:
        cluster.add_worker("b", cpus=1)
        try:
            ray.init(address=cluster.address, log_to_driver=False)
            encoder = RayEncoder("default", batch_size=4)
            remote = IndexCache(tmp_path / "ray").get_or_build(spec, ds.corpus, Embedder(), encoder)
            assert encoder.nodes == {cluster.head_id(), cluster.node_id("b")}  # both nodes embedded
        finally:
            ray.shutdown()
    assert remote.key == local.key and list(remote.chunks) == list(local.chunks)
    assert np.allclose(remote.dense, local.dense, atol=1e-5)
    assert np.array_equal(remote.sparse_indices, local.sparse_indices)
    # Ray Data's poller thread outlives the cluster in this process: it must not be formatting a traceback every
    # 10 s beside the other tests (tests/conftest.py: RAY_DATA_LOG_LEVEL, the CPython 3.11 AST bug it avoids).
    assert not logging.getLogger("ray.data._internal.usage.poller").isEnabledFor(logging.DEBUG)
