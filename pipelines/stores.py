"""Vector stores that hold a built index and answer dense, BM25 and fused queries; all speak one query form.

Contract:
- A :class:`StoreQuery` is one or more :class:`Leg` (a vector searched in one named vector space, with its own
  limit and fusion weight); one leg is a nearest-neighbour search, several are fused by weighted reciprocal rank
  (RRF: each leg adds ``weight / (rrf_k + rank)``; ``rrf_k`` is the query's, 2 by default as in Qdrant).
  :meth:`VectorStore.query_batch` returns, per query, ``(chunk id, score)`` pairs, best first, and the same
  pairs in the same order in every process: equal scores are ordered by chunk id. Fusion therefore happens here
  (:func:`fuse_rrf`), not in the engine: Qdrant orders RRF ties differently from one process to the next, so
  a rerun would build other prompts and miss the answer cache.
- ``edge`` (the default, :class:`EdgeStore`) is Qdrant Edge: the Qdrant engine in-process over a shard kept in
  the index folder (``edge/``). It is written once per index (under a file lock, atomically by rename, WAL
  off) and then opened by every trial process in well under a second, memory-mapped, never copied or
  re-inserted. Dense search is exact by default (the shard has no HNSW graph: a scan, ~10 ms per query at
  100,000 chunks on 2 cores); with ``hnsw_ef`` it is approximate, over an HNSW graph (m=16, ef_construct=100)
  in a shard of its own (``edge-hnsw/``), searched with that ef: much faster at scale, with the recall
  benchmarks/corpus_scale.py measures. BM25 (sparse) search is always exact.
- ``qdrant-memory`` is qdrant-client's local mode (pure Python, re-inserted per process): kept as the reference
  the equivalence tests and the scale benchmark compare against. A Qdrant server (``pipeline.qdrant_url``)
  uses the same client code with a collection per index key, shared by every node.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable, Sequence, Sized
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np
import qdrant_edge as qe
from filelock import FileLock

from ragsweep.pipelines.base.progress import Progress
from ragsweep.pipelines.base.registry import Registry

if TYPE_CHECKING:
    from qdrant_client import QdrantClient

DENSE, SPARSE = "dense", "bm25"
RRF_K = 2  # Qdrant's default ranking constant
EDGE_FOLDER, EDGE_HNSW_FOLDER = "edge", "edge-hnsw"
HNSW_M, HNSW_EF_CONSTRUCT = 16, 100  # Qdrant's defaults


@dataclass(frozen=True)
class SparseVec:
    indices: list[int]
    values: list[float]


@dataclass(frozen=True)
class Leg:
    using: str  # DENSE or SPARSE
    vector: list[float] | SparseVec
    limit: int
    weight: float = 1.0  # this leg's share in weighted RRF (unused when it is the query's only leg)


@dataclass(frozen=True)
class StoreQuery:
    legs: tuple[Leg, ...]
    limit: int
    rrf_k: float = RRF_K  # RRF's ranking constant when there are several legs


Hits = list[tuple[int, float]]


class BuiltIndex(Protocol):
    """What a store reads of a built index: a read-only view that ``pipelines.index.IndexArtifacts`` satisfies
    (a Protocol, so this module need not import index.py, which imports it)."""

    @property
    def key(self) -> str: ...
    @property
    def folder(self) -> Path: ...
    @property
    def chunks(self) -> Sized: ...
    @property
    def dense(self) -> np.ndarray: ...
    @property
    def sparse_indptr(self) -> np.ndarray: ...
    @property
    def sparse_indices(self) -> np.ndarray: ...
    @property
    def sparse_data(self) -> np.ndarray: ...


class VectorStore(Protocol):
    def query_batch(self, queries: Sequence[StoreQuery]) -> list[Hits]: ...


def ranked(hits: Hits) -> Hits:
    """``hits`` best first, equal scores by chunk id (an engine's order among ties is not a contract)."""
    return sorted(hits, key=lambda h: (-h[1], h[0]))


def fuse_rrf(legs: Sequence[Hits], limit: int, k: float = RRF_K, weights: Sequence[float] | None = None) -> Hits:
    """Weighted reciprocal rank fusion of ranked hit lists: score = sum over legs of weight / (k + rank), rank
    from 0, weights 1 by default; best ``limit`` first, equal scores by chunk id."""
    scores: dict[int, float] = {}
    for hits, weight in zip(legs, weights or [1.0] * len(legs), strict=True):
        for rank, (cid, _) in enumerate(hits):
            scores[cid] = scores.get(cid, 0.0) + weight / (k + rank)
    return ranked(list(scores.items()))[:limit]


def fused_batch(queries: Sequence[StoreQuery], nearest: Callable[[list[tuple[Leg, int]]], list[Hits]]) -> list[Hits]:
    """Answer ``queries`` with one batch of single-vector searches (``nearest``: (leg, limit) pairs -> hits per
    pair), fusing several legs with :func:`fuse_rrf`."""
    searches = [(leg, q.limit if len(q.legs) == 1 else leg.limit) for q in queries for leg in q.legs]
    results = iter(nearest(searches))
    out: list[Hits] = []
    for q in queries:
        legs = [ranked(next(results)) for _ in q.legs]
        out.append(legs[0] if len(legs) == 1 else fuse_rrf(legs, q.limit, q.rrf_k, [leg.weight for leg in q.legs]))
    return out


# A store's target opens one built index: (artifacts, hnsw_ef: None = exact dense search) -> VectorStore.
STORES: Registry[Callable[[BuiltIndex, int | None], VectorStore]] = Registry("vector store")
STORES.add(
    "edge",
    "Qdrant Edge: the Qdrant engine in-process over a shard on disk, built once per index and "
    "opened memory-mapped by every trial (default)",
    "ragsweep.pipelines.stores:open_edge",
)
STORES.add(
    "qdrant-memory",
    "qdrant-client local mode: pure Python, every trial re-inserts the index (reference "
    "for tests and benchmarks; slow above 20,000 chunks)",
    "ragsweep.pipelines.stores:open_qdrant_memory",
)


def csr_rows(art: BuiltIndex, lo: int, hi: int) -> list[SparseVec | None]:
    """The BM25 vectors of chunks ``lo..hi-1`` (None for a chunk with no terms, e.g. only stop words)."""
    out: list[SparseVec | None] = []
    for i in range(lo, hi):
        a, b = int(art.sparse_indptr[i]), int(art.sparse_indptr[i + 1])
        out.append(SparseVec(art.sparse_indices[a:b].tolist(), art.sparse_data[a:b].tolist()) if b > a else None)
    return out


class EdgeStore:
    def __init__(self, folder: Path, hnsw_ef: int | None = None) -> None:
        self.shard = qe.EdgeShard.load(str(folder))
        self.params = qe.SearchParams(hnsw_ef=hnsw_ef) if hnsw_ef else qe.SearchParams(exact=True)

    @staticmethod
    def _query(leg: Leg) -> qe.Query:
        vec = leg.vector
        return qe.Query.Nearest(
            qe.SparseVector(vec.indices, vec.values) if isinstance(vec, SparseVec) else vec, using=leg.using
        )

    def _nearest(self, searches: list[tuple[Leg, int]]) -> list[Hits]:
        batch = qe.QueryBatchRequest(
            [qe.QueryRequest(limit=limit, query=self._query(leg), params=self.params) for leg, limit in searches]
        )
        return [[(int(p.id), float(p.score)) for p in r] for r in self.shard.query_batch(batch)]

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[Hits]:
        return fused_batch(queries, self._nearest)


def write_edge_shard(art: BuiltIndex, target: Path, hnsw: bool = False, batch_size: int = 1024) -> None:
    """Write ``art`` as a Qdrant Edge shard at ``target`` (built in a sibling temp folder, then renamed); with
    ``hnsw`` the dense vectors get an HNSW graph, else none (m=0: exact search, and a build of seconds)."""
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-"))
    try:
        config = qe.EdgeConfig(
            # Cached = memory-mapped through the page cache: trials on one machine share one copy.
            vectors={
                DENSE: qe.EdgeVectorParams(
                    size=int(art.dense.shape[1]), distance=qe.Distance.Cosine, memory=qe.Memory.Cached
                )
            },
            sparse_vectors={SPARSE: qe.EdgeSparseVectorParams(memory=qe.Memory.Cached)},
            wal_enabled=False,  # written once, then only read: no WAL lets many processes open it at once
            hnsw_config=qe.HnswIndexConfig(
                m=HNSW_M if hnsw else 0, ef_construct=HNSW_EF_CONSTRUCT, full_scan_threshold=10_000
            ),
        )
        shard = qe.EdgeShard.create(str(tmp / EDGE_FOLDER), config)
        n = len(art.chunks)
        # One line per index is the build's (index.py); this one speaks only when writing the shard is slow.
        with Progress(f"index {art.key}: vector store", n, "chunks", final=False) as bar:
            for lo in range(0, n, batch_size):
                hi = min(n, lo + batch_size)
                points = []
                for i, sparse in zip(range(lo, hi), csr_rows(art, lo, hi), strict=True):
                    vector: dict[str, list[float] | qe.SparseVector | list[list[float]]] = {
                        DENSE: np.asarray(art.dense[i]).tolist()
                    }
                    if sparse is not None:
                        vector[SPARSE] = qe.SparseVector(sparse.indices, sparse.values)
                    points.append(qe.Point(i, vector))
                shard.update(qe.UpdateOperation.upsert_points(points))
                bar.update(hi - lo)
            # Immutable, memory-mapped segments (and HNSW, if asked) now, not in the first trial's first query.
            shard.optimize()
        shard.flush()
        shard.close()
        (tmp / EDGE_FOLDER).rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def open_edge(art: BuiltIndex, hnsw_ef: int | None = None) -> EdgeStore:
    """The index's Edge shard (with an HNSW graph when ``hnsw_ef`` is set), written first if this index has none
    yet (one writer per index folder)."""
    name = EDGE_HNSW_FOLDER if hnsw_ef else EDGE_FOLDER
    target = art.folder / name
    if not target.exists():
        with FileLock(str(art.folder / f"{name}.lock")):
            if not target.exists():
                write_edge_shard(art, target, hnsw=bool(hnsw_ef))
    return EdgeStore(target, hnsw_ef)


class QdrantStore:
    """A collection in qdrant-client: local mode (``url`` None) or a server shared by every node."""

    def __init__(self, client: QdrantClient, collection: str) -> None:
        self.client = client
        self.collection = collection

    def _nearest(self, searches: list[tuple[Leg, int]]) -> list[Hits]:
        from qdrant_client import models

        def vec(leg: Leg) -> object:
            if isinstance(leg.vector, SparseVec):
                return models.SparseVector(indices=leg.vector.indices, values=leg.vector.values)
            return leg.vector

        requests = [models.QueryRequest(query=vec(leg), using=leg.using, limit=limit) for leg, limit in searches]
        responses = self.client.query_batch_points(self.collection, requests=requests)
        return [[(int(p.id), float(p.score)) for p in r.points] for r in responses]

    def query_batch(self, queries: Sequence[StoreQuery]) -> list[Hits]:
        return fused_batch(queries, self._nearest)


def open_qdrant_memory(art: BuiltIndex, hnsw_ef: int | None = None) -> QdrantStore:
    """qdrant-client's local mode (exact search whatever ``hnsw_ef``: it has no HNSW)."""
    return open_qdrant(art, None)


def open_qdrant(art: BuiltIndex, url: str | None, batch_size: int = 256) -> QdrantStore:
    """Load ``art`` into qdrant-client: local mode (``url`` None) or the server at ``url``, where the collection
    is named by the index key and reused when it already holds every chunk."""
    from qdrant_client import QdrantClient, models

    client = QdrantClient(url=url) if url else QdrantClient(":memory:")
    name = f"ragsweep-{art.key}"
    exists = client.collection_exists(name)
    if exists and client.count(name).count == len(art.chunks):
        return QdrantStore(client, name)
    if not exists:
        client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=int(art.dense.shape[1]), distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams()},
        )
    n = len(art.chunks)
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        points = []
        for i, sparse in zip(range(lo, hi), csr_rows(art, lo, hi), strict=True):
            vector: dict[str, object] = {DENSE: np.asarray(art.dense[i]).tolist()}
            if sparse is not None:
                vector[SPARSE] = models.SparseVector(indices=sparse.indices, values=sparse.values)
            points.append(models.PointStruct(id=i, vector=vector))
        client.upsert(name, points=points, wait=True)
    return QdrantStore(client, name)


def open_store(art: BuiltIndex, store: str = "edge", url: str | None = None, hnsw_ef: int | None = None) -> VectorStore:
    """``url`` (a Qdrant server) wins over ``store``: a cluster's trials share the server's collection."""
    if url:
        return open_qdrant(art, url)
    return STORES.get(store)(art, hnsw_ef)
