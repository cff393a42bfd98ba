"""Chunk + embed + BM25-weight a corpus once per index key, then serve it from Qdrant.

Contract:
- :class:`IndexSpec` hashes (corpus digest, chunk_size, chunk_overlap, embedder) to a key.
- :meth:`IndexCache.get_or_build` builds the artifacts for a key at most once per cache folder, even when
  several trial processes ask at the same time (a file lock per key; writes land atomically by rename).
  Every build appends a line to ``builds.jsonl``, so "distinct keys == embedding passes" can be checked.
- :func:`open_index` loads the artifacts into a Qdrant collection (in-process, or a server when ``url`` is
  given) with a dense vector and a BM25 sparse vector per chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
from filelock import FileLock
from qdrant_client import QdrantClient, models

from ragsweep.pipelines.chunking import Chunk, chunk_corpus
from ragsweep.pipelines.data import Document
from ragsweep.pipelines.embed import Embedder

DENSE, SPARSE = "dense", "bm25"
_FORMAT = 1  # bump when the artifact layout changes, so old cache entries are not reused


@dataclass(frozen=True)
class IndexSpec:
    corpus_digest: str
    chunk_size: int
    chunk_overlap: int
    embedder: str

    @property
    def key(self) -> str:
        blob = json.dumps({**asdict(self), "format": _FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class IndexArtifacts:
    """What a build leaves on disk for one key (loaded into memory)."""

    key: str
    folder: Path
    chunks: list[Chunk]
    dense: np.ndarray  # (n_chunks, dim) float32, normalised
    sparse_indptr: np.ndarray  # CSR over chunks: BM25 weight of each token in each chunk
    sparse_indices: np.ndarray
    sparse_data: np.ndarray
    built: bool  # True when this call did the build (a cache miss)
    build_seconds: float

    def tokenizer(self) -> bm25s.tokenization.Tokenizer:
        tok = bm25s.tokenization.Tokenizer(stopwords="en")
        tok.load_vocab(str(self.folder))
        return tok


class IndexCache:
    """A folder of built indexes, one subfolder per :attr:`IndexSpec.key`."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)

    def get_or_build(self, spec: IndexSpec, corpus: dict[str, Document], embedder: Embedder) -> IndexArtifacts:
        folder = self.root / spec.key
        with FileLock(str(self.root / f"{spec.key}.lock")):
            built, seconds = False, 0.0
            if not (folder / "meta.json").exists():
                t0 = time.perf_counter()
                self._build(spec, corpus, embedder, folder)
                built, seconds = True, time.perf_counter() - t0
                with open(self.root / "builds.jsonl", "a", encoding="utf-8") as f:
                    f.write(json.dumps({"key": spec.key, **asdict(spec), "seconds": round(seconds, 3),
                                        "pid": os.getpid(), "time": time.time()}) + "\n")
        return _read(folder, spec.key, built, seconds)

    def _build(self, spec: IndexSpec, corpus: dict[str, Document], embedder: Embedder, folder: Path) -> None:
        chunks = chunk_corpus(corpus.values(), spec.chunk_size, spec.chunk_overlap)
        texts = [c.text for c in chunks]
        dense = embedder.encode(texts)
        tok = bm25s.tokenization.Tokenizer(stopwords="en")
        tokenized = tok.tokenize(texts, return_as="tuple", show_progress=False)
        bm = bm25s.BM25()  # Lucene BM25: IDF is already in each weight
        bm.index(tokenized, show_progress=False)
        # bm25s keeps a token-major (CSC) matrix; Qdrant wants a sparse vector per chunk (CSR).
        n_tokens = len(bm.scores["indptr"]) - 1
        csr = _csc_to_csr(bm.scores["data"], bm.scores["indices"], bm.scores["indptr"], len(chunks), n_tokens)
        tmp = Path(tempfile.mkdtemp(dir=self.root, prefix=f".{spec.key}-"))
        try:
            with open(tmp / "chunks.jsonl", "w", encoding="utf-8") as f:
                for c in chunks:
                    f.write(json.dumps(asdict(c)) + "\n")
            np.save(tmp / "dense.npy", dense)
            np.savez(tmp / "sparse.npz", indptr=csr[0], indices=csr[1], data=csr[2])
            tok.save_vocab(str(tmp))
            meta = {**asdict(spec), "key": spec.key, "n_chunks": len(chunks), "dim": int(dense.shape[1])}
            (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
            if folder.exists():  # a half-written folder from a crashed build
                shutil.rmtree(folder)
            tmp.rename(folder)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


def _csc_to_csr(
    data: np.ndarray, indices: np.ndarray, indptr: np.ndarray, n_rows: int, n_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    cols = np.repeat(np.arange(n_cols), np.diff(indptr))
    order = np.lexsort((cols, indices))
    rows = indices[order]
    counts = np.bincount(rows, minlength=n_rows)
    return np.concatenate([[0], np.cumsum(counts)]), cols[order], np.asarray(data)[order].astype(np.float32)


def read_index(folder: Path) -> IndexArtifacts:
    """A built index folder read as it is (e.g. the copy a champion model carries); never builds."""
    if not (folder / "meta.json").exists():
        raise FileNotFoundError(f"{folder}: not a built index (no meta.json)")
    key = json.loads((folder / "meta.json").read_text(encoding="utf-8")).get("key", folder.name)
    return _read(folder, key, False, 0.0)


def _read(folder: Path, key: str, built: bool, seconds: float) -> IndexArtifacts:
    with open(folder / "chunks.jsonl", encoding="utf-8") as f:
        chunks = [Chunk(**json.loads(line)) for line in f]
    sparse = np.load(folder / "sparse.npz")
    return IndexArtifacts(
        key=key, folder=folder, chunks=chunks, dense=np.load(folder / "dense.npy"),
        sparse_indptr=sparse["indptr"], sparse_indices=sparse["indices"], sparse_data=sparse["data"],
        built=built, build_seconds=seconds,
    )


@dataclass
class IndexHandle:
    """A Qdrant collection holding one index, plus what queries need to interpret it."""

    client: QdrantClient
    collection: str
    chunks: list[Chunk]
    tokenizer: bm25s.tokenization.Tokenizer
    key: str


def open_index(art: IndexArtifacts, url: str | None = None, batch_size: int = 256) -> IndexHandle:
    """Load artifacts into Qdrant: in-process memory (default) or the server at ``url``.

    On a server the collection is named by the key and reused when it already holds every chunk.
    """
    client = QdrantClient(url=url) if url else QdrantClient(":memory:")
    name = f"ragsweep-{art.key}"
    exists = client.collection_exists(name)
    if exists and client.count(name).count == len(art.chunks):
        return IndexHandle(client, name, art.chunks, art.tokenizer(), art.key)
    if not exists:
        client.create_collection(
            name,
            vectors_config={DENSE: models.VectorParams(size=int(art.dense.shape[1]), distance=models.Distance.COSINE)},
            sparse_vectors_config={SPARSE: models.SparseVectorParams()},
        )
    for lo in range(0, len(art.chunks), batch_size):
        points = []
        for c in art.chunks[lo : lo + batch_size]:
            a, b = art.sparse_indptr[c.id], art.sparse_indptr[c.id + 1]
            vector: dict[str, object] = {DENSE: art.dense[c.id].tolist()}
            if b > a:  # a chunk of stop words only has no BM25 terms
                vector[SPARSE] = models.SparseVector(
                    indices=art.sparse_indices[a:b].tolist(), values=art.sparse_data[a:b].tolist()
                )
            points.append(models.PointStruct(id=c.id, vector=vector, payload={"doc_id": c.doc_id}))
        client.upsert(name, points=points, wait=True)
    return IndexHandle(client, name, art.chunks, art.tokenizer(), art.key)
