"""Dense, BM25 and hybrid (reciprocal rank fusion) retrieval, as store-neutral queries.

Contract: :meth:`Retriever.retrieve` takes a batch of questions and returns, per question, up to ``k``
:class:`Hit` objects, best first. Hybrid fuses a dense and a BM25 candidate list by reciprocal rank. A question
with no BM25 terms (only stop words) sends no sparse leg: BM25 returns nothing, hybrid the dense list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragsweep.pipelines.chunking import Chunk
from ragsweep.pipelines.embed import Embedder
from ragsweep.pipelines.index import IndexHandle
from ragsweep.pipelines.registry import Registry
from ragsweep.pipelines.stores import DENSE, SPARSE, Leg, SparseVec, StoreQuery

Dense = list[float] | None
Sparse = SparseVec | None
# A retriever's target gives the legs of one question's query from its dense and sparse vectors and k.
RETRIEVERS: Registry[Callable[[Dense, Sparse, int], list[Leg]]] = Registry("retriever")


def _legs(*legs: Leg | None) -> list[Leg]:
    return [leg for leg in legs if leg is not None and (not isinstance(leg.vector, SparseVec) or leg.vector.indices)]


@RETRIEVERS.register("dense", "nearest chunks by embedding (cosine)", dense=True, sparse=False)
def _dense(dense: Dense, sparse: Sparse, k: int) -> list[Leg]:
    return _legs(Leg(DENSE, dense, k) if dense is not None else None)


@RETRIEVERS.register("bm25", "BM25 over the chunks' terms (sparse vectors)", dense=False, sparse=True)
def _bm25(dense: Dense, sparse: Sparse, k: int) -> list[Leg]:
    return _legs(Leg(SPARSE, sparse, k) if sparse is not None else None)


@RETRIEVERS.register("hybrid", "dense and BM25 candidates (2k each) fused by reciprocal rank", dense=True,
                     sparse=True)
def _hybrid(dense: Dense, sparse: Sparse, k: int) -> list[Leg]:
    return _legs(Leg(DENSE, dense, 2 * k) if dense is not None else None,
                 Leg(SPARSE, sparse, 2 * k) if sparse is not None else None)


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

    def _sparse(self, question: str) -> SparseVec:
        ids = self.index.tokenizer.tokenize([question], update_vocab=False, return_as="ids", show_progress=False)[0]
        unique = sorted(set(ids))  # unique indices; BM25 counts each query term once
        return SparseVec(unique, [1.0] * len(unique))

    def retrieve(self, questions: Sequence[str], k: int) -> list[list[Hit]]:
        if not questions:
            return []
        entry = RETRIEVERS.entry(self.mode)
        build = RETRIEVERS.get(self.mode)
        dense = self.embedder.encode(questions).tolist() if entry.info["dense"] else [None] * len(questions)
        sparse = [self._sparse(q) if entry.info["sparse"] else None for q in questions]
        legs = [build(d, s, k) for d, s in zip(dense, sparse, strict=True)]
        asked = [i for i, ls in enumerate(legs) if ls]  # a question with no leg has no hits
        answers = self.index.store.query_batch([StoreQuery(tuple(legs[i]), k) for i in asked])
        out: list[list[Hit]] = [[] for _ in questions]
        chunks = self.index.chunks
        for i, hits in zip(asked, answers, strict=True):
            out[i] = [Hit(chunks[cid], score) for cid, score in hits]
        return out
