"""Span-based retrieval metrics (recall@k, precision@k, MRR, nDCG@k), invariant to how the corpus was chunked.

A retrieved chunk is gold for a question when its character range overlaps one of the question's answer
spans. A question without spans falls back to documents: a chunk is gold when it comes from a gold document.
Questions with neither (unanswerable) score NaN, which aggregates skip.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from ragsweep.pipelines.data import Question


@dataclass(frozen=True)
class ChunkRef:
    doc_id: str
    start: int
    end: int


def _targets(q: Question) -> list[tuple[str, int, int]]:
    if q.answer_spans:
        return sorted({(s.doc_id, s.start, s.end) for s in q.answer_spans})
    return [(d, 0, 2**62) for d in dict.fromkeys(q.gold_doc_ids)]


def _hits(chunk: ChunkRef, target: tuple[str, int, int]) -> bool:
    doc_id, start, end = target
    return chunk.doc_id == doc_id and chunk.start < end and start < chunk.end


def is_gold(chunk: ChunkRef, q: Question) -> bool:
    return any(_hits(chunk, t) for t in _targets(q))


def recall_at_k(retrieved: Sequence[ChunkRef], q: Question) -> float:
    """Fraction of the question's gold spans (or gold documents) overlapped by any retrieved chunk."""
    targets = _targets(q)
    if not targets:
        return math.nan
    return sum(any(_hits(c, t) for c in retrieved) for t in targets) / len(targets)


def mrr(retrieved: Sequence[ChunkRef], q: Question) -> float:
    """1 / rank of the first gold chunk (0 when none is retrieved)."""
    if not _targets(q):
        return math.nan
    for rank, c in enumerate(retrieved, start=1):
        if is_gold(c, q):
            return 1.0 / rank
    return 0.0


def precision_at_k(retrieved: Sequence[ChunkRef], q: Question) -> float:
    """Fraction of the retrieved chunks that are gold (overlap a gold span or come from a gold document)."""
    if not _targets(q):
        return math.nan
    if not retrieved:
        return 0.0
    return sum(is_gold(c, q) for c in retrieved) / len(retrieved)


def ndcg_at_k(retrieved: Sequence[ChunkRef], q: Question) -> float:
    """Binary nDCG over the retrieved ranking: a chunk gains 1 when it covers a gold target no higher-ranked
    chunk covered (so near-duplicate chunks of one span earn once); the ideal ranking puts
    ``min(k, n_targets)`` such chunks first."""
    targets = _targets(q)
    if not targets:
        return math.nan
    covered: set[tuple[str, int, int]] = set()
    dcg = 0.0
    for rank, c in enumerate(retrieved, start=1):
        new = {t for t in targets if t not in covered and _hits(c, t)}
        if new:
            covered |= new
            dcg += 1.0 / math.log2(rank + 1)
    ideal = sum(1.0 / math.log2(r + 1) for r in range(1, min(len(retrieved), len(targets)) + 1))
    return dcg / ideal if ideal else 0.0
