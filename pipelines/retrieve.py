"""Dense, BM25 and hybrid (weighted reciprocal rank fusion) retrieval, as store-neutral queries.

Contract: :meth:`Retriever.retrieve` takes a batch of questions and returns, per question, up to ``k``
:class:`Hit` objects, best first. Hybrid fuses a dense and a BM25 candidate list by weighted reciprocal rank
(:class:`Fusion`: the dense share ``hybrid_weight`` and RRF's ``rrf_k``). A question may come with several search
texts (a query transformation's paraphrases or hypothetical answer): each text sends the retriever's legs and
all of them are fused the same way. A text with no BM25 terms (only stop words) sends no sparse leg: BM25
returns nothing for it, hybrid its dense list.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragsweep.pipelines.base.registry import Registry
from ragsweep.pipelines.chunking import Chunk
from ragsweep.pipelines.embedders.local import TextEmbedder
from ragsweep.pipelines.index import IndexHandle
from ragsweep.pipelines.stores import DENSE, RRF_K, SPARSE, Leg, SparseVec, StoreQuery

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


@RETRIEVERS.register("hybrid", "dense and BM25 candidates (2k each) fused by reciprocal rank", dense=True, sparse=True)
def _hybrid(dense: Dense, sparse: Sparse, k: int) -> list[Leg]:
    return _legs(
        Leg(DENSE, dense, 2 * k) if dense is not None else None,
        Leg(SPARSE, sparse, 2 * k) if sparse is not None else None,
    )


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float


@dataclass(frozen=True)
class Fusion:
    """How several legs are fused: ``hybrid_weight`` is the dense legs' share (BM25 gets the rest; 0.5 weighs
    them equally, as plain RRF does) and ``rrf_k`` RRF's ranking constant (small: the top ranks dominate)."""

    hybrid_weight: float = 0.5
    rrf_k: float = RRF_K

    def weight(self, leg: Leg) -> float:
        # x2 so that 0.5 gives weights 1 and 1: the same scores as unweighted RRF
        return 2 * (self.hybrid_weight if leg.using == DENSE else 1 - self.hybrid_weight)


class Retriever:
    def __init__(self, index: IndexHandle, embedder: TextEmbedder, mode: str, fusion: Fusion | None = None) -> None:
        RETRIEVERS.entry(mode)  # an unknown mode fails here, naming the known ones
        self.index = index
        self.embedder = embedder
        self.mode = mode
        self.fusion = fusion or Fusion()

    def _sparse(self, question: str) -> SparseVec:
        ids = self.index.tokenizer.tokenize([question], update_vocab=False, return_as="ids", show_progress=False)[0]
        unique = sorted(set(ids))  # unique indices; BM25 counts each query term once
        return SparseVec(unique, [1.0] * len(unique))

    def retrieve(
        self, questions: Sequence[str], k: int, search_texts: Sequence[Sequence[str]] | None = None
    ) -> list[list[Hit]]:
        """``search_texts[i]``: what to search with for question i (default: the question itself)."""
        if not questions:
            return []
        texts = [list(t) for t in search_texts] if search_texts is not None else [[q] for q in questions]
        flat = [t for ts in texts for t in ts]
        entry = RETRIEVERS.entry(self.mode)
        build = RETRIEVERS.get(self.mode)
        dense = self.embedder.encode_queries(flat).tolist() if entry.info["dense"] else [None] * len(flat)
        sparse = [self._sparse(t) if entry.info["sparse"] else None for t in flat]
        per_text = iter([build(d, s, k) for d, s in zip(dense, sparse, strict=True)])
        legs = [[leg for _ in ts for leg in next(per_text)] for ts in texts]
        asked = [i for i, ls in enumerate(legs) if ls]  # a question with no leg has no hits
        fuse = self.fusion
        answers = self.index.store.query_batch(
            [
                StoreQuery(
                    tuple(Leg(leg.using, leg.vector, leg.limit, fuse.weight(leg)) for leg in legs[i]), k, fuse.rrf_k
                )
                for i in asked
            ]
        )
        out: list[list[Hit]] = [[] for _ in questions]
        chunks = self.index.chunks
        for i, hits in zip(asked, answers, strict=True):
            out[i] = [Hit(chunks[cid], score) for cid, score in hits]
        return out
