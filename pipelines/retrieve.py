"""Dense, BM25 and hybrid (reciprocal rank fusion) retrieval, all as Qdrant queries.

Contract: :meth:`Retriever.retrieve` takes a batch of questions and returns, per question, up to ``k``
:class:`Hit` objects, best first. Hybrid fuses a dense and a BM25 candidate list with Qdrant's RRF.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from qdrant_client import models

from ragsweep.pipelines.chunking import Chunk
from ragsweep.pipelines.embed import Embedder
from ragsweep.pipelines.index import DENSE, SPARSE, IndexHandle
from ragsweep.pipelines.registry import Registry

Dense = list[float] | None
Sparse = models.SparseVector | None
# A retriever's target builds the Qdrant query for one question from its dense and sparse vectors.
RETRIEVERS: Registry[Callable[[Dense, Sparse, int], models.QueryRequest]] = Registry("retriever")


@RETRIEVERS.register("dense", "nearest chunks by embedding (cosine)", dense=True, sparse=False)
def _dense(dense: Dense, sparse: Sparse, k: int) -> models.QueryRequest:
    return models.QueryRequest(query=dense, using=DENSE, limit=k)


@RETRIEVERS.register("bm25", "BM25 over the chunks' terms (sparse vectors)", dense=False, sparse=True)
def _bm25(dense: Dense, sparse: Sparse, k: int) -> models.QueryRequest:
    return models.QueryRequest(query=sparse, using=SPARSE, limit=k)


@RETRIEVERS.register("hybrid", "dense and BM25 candidates (2k each) fused by reciprocal rank", dense=True,
                     sparse=True)
def _hybrid(dense: Dense, sparse: Sparse, k: int) -> models.QueryRequest:
    return models.QueryRequest(
        prefetch=[models.Prefetch(query=dense, using=DENSE, limit=k * 2),
                  models.Prefetch(query=sparse, using=SPARSE, limit=k * 2)],
        query=models.FusionQuery(fusion=models.Fusion.RRF),
        limit=k,
    )


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float


class Retriever:
    def __init__(self, index: IndexHandle, embedder: Embedder, mode: str) -> None:
        RETRIEVERS.entry(mode)  # an unknown mode fails here, naming the known ones
        self.index = index
        self.embedder = embedder
        self.mode = mode

    def _sparse(self, question: str) -> models.SparseVector:
        ids = self.index.tokenizer.tokenize([question], update_vocab=False, return_as="ids", show_progress=False)[0]
        unique = sorted(set(ids))  # Qdrant needs unique indices; BM25 counts each query term once
        return models.SparseVector(indices=unique, values=[1.0] * len(unique))

    def retrieve(self, questions: Sequence[str], k: int) -> list[list[Hit]]:
        if not questions:
            return []
        entry = RETRIEVERS.entry(self.mode)
        build = RETRIEVERS.get(self.mode)
        dense = self.embedder.encode(questions).tolist() if entry.info["dense"] else [None] * len(questions)
        sparse = [self._sparse(q) if entry.info["sparse"] else None for q in questions]
        requests = [build(d, s, k) for d, s in zip(dense, sparse, strict=True)]
        responses = self.index.client.query_batch_points(self.index.collection, requests=requests)
        chunks = self.index.chunks
        return [[Hit(chunks[int(p.id)], float(p.score)) for p in r.points] for r in responses]
