"""Embedding an index's chunks across a Ray cluster with Ray Data (``pipeline.index_build: ray``).

Contract: a :class:`RayEncoder` is a drop-in for ``Embedder.encode`` in an index build: called with a block of
texts, it returns their normalised float32 vectors in order, computed by ``map_batches`` over an actor pool
with one embedder pinned to each alive node (soft node affinity; ``gpus`` GPUs each, else CPU), all started before the
first batch is handed out (up to ``WAIT_FOR_EMBEDDERS_S``), so every node takes part. The vectors equal a
local embedder's up to float rounding, so both paths write the same index. On one machine the same code runs
on the local Ray instance. :attr:`RayEncoder.nodes` records which nodes embedded, for tests and logs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ragsweep.pipelines.embedders.local import Embedder


class _EmbedBatch:
    """One Ray Data actor: loads the embedder once, then embeds the batches it is given."""

    def __init__(self, spec: str, batch_size: int, backend: str, cache_dir: str | None) -> None:
        import ray

        self.embedder = Embedder(
            spec, batch_size=batch_size, backend=backend, cache_dir=Path(cache_dir) if cache_dir else None
        )
        self.node = ray.get_runtime_context().get_node_id()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        vecs = self.embedder.encode([str(t) for t in batch["text"]])
        return {"i": batch["i"], "vec": list(vecs), "node": np.full(len(vecs), self.node)}


class _OnePerNode:
    """``ray_remote_args_fn`` for the pool: Ray Data calls it before each actor it starts (and once more to size
    the pool), and each call pins the next actor to the next of ``node_ids`` in turn. SPREAD alone is best effort,
    and so is a soft pin: with no CPU reserved, both put every embedder of a two-node test cluster on the head. The
    pin is hard, but only to a node still alive at that call, so an actor restarted after a node died goes to a
    live one (or anywhere when none of them is left). (Ray deprecates ``ray_remote_args_fn`` for removal in 2.64;
    the lock holds an earlier Ray.)"""

    def __init__(self, node_ids: list[str]) -> None:
        self.node_ids, self.calls = node_ids, 0

    def __call__(self) -> dict[str, Any]:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        alive = {str(n["NodeID"]) for n in ray.nodes() if n.get("Alive")}
        live = [n for n in self.node_ids if n in alive]
        if not live:
            return {}
        node = live[self.calls % len(live)]
        self.calls += 1
        return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node, soft=False)}


def _embedding_nodes(gpus: float) -> list[str]:
    """Alive nodes that can hold an embedder (with ``gpus`` > 0: nodes that have a GPU), in a stable order."""
    import ray

    alive = [n for n in ray.nodes() if n.get("Alive")]
    able = [n for n in alive if gpus <= 0 or n.get("Resources", {}).get("GPU", 0) >= gpus] or alive
    return sorted(str(n["NodeID"]) for n in able)


WAIT_FOR_EMBEDDERS_S = 300  # an autoscaling cluster may have to add the node first


class RayEncoder:
    block = 32_768  # texts per call: each call starts an actor pool, so calls are few and large

    def __init__(
        self, spec: str, batch_size: int, gpus: float = 0.0, backend: str = "torch", cache_dir: Path | None = None
    ) -> None:
        self.spec, self.batch_size, self.gpus, self.backend = spec, batch_size, gpus, backend
        self.cache_dir = str(cache_dir) if cache_dir else None
        self.nodes: set[str] = set()

    def __call__(self, texts: list[str]) -> np.ndarray:
        import ray

        if not texts:
            return np.zeros((0, Embedder(self.spec).dim), dtype=np.float32)
        nodes = _embedding_nodes(self.gpus)
        workers = max(1, min(len(nodes), -(-len(texts) // self.batch_size)))
        # Every embedder up before the first batch: otherwise the node whose embedder loads first can take every
        # block of a small build while the others still import torch (seen on a loaded 2-node test cluster: one
        # node embedded everything). Bounded: a pool that cannot start fails the build with Ray's timeout error.
        context = ray.data.DataContext.get_current()
        saved_wait = context.wait_for_min_actors_s
        context.wait_for_min_actors_s = WAIT_FOR_EMBEDDERS_S
        try:
            return self._embed(texts, nodes[:workers])
        finally:
            context.wait_for_min_actors_s = saved_wait

    def _embed(self, texts: list[str], nodes: list[str]) -> np.ndarray:
        import ray

        ds = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
        out = ds.map_batches(
            _EmbedBatch,
            fn_constructor_kwargs={
                "spec": self.spec,
                "batch_size": self.batch_size,
                "backend": self.backend,
                "cache_dir": self.cache_dir,
            },
            # A fixed pool of `workers` embedders (`concurrency=n` may autoscale between 1 and n, and one embedder
            # then did all the work of a small build)
            batch_size=self.batch_size * 4,
            compute=ray.data.ActorPoolStrategy(size=len(nodes)),
            num_gpus=self.gpus,
            # No CPU reservation: the trial that builds holds its own slot and waits for this, and on a busy
            # machine a reservation would wait for a slot that only this build can free.
            num_cpus=0,
            ray_remote_args_fn=_OnePerNode(nodes),
        )
        vecs: np.ndarray | None = None
        for batch in out.iter_batches(batch_format="numpy", batch_size=None):
            rows = np.stack(list(batch["vec"])).astype(np.float32)
            if vecs is None:
                vecs = np.zeros((len(texts), rows.shape[1]), dtype=np.float32)
            vecs[batch["i"]] = rows
            self.nodes.update(str(n) for n in batch["node"])
        assert vecs is not None
        return vecs
