"""Benchmark: index build, per-trial open and query latency from 10 k to 1 M chunks, per vector store.

Usage: .venv/bin/python benchmarks/corpus_scale.py [--sizes 10000 100000 1000000] [--local-max 100000]
       [--embed-chunks 3000] [--queries 64]

Corpus: documents made of the bundled sample's sentences recombined at random (seeded), chunked at 600
characters with no overlap, so chunk text, BM25 vocabulary and term statistics are realistic.

Two parts, each measured in this one run:

1. Embedding throughput (``--embed-chunks`` real chunks through all-MiniLM-L6-v2 on this CPU): the full
   ``build_index`` path with each sentence-transformers backend that is installed (torch; onnx and onnx int8
   when ``optimum[onnxruntime]`` is), chunks/s, and the largest |difference| of its vectors from torch's.
2. Scale (``--sizes``): embedding at 1 M chunks would take hours here, so these builds use **synthetic**
   embeddings (a seeded random projection of each chunk's hashed words, so chunks sharing words are near
   each other as with a real embedder) through the same ``build_index``; everything else is real: chunking,
   BM25 tokenising and weighting, chunk and vector files, the Qdrant Edge shard (HNSW), and the queries. The
   queries are the sample's real questions, embedded the same way for dense search. Every measured step runs
   in its own process, so "peak MB" is
   that step's own peak resident memory and "open" is what a new trial process pays. qdrant-client local
   mode (the old default) runs up to ``--local-max`` chunks; above that its load alone takes minutes. The
   reference is a plain numpy (dense) / scipy (BM25) exact scan over the same memory-mapped arrays;
   "recall@10" is the store's dense top 10 against that exact scan.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "data" / "xquad_en"
K = 10


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _private_mb() -> float:
    """Resident memory of this process alone (anonymous pages): memory-mapped files shared through the page
    cache are not in it."""
    for line in open("/proc/self/status", encoding="utf-8"):
        if line.startswith("RssAnon:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _sentences() -> list[str]:
    out: list[str] = []
    for line in (SAMPLE / "corpus.jsonl").read_text(encoding="utf-8").splitlines():
        text = json.loads(line)["text"]
        out += [s.strip() + "." for s in text.split(". ") if len(s.strip()) > 20]
    return out


def _corpus(n_chunks: int, seed: int = 0) -> dict[str, Any]:
    from ragsweep.pipelines.data import Document

    rng = random.Random(seed)
    sentences = _sentences()
    docs: dict[str, Document] = {}
    chars_needed = n_chunks * 560  # about one 600-char chunk per 560 characters (cuts at sentence ends)
    total = i = 0
    while total < chars_needed:
        text = " ".join(rng.choice(sentences) for _ in range(rng.randint(20, 60)))
        docs[f"d{i}"] = Document(id=f"d{i}", title="", text=text)
        total, i = total + len(text), i + 1
    return docs


def _questions() -> list[str]:
    return [json.loads(line)["question"] for line in (SAMPLE / "questions.jsonl").read_text().splitlines()]


class _Synthetic:
    """Embeddings at scale without a model: a seeded random projection of each text's hashed words (square-root
    term counts), normalised. Texts that share words are close, as with a real embedder, so nearest neighbours
    mean something and approximate search is measured on realistic structure, not on uniform noise."""

    buckets = 1 << 16

    def __init__(self, dim: int = 384, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.proj = rng.standard_normal((self.buckets, dim), dtype=np.float32)

    def __call__(self, texts: list[str]) -> np.ndarray:
        import zlib

        out = np.zeros((len(texts), self.proj.shape[1]), dtype=np.float32)
        for i, text in enumerate(texts):
            ids, counts = np.unique(
                [zlib.crc32(w.encode()) % self.buckets for w in text.lower().split()], return_counts=True
            )
            if len(ids):
                out[i] = np.sqrt(counts).astype(np.float32) @ self.proj[ids]
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1)


# ---------------------------------------------------------------- steps, each run in a child process


def step_build(folder: str, n: int, backend: str) -> dict[str, Any]:
    from ragsweep.pipelines.embedders.local import Embedder
    from ragsweep.pipelines.index import IndexSpec, build_index

    corpus = _corpus(n)
    spec = IndexSpec("bench", 600, 0, backend)
    top5: list[list[int]] = []
    emb: Embedder | None = None
    if backend == "synthetic":
        encode, dim = _Synthetic(), 384
    else:
        emb = Embedder(backend=backend, cache_dir=Path(folder).parent / "onnx")
        emb.load()  # model load and the one-off ONNX export are not build throughput
        encode, dim = emb.encode, emb.dim
        encode(["warm up"])
    base = _peak_mb()
    t0 = time.perf_counter()
    chunks = build_index(spec, corpus, encode, dim, Path(folder))
    seconds = time.perf_counter() - t0
    if emb is not None:  # what the backend changes in retrieval: top 5 chunks of real questions
        sims = emb.encode(_questions()[:300]) @ np.load(Path(folder) / "dense.npy").T
        top5 = np.argsort(-sims, axis=1)[:, :5].tolist()
    return {"seconds": seconds, "chunks": chunks, "peak_mb": _peak_mb(), "base_mb": base, "top5": top5}


def step_store(folder: str, store: str, n_queries: int) -> dict[str, Any]:
    from ragsweep.pipelines.index import open_index, read_index
    from ragsweep.pipelines.stores import DENSE, SPARSE, Leg, SparseVec, StoreQuery

    art = read_index(Path(folder))
    base, private = _peak_mb(), _private_mb()
    name, _, ef = store.partition(":")  # "edge:128" = Edge with HNSW searched at ef 128
    t0 = time.perf_counter()
    handle = open_index(art, store=name, hnsw_ef=int(ef) if ef else None)
    open_s = time.perf_counter() - t0
    words = (_questions() * (n_queries // 10 + 1))[:n_queries]
    dense_q = _Synthetic()(words)  # the sample's real questions, embedded as the synthetic corpus was
    sparse_q = []
    for w in words:
        ids = sorted(set(handle.tokenizer.tokenize([w], update_vocab=False, return_as="ids", show_progress=False)[0]))
        sparse_q.append(SparseVec(ids, [1.0] * len(ids)))
    modes = {
        "dense": [StoreQuery((Leg(DENSE, d.tolist(), K),), K) for d in dense_q],
        "bm25": [StoreQuery((Leg(SPARSE, s, K),), K) for s in sparse_q if s.indices],
        "hybrid": [
            StoreQuery((Leg(DENSE, d.tolist(), 2 * K), Leg(SPARSE, s, 2 * K)), K)
            for d, s in zip(dense_q, sparse_q, strict=True)
            if s.indices
        ],
    }
    out: dict[str, Any] = {"open_s": open_s}
    for mode, queries in modes.items():
        lat = []
        for q in queries:
            t = time.perf_counter()
            handle.store.query_batch([q])
            lat.append(time.perf_counter() - t)
        out[f"{mode}_ms"] = (1000 * float(np.percentile(lat, 50)), 1000 * float(np.percentile(lat, 95)))
        if mode == "dense":
            out["recall"] = _recall(handle.store.query_batch(queries), dense_q @ np.asarray(art.dense).T)
    out["peak_mb"], out["base_mb"], out["private_mb"] = _peak_mb(), base, _private_mb() - private
    return out


def _recall(hits: list[list[tuple[int, float]]], exact: np.ndarray) -> float:
    """Recall@10 that counts ties: a hit is right when its exact score reaches the exact 10th best (synthetic
    chunks recombine a few thousand sentences, so many chunks tie at 1 M)."""
    out = []
    for got, row in zip(hits, exact, strict=True):
        tenth = np.partition(row, -K)[-K]
        out.append(sum(row[cid] >= tenth - 1e-5 for cid, _ in got) / K)
    return float(np.mean(out))


def step_scan(folder: str, n_queries: int) -> dict[str, Any]:
    """numpy/scipy exact scans over the memory-mapped arrays: the reference."""
    import scipy.sparse as sp

    from ragsweep.pipelines.index import read_index

    art = read_index(Path(folder))
    base, private = _peak_mb(), _private_mb()
    t0 = time.perf_counter()
    dense = np.asarray(art.dense)
    n = len(art.chunks)
    csr = sp.csr_matrix(
        (np.asarray(art.sparse_data), np.asarray(art.sparse_indices), np.asarray(art.sparse_indptr)),
        shape=(n, int(np.asarray(art.sparse_indices).max()) + 1),
    )
    tok = art.tokenizer()
    open_s = time.perf_counter() - t0
    words = (_questions() * (n_queries // 10 + 1))[:n_queries]
    qs = _Synthetic()(words)
    out: dict[str, Any] = {"open_s": open_s}
    lat_d, lat_s, lat_h = [], [], []
    for q, w in zip(qs, words, strict=True):
        t = time.perf_counter()
        d = dense @ q
        top_d = np.argpartition(-d, 2 * K)[: 2 * K]
        lat_d.append(time.perf_counter() - t)
        t = time.perf_counter()
        ids = sorted(
            {
                i
                for i in tok.tokenize([w], update_vocab=False, return_as="ids", show_progress=False)[0]
                if i < csr.shape[1]
            }
        )
        qv = np.zeros(csr.shape[1], dtype=np.float32)
        qv[ids] = 1.0
        s = csr @ qv
        top_s = np.argpartition(-s, 2 * K)[: 2 * K]
        lat_s.append(time.perf_counter() - t)
        lat_h.append(lat_d[-1] + lat_s[-1] + 1e-5)  # the fusion of 2 x 20 candidates is negligible
        del top_d, top_s
    for mode, lat in (("dense", lat_d), ("bm25", lat_s), ("hybrid", lat_h)):
        out[f"{mode}_ms"] = (1000 * float(np.percentile(lat, 50)), 1000 * float(np.percentile(lat, 95)))
    out["recall"], out["peak_mb"], out["base_mb"], out["private_mb"] = 1.0, _peak_mb(), base, _private_mb() - private
    return out


def _child(*args: str) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, __file__, "--step", *args],
        capture_output=True,
        text=True,
        env={**__import__("os").environ, "RAGSWEEP_PROGRESS": "0"},
    )
    if proc.returncode != 0:
        raise SystemExit(f"step {args} failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    ap.add_argument("--local-max", type=int, default=150_000)
    ap.add_argument("--ef", type=int, default=128, help="hnsw_ef of the approximate Edge row")
    ap.add_argument("--embed-chunks", type=int, default=3000)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx", "onnx-int8"])
    ap.add_argument("--queries", type=int, default=64)
    ap.add_argument("--step", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.step:
        kind, *rest = args.step
        fn = {
            "build": lambda: step_build(rest[0], int(rest[1]), rest[2]),
            "store": lambda: step_store(rest[0], rest[1], int(rest[2])),
            "scan": lambda: step_scan(rest[0], int(rest[1])),
        }[kind]
        print(json.dumps(fn()))
        return
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="ragsweep-scale-") as tmp:
        print(
            f"## Embedding throughput: {args.embed_chunks:,} real chunks of <= 600 characters, build_index end to end\n"
        )
        print(
            "| backend | build s | chunks/s | vs torch | max abs diff vs torch | top-5 chunks shared with torch "
            "(300 questions) |"
        )
        print("|---|---|---|---|---|---|")
        torch_rate, torch_vecs, torch_top5 = None, None, None
        for backend in args.backends if args.embed_chunks else []:
            folder = Path(tmp) / f"embed-{backend}"
            try:
                r = _child("build", str(folder), str(args.embed_chunks), backend)
            except SystemExit as e:
                print(f"| {backend} | not available: {str(e).strip().splitlines()[-1][:80]} | | | | |")
                continue
            rate = r["chunks"] / r["seconds"]
            vecs = np.load(folder / "dense.npy")
            torch_rate = torch_rate or rate
            torch_vecs = vecs if torch_vecs is None else torch_vecs
            torch_top5 = r["top5"] if torch_top5 is None else torch_top5
            shared = np.mean([len(set(a) & set(b)) / 5 for a, b in zip(r["top5"], torch_top5, strict=True)])
            print(
                f"| {backend} | {r['seconds']:.1f} | {rate:,.0f} | {rate / torch_rate:.2f}x | "
                f"{float(np.abs(vecs - torch_vecs).max()):.2e} | {shared:.3f} |",
                flush=True,
            )
        print("\n## Scale (synthetic embeddings; see the docstring)\n")
        print(
            "| chunks | store | build s | build chunks/s | build peak MB | open s (new process) | trial private MB "
            "(RSS incl. shared maps) | dense p50/p95 ms | bm25 p50/p95 ms | hybrid p50/p95 ms | dense recall@10 |"
        )
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for n in args.sizes:
            folder = Path(tmp) / f"idx-{n}"
            b = _child("build", str(folder), str(n), "synthetic")
            n_chunks = b["chunks"]
            build_mb = b["peak_mb"] - b["base_mb"]
            rows: list[tuple[str, dict[str, Any], str]] = []
            writes: dict[str, float] = {}
            for store, label in (("edge", "edge, exact (default)"), (f"edge:{args.ef}", f"edge, hnsw_ef {args.ef}")):
                write = _child("store", str(folder), store, str(args.queries))["open_s"]  # the first open writes it
                rows.append(
                    (
                        label,
                        _child("store", str(folder), store, str(args.queries)),
                        f"{b['seconds']:.0f} + shard {write:.0f}",
                    )
                )
                writes[label] = write
            if n_chunks <= args.local_max:
                rows.append(
                    (
                        "qdrant-memory (old)",
                        _child("store", str(folder), "qdrant-memory", str(args.queries)),
                        f"{b['seconds']:.0f}",
                    )
                )
            rows.append(("numpy/scipy scan", _child("scan", str(folder), str(args.queries)), f"{b['seconds']:.0f}"))
            for name, r, build in rows:

                def ms(key: str, r: dict[str, Any] = r) -> str:
                    return f"{r[key][0]:.2f} / {r[key][1]:.2f}"

                total = b["seconds"] + writes.get(name, 0.0)
                print(
                    f"| {n_chunks:,} | {name} | {build} | {n_chunks / total:,.0f} | {build_mb:,.0f} | "
                    f"{r['open_s']:.2f} | {r['private_mb']:,.0f} ({r['peak_mb'] - r['base_mb']:,.0f}) | "
                    f"{ms('dense_ms')} | {ms('bm25_ms')} | {ms('hybrid_ms')} | {r['recall']:.3f} |",
                    flush=True,
                )
            disk = sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())
            print(
                f"|  | on disk: {disk / 2**20:,.0f} MB ({disk / n_chunks:,.0f} bytes/chunk); build peak "
                f"{build_mb * 2**20 / n_chunks:,.0f} bytes/chunk |||||||||",
                flush=True,
            )


if __name__ == "__main__":
    main()
