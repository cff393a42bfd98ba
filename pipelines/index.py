"""Chunk, embed and BM25-weight a corpus once per index key, streaming; then open it in any vector store.

Contract:
- :class:`IndexSpec` hashes (corpus digest, chunk_size, chunk_overlap, embedder, chunker) to a key (the default
  ``chars`` chunker is left out of the hash, so indexes built before chunkers existed keep their keys).
- :meth:`IndexCache.get_or_build` builds the artifacts for a key at most once per cache folder, even when
  several trial processes ask at the same time (a file lock per key; writes land atomically by rename).
  Every build appends a line to ``builds.jsonl``, so "distinct keys == embedding passes" can be checked.
- A build streams the corpus: chunk text is cut, embedded and tokenised a block at a time and written out, so
  no chunk text is held beyond its block; progress (rate, ETA) goes to the console (:mod:`.progress`).
- On disk an index is ``chunks.jsonl`` + offsets (read on demand), ``dense.npy`` (float32, normalised) and the
  BM25 weights as CSR arrays: all memory-mapped when read, so every process shares one copy.
- :func:`open_index` opens it in a vector store (:mod:`.stores`: Qdrant Edge by default, a Qdrant server when
  ``url`` is given) with a dense vector and a BM25 sparse vector per chunk.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import bm25s
import numpy as np
from filelock import FileLock

from ragsweep.pipelines.base.progress import Progress
from ragsweep.pipelines.chunk_file import ChunkFile, ChunkWriter
from ragsweep.pipelines.chunking import Chunk, chunk_document
from ragsweep.pipelines.data import Document
from ragsweep.pipelines.embedders.local import TextEmbedder
from ragsweep.pipelines.stores import VectorStore, open_store

_FORMAT = 1  # bump when the artifact layout changes meaning, so old cache entries are not reused
BLOCK = 2048  # chunks cut, embedded and tokenised together (sentence-transformers sorts each by length)
Encode = Callable[[list[str]], np.ndarray]
# Peak resident memory a build adds per chunk (chunk ranges, BM25 token ids and weights, one block of text and
# vectors; the vectors themselves go to a memory-mapped file), measured by benchmarks/corpus_scale.py at 100 k
# and 1 M chunks and rounded up. docs/architecture.md states it with the disk and per-trial figures.
BUILD_BYTES_PER_CHUNK = 6_000
BUILD_BASE_BYTES = 1 << 30  # the embedding model and the Python process around it


def build_memory_estimate(corpus_bytes: int, chunk_size: int, chunk_overlap: int) -> tuple[int, int]:
    """(chunks, peak bytes) of one build, upper estimates from the corpus file's size: each chunk is taken to
    advance by ``chunk_size - chunk_overlap`` characters, and by at least half a chunk."""
    step = max(chunk_size - chunk_overlap, chunk_size // 2, 1)
    chunks = corpus_bytes // step + 1
    return chunks, BUILD_BASE_BYTES + chunks * BUILD_BYTES_PER_CHUNK


def machine_memory_bytes() -> int:
    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


@dataclass(frozen=True)
class IndexSpec:
    corpus_digest: str
    chunk_size: int
    chunk_overlap: int
    embedder: str
    chunker: str = "chars"

    @property
    def key(self) -> str:
        fields = {k: v for k, v in asdict(self).items() if not (k == "chunker" and v == "chars")}
        blob = json.dumps({**fields, "format": _FORMAT}, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass(kw_only=True)
class IndexArtifacts:
    """What a build leaves on disk for one key, opened memory-mapped (nothing is read until used)."""

    key: str
    folder: Path
    chunks: Sequence[Chunk]  # a ChunkFile: chunk i parsed when asked for
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

    def get_or_build(
        self, spec: IndexSpec, corpus: dict[str, Document], embedder: TextEmbedder, encode: Encode | None = None
    ) -> IndexArtifacts:
        """The index for ``spec``, built first when missing; ``encode`` replaces ``embedder.encode`` (e.g. the
        Ray Data embedder of :mod:`.embed_ray`) and must give the same vectors."""
        folder = self.root / spec.key
        with FileLock(str(self.root / f"{spec.key}.lock")):
            built, seconds = False, 0.0
            if not (folder / "meta.json").exists():
                t0 = time.perf_counter()
                n = build_index(spec, corpus, encode or embedder.encode, embedder.dim, folder)
                built, seconds = True, time.perf_counter() - t0
                with open(self.root / "builds.jsonl", "a", encoding="utf-8") as f:
                    f.write(
                        json.dumps(
                            {
                                "key": spec.key,
                                **asdict(spec),
                                "seconds": round(seconds, 3),
                                "chunks": n,
                                "pid": os.getpid(),
                                "time": time.time(),
                            }
                        )
                        + "\n"
                    )
        return _read(folder, spec.key, built, seconds)


def build_index(spec: IndexSpec, corpus: dict[str, Document], encode: Encode, dim: int, folder: Path) -> int:
    """Write the index for ``spec`` to ``folder`` (atomically: a temp sibling renamed); returns its chunk count."""
    # Only (doc, start, end) triples are held for the whole corpus; text is sliced a block at a time.
    ranges = [
        (doc, s, e)
        for doc in corpus.values()
        for s, e in chunk_document(doc, spec.chunk_size, spec.chunk_overlap, spec.chunker, spec.embedder)
    ]
    n = len(ranges)
    tmp = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{spec.key}-"))
    try:
        dense = np.lib.format.open_memmap(tmp / "dense.npy", mode="w+", dtype=np.float32, shape=(n, dim))
        tok = bm25s.tokenization.Tokenizer(stopwords="en")
        token_ids: list[list[int]] = []
        writer = ChunkWriter(tmp)
        step = int(getattr(encode, "block", BLOCK))
        with Progress(f"index {spec.key} (chunk_size {spec.chunk_size})", n, "chunks") as bar:
            for lo in range(0, n, step):
                block = [
                    Chunk(i, doc.id, s, e, doc.text[s:e]) for i, (doc, s, e) in enumerate(ranges[lo : lo + step], lo)
                ]
                texts = [c.text for c in block]
                dense[lo : lo + len(block)] = encode(texts)
                token_ids.extend(tok.tokenize(texts, update_vocab=True, return_as="ids", show_progress=False))
                writer.write(block)
                bar.update(len(block))
        writer.close()
        dense.flush()
        del dense
        bm = bm25s.BM25()  # Lucene BM25: IDF is already in each weight
        bm.index(bm25s.tokenization.Tokenized(ids=token_ids, vocab=tok.get_vocab_dict()), show_progress=False)
        # bm25s keeps a token-major (CSC) matrix; a vector store wants a sparse vector per chunk (CSR).
        n_tokens = len(bm.scores["indptr"]) - 1
        csr = _csc_to_csr(bm.scores["data"], bm.scores["indices"], bm.scores["indptr"], n, n_tokens)
        for name, arr in zip(("indptr", "indices", "data"), csr, strict=True):
            np.save(tmp / f"sparse_{name}.npy", arr)
        tok.save_vocab(str(tmp))
        meta = {**asdict(spec), "key": spec.key, "n_chunks": n, "dim": dim}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2))
        if folder.exists():  # a half-written folder from a crashed build
            shutil.rmtree(folder)
        tmp.rename(folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return n


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
    if (folder / "sparse.npz").exists():  # written before the CSR arrays were separate (not memory-mappable)
        npz = np.load(folder / "sparse.npz")
        sparse = {name: npz[name] for name in ("indptr", "indices", "data")}
    else:
        sparse = {name: np.load(folder / f"sparse_{name}.npy", mmap_mode="r") for name in ("indptr", "indices", "data")}
    return IndexArtifacts(
        key=key,
        folder=folder,
        chunks=ChunkFile(folder),
        dense=np.load(folder / "dense.npy", mmap_mode="r"),
        sparse_indptr=sparse["indptr"],
        sparse_indices=sparse["indices"],
        sparse_data=sparse["data"],
        built=built,
        build_seconds=seconds,
    )


@dataclass
class IndexHandle:
    """One index opened in a vector store, plus what queries need to interpret it."""

    store: VectorStore
    chunks: Sequence[Chunk]
    tokenizer: bm25s.tokenization.Tokenizer
    key: str


def open_index(
    art: IndexArtifacts, url: str | None = None, store: str = "edge", hnsw_ef: int | None = None
) -> IndexHandle:
    """Open ``art`` in the named vector store (:data:`.stores.STORES`), or in the Qdrant server at ``url``;
    ``hnsw_ef`` makes Edge's dense search approximate (HNSW), else it is exact."""
    return IndexHandle(open_store(art, store, url, hnsw_ef), art.chunks, art.tokenizer(), art.key)
