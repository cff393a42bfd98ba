"""Query vectors kept per embedder, in memory and in a file beside the index cache.

Why: importing sentence-transformers and loading its model is the largest start-up cost of a process that
retrieves densely (about 10 CPU-seconds on a small machine, paid again by every trial and held-out process).
A search embeds its questions once, in the retrieval screen; a process whose questions are all in the file
never loads the model. The vectors are those the model gives, so a read one equals a computed one (up to float
rounding between batch sizes).

Contract:
- :class:`StoredQueries` wraps an embedder: ``encode_queries`` returns stored vectors and embeds only the texts
  it has not seen (loading the inner model then); ``encode`` (passages) and ``load`` go to the inner embedder.
- It reads its file once, when made; :meth:`StoredQueries.save` merges what this process added into the file
  under a file lock and replaces it atomically, so concurrent savers never leave a torn file (at worst one's
  additions are embedded again later). Only the process that embeds a search's questions saves.
- The file is keyed by the embedder as an index key sees it (:func:`.http.index_embedder_key`): a different
  model, backend or endpoint never reads another's vectors. A damaged file is ignored (and rewritten on save).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from filelock import FileLock

from ragsweep.pipelines.embedders.http import AnyEmbedder, index_embedder_key


def query_vectors_file(cache_root: Path, embedder: AnyEmbedder) -> Path:
    """Where ``embedder``'s query vectors are kept under an index cache folder."""
    digest = hashlib.sha256(index_embedder_key(embedder).encode()).hexdigest()[:16]
    return Path(cache_root) / "queries" / f"{digest}.npz"


def stored_queries(embedder: Any, cache_root: Path) -> StoredQueries:
    """``embedder`` itself when it is already a :class:`StoredQueries`, else it wrapped over its file."""
    return (
        embedder
        if isinstance(embedder, StoredQueries)
        else StoredQueries(embedder, query_vectors_file(cache_root, embedder))
    )


def _read(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            texts, vectors = f["texts"], f["vectors"]
    except (OSError, ValueError, KeyError):  # missing, or damaged (e.g. a disk filled mid-write): embed again
        return {}
    if vectors.ndim != 2 or len(texts) != len(vectors):
        return {}
    return {str(t): v for t, v in zip(texts.tolist(), vectors, strict=True)}


class StoredQueries:
    """``inner`` with its query vectors memoised and backed by ``path`` (see the module's contract)."""

    def __init__(self, inner: Any, path: Path) -> None:
        self.inner = inner
        self.spec: str = inner.spec
        self.path = Path(path)
        self._memo = _read(self.path)
        self._added: set[str] = set()

    @property
    def stored(self) -> int:
        """How many query vectors were read from the file or computed here."""
        return len(self._memo)

    @property
    def dim(self) -> int:
        if self._memo:
            return int(next(iter(self._memo.values())).shape[0])
        return int(self.inner.dim)

    def load(self) -> None:
        self.inner.load()

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        return np.asarray(self.inner.encode(texts), dtype=np.float32)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        missing = list(dict.fromkeys(t for t in texts if t not in self._memo))
        if missing:
            for t, v in zip(missing, self.inner.encode_queries(missing), strict=True):
                self._memo[t] = np.asarray(v, dtype=np.float32)
            self._added.update(missing)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.stack([self._memo[t] for t in texts])

    def save(self) -> None:
        """Merge the vectors this process computed into the file (nothing to do when it computed none)."""
        if not self._added:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.path.with_suffix(".lock"))):
            merged = {**_read(self.path), **{t: self._memo[t] for t in self._added}}
            texts = list(merged)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, suffix=".npz.tmp")
            try:
                with os.fdopen(fd, "wb") as f:
                    np.savez(f, texts=np.array(texts, dtype=str), vectors=np.stack([merged[t] for t in texts]))
                os.replace(tmp, self.path)
            except BaseException:
                Path(tmp).unlink(missing_ok=True)
                raise
        self._added.clear()
