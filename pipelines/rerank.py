"""Cross-encoder reranking from a local sentence-transformers model folder (never downloaded)."""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path

from pipelines.retrieve import Hit


@functools.lru_cache(maxsize=2)
def _load(path: str):  # type: ignore[no-untyped-def]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from sentence_transformers import CrossEncoder
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per trial is noise in the search output

    return CrossEncoder(path, device="cpu", local_files_only=True)


class CrossEncoderReranker:
    """Scores (question, chunk) pairs and keeps the ``k`` best, best first."""

    def __init__(self, model_path: Path) -> None:
        if not Path(model_path).is_dir():
            raise ValueError(f"reranker model folder not found: {model_path}")
        self.model_path = Path(model_path)

    def rerank(self, question: str, hits: Sequence[Hit], k: int) -> list[Hit]:
        if not hits:
            return []
        scores = _load(str(self.model_path)).predict([(question, h.chunk.text) for h in hits], batch_size=32)
        ranked = sorted(zip(hits, scores, strict=True), key=lambda hs: float(hs[1]), reverse=True)
        return [Hit(h.chunk, float(s)) for h, s in ranked[:k]]
