"""Dense, BM25 and hybrid (reciprocal rank fusion) retrieval, all as Qdrant queries.

Contract: :meth:`Retriever.retrieve` takes a batch of questions and returns, per question, up to ``k``
:class:`Hit` objects, best first. Hybrid fuses a dense and a BM25 candidate list with Qdrant's RRF.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from qdrant_client import models

from pipelines.chunking import Chunk
from pipelines.embed import Embedder
from pipelines.index import DENSE, SPARSE, IndexHandle

Mode = Literal["dense", "bm25", "hybrid"]


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float


class Retriever:
    def __init__(self, index: IndexHandle, embedder: Embedder, mode: Mode) -> None:
        self.index = index
        self.embedder = embedder
        self.mode = mode

    def _sparse(self, question: str) -> models.SparseVector:
        ids = self.index.tokenizer.tokenize([question], update_vocab=False, return_as="ids", show_progress=False)[0]
        unique = sorted(set(ids))  # Qdrant needs unique indices; BM25 counts each query term once
        return models.SparseVector(indices=unique, values=[1.0] * len(unique))

    def _request(self, question: str, dense: list[float] | None, k: int) -> models.QueryRequest:
        if self.mode == "dense":
            return models.QueryRequest(query=dense, using=DENSE, limit=k)
        sparse = self._sparse(question)
        if self.mode == "bm25":
            return models.QueryRequest(query=sparse, using=SPARSE, limit=k)
        return models.QueryRequest(
            prefetch=[
                models.Prefetch(query=dense, using=DENSE, limit=k * 2),
                models.Prefetch(query=sparse, using=SPARSE, limit=k * 2),
            ],
            query=models.FusionQuery(fusion=models.Fusion.RRF),
            limit=k,
        )

    def retrieve(self, questions: Sequence[str], k: int) -> list[list[Hit]]:
        if not questions:
            return []
        dense = self.embedder.encode(questions).tolist() if self.mode != "bm25" else [None] * len(questions)
        requests = [self._request(q, d, k) for q, d in zip(questions, dense, strict=True)]
        responses = self.index.client.query_batch_points(self.index.collection, requests=requests)
        chunks = self.index.chunks
        return [[Hit(chunks[int(p.id)], float(p.score)) for p in r.points] for r in responses]
