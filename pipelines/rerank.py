"""Cross-encoder reranking from a local sentence-transformers model folder (never downloaded)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ragsweep.pipelines.base.registry import Registry
from ragsweep.pipelines.embedders.local import load_local_model
from ragsweep.pipelines.retrieve import Hit


class CrossEncoderReranker:
    """Scores (question, chunk) pairs and keeps the ``k`` best, best first."""

    def __init__(self, model_path: Path) -> None:
        if not Path(model_path).is_dir():
            raise ValueError(f"reranker model folder not found: {model_path}")
        self.model_path = Path(model_path)

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        model = load_local_model("CrossEncoder", str(self.model_path))
        scores = model.predict([(question, h.chunk.text) for h in hits], batch_size=32)
        ranked = sorted(zip(hits, scores, strict=True), key=lambda hs: float(hs[1]), reverse=True)
        return [Hit(h.chunk, float(s)) for h, s in ranked[:k]]


# A reranker's target is its class, built from pipeline.reranker_model (None: keep the retriever's order).
RERANKERS: Registry[type[CrossEncoderReranker] | None] = Registry("reranker")
RERANKERS.add("none", "keep the retriever's top_k as they are", None, needs_model=False)
RERANKERS.add(
    "cross_encoder",
    "retrieve rerank_candidates chunks, keep the top_k a local cross-encoder scores best (pipeline.reranker_model)",
    CrossEncoderReranker,
    needs_model=True,
)
