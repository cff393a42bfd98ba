"""The vector-store contract (pipelines.index.open_index + pipelines.retrieve.Retriever) on every backend we have.

Exact search must return what a brute-force scan of the same artifacts returns: the top-k chunks by cosine
similarity (dense) and by BM25 weight (sparse), best first. Every registered store (Qdrant Edge, qdrant-client
local mode) runs everywhere; a Qdrant server joins when ``RAGSWEEP_QDRANT_URL`` names one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.embedders.local import Embedder
from ragsweep.pipelines.index import IndexArtifacts, IndexCache, IndexSpec, open_index
from ragsweep.pipelines.retrieve import RETRIEVERS, Retriever
from ragsweep.pipelines.stores import STORES

pytestmark = pytest.mark.integration
BACKENDS = [
    *STORES.names(),
    pytest.param(
        "qdrant-server",
        marks=pytest.mark.skipif(
            not os.environ.get("RAGSWEEP_QDRANT_URL"), reason="set RAGSWEEP_QDRANT_URL to a Qdrant server"
        ),
    ),
]
QUESTIONS = [
    "Who won Super Bowl 50?",
    "Where was the game played?",
    "What did the halftime show include?",
    "the of and",
]  # the last one: stop words only, no BM25 terms


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, xquad_slice: tuple[Path, Path]) -> tuple[IndexArtifacts, Embedder]:
    ds = load_dataset(*xquad_slice)
    embedder = Embedder()
    art = IndexCache(tmp_path_factory.mktemp("idx")).get_or_build(
        IndexSpec(ds.corpus_digest, 300, 0, "default"), ds.corpus, embedder
    )
    return art, embedder


@pytest.fixture(params=BACKENDS)
def handle(request: pytest.FixtureRequest, built: tuple[IndexArtifacts, Embedder]):  # type: ignore[no-untyped-def]
    art, _ = built
    if request.param == "qdrant-server":
        return open_index(art, url=os.environ["RAGSWEEP_QDRANT_URL"])
    return open_index(art, store=request.param)


def _sparse_scores(art: IndexArtifacts, retriever: Retriever, question: str) -> np.ndarray:
    terms = set(retriever._sparse(question).indices)
    scores = np.zeros(len(art.chunks))
    for c in art.chunks:
        a, b = art.sparse_indptr[c.id], art.sparse_indptr[c.id + 1]
        scores[c.id] = sum(v for t, v in zip(art.sparse_indices[a:b], art.sparse_data[a:b], strict=True) if t in terms)
    return scores


def _top(scores: np.ndarray, k: int) -> list[int]:
    order = np.argsort(-scores, kind="stable")
    return [int(i) for i in order[:k] if scores[i] > 0]


@pytest.mark.parametrize("k", [1, 3, 10_000])
def test_dense_is_exact_top_k_by_cosine(handle, built, k: int) -> None:  # type: ignore[no-untyped-def]
    art, embedder = built
    hits = Retriever(handle, embedder, "dense").retrieve(QUESTIONS[:3], k)
    sims = embedder.encode(QUESTIONS[:3]) @ art.dense.T
    for q, hs in enumerate(hits):
        assert len(hs) == min(k, len(art.chunks))
        expected = np.argsort(-sims[q], kind="stable")[: len(hs)]
        assert np.allclose([h.score for h in hs], sims[q][expected], atol=1e-4)  # same scores, best first
        assert all(h.chunk == art.chunks[h.chunk.id] for h in hs)


def test_bm25_is_exact_top_k_by_weight(handle, built) -> None:  # type: ignore[no-untyped-def]
    art, embedder = built
    retriever = Retriever(handle, embedder, "bm25")
    for question, hs in zip(QUESTIONS, retriever.retrieve(QUESTIONS, 5), strict=True):
        scores = _sparse_scores(art, retriever, question)
        assert [h.chunk.id for h in hs] == _top(scores, 5) or np.allclose(
            [h.score for h in hs], sorted(scores[_top(scores, 5)], reverse=True), atol=1e-4
        )  # ties may swap
    assert retriever.retrieve(QUESTIONS[3:], 5) == [[]]  # no terms, no hits


def test_hybrid_fuses_the_two_candidate_lists(handle, built) -> None:  # type: ignore[no-untyped-def]
    art, embedder = built
    k = 3
    hybrid = Retriever(handle, embedder, "hybrid").retrieve(QUESTIONS[:3], k)
    dense = Retriever(handle, embedder, "dense").retrieve(QUESTIONS[:3], 2 * k)
    bm25 = Retriever(handle, embedder, "bm25").retrieve(QUESTIONS[:3], 2 * k)
    for h, d, b in zip(hybrid, dense, bm25, strict=True):
        assert 0 < len(h) <= k and {x.chunk.id for x in h} <= {x.chunk.id for x in d + b}
        assert [x.score for x in h] == sorted((x.score for x in h), reverse=True)


def test_every_registered_retriever_answers_a_batch(handle, built) -> None:  # type: ignore[no-untyped-def]
    _, embedder = built
    for name in RETRIEVERS.names():
        out = Retriever(handle, embedder, name).retrieve(QUESTIONS[:2], 2)
        assert len(out) == 2 and all(len(hs) <= 2 for hs in out)
    assert Retriever(handle, embedder, "dense").retrieve([], 2) == []


def test_every_store_returns_the_same_chunks_as_the_reference(built) -> None:  # type: ignore[no-untyped-def]
    """Exact search on the sample: Qdrant Edge (the default) returns what qdrant-client's local mode returned before
    it. Dense: the same chunks and scores. BM25: the same scores (chunks with equal weight may come in another
    order). Hybrid: each store's fusion is RRF (k=2) of that store's own two candidate lists."""
    art, embedder = built
    reference = open_index(art, store="qdrant-memory")
    k = 8
    for store in STORES.names():
        other = open_index(art, store=store)
        for mode in ("dense", "bm25"):
            want = Retriever(reference, embedder, mode).retrieve(QUESTIONS, k)
            got = Retriever(other, embedder, mode).retrieve(QUESTIONS, k)
            for w, g in zip(want, got, strict=True):
                assert np.allclose([h.score for h in g], [h.score for h in w], atol=1e-4), (store, mode)
                if mode == "dense":
                    assert [h.chunk.id for h in g] == [h.chunk.id for h in w], store
        legs = [Retriever(other, embedder, mode).retrieve(QUESTIONS, 2 * k) for mode in ("dense", "bm25")]
        for q, fused in enumerate(Retriever(other, embedder, "hybrid").retrieve(QUESTIONS, k)):
            rrf: dict[int, float] = {}
            for leg in legs:
                for rank, h in enumerate(leg[q]):
                    rrf[h.chunk.id] = rrf.get(h.chunk.id, 0.0) + 1 / (2 + rank)
            want_ids = [cid for cid, _ in sorted(rrf.items(), key=lambda kv: (-kv[1], kv[0]))[:k]]
            assert [h.chunk.id for h in fused] == want_ids, store  # ties by chunk id
            assert all(abs(rrf[h.chunk.id] - h.score) < 1e-9 for h in fused), store


_RETRIEVE_ALL = """
import json, sys
from pathlib import Path
from ragsweep.pipelines.embedders.local import Embedder
from ragsweep.pipelines.index import open_index, read_index
from ragsweep.pipelines.retrieve import RETRIEVERS, Retriever
handle, embedder = open_index(read_index(Path(sys.argv[1])), store=sys.argv[2]), Embedder()
questions = json.loads(sys.argv[3])
hits = {m: Retriever(handle, embedder, m).retrieve(questions, 6) for m in RETRIEVERS.names()}
print(json.dumps({m: [[(h.chunk.id, h.score) for h in hs] for hs in out] for m, out in hits.items()}))
"""


def test_hits_are_the_same_in_every_process(built) -> None:  # type: ignore[no-untyped-def]
    """A rerun must build the same prompts (or it misses the answer cache): the same hits in the same order from
    two processes. Qdrant orders tied RRF scores differently in each process; the store breaks ties by chunk id."""
    art, _ = built
    questions = [*QUESTIONS, "Which team won and where?", "Broncos Panthers Santa Clara"]
    runs = [
        subprocess.run(
            [sys.executable, "-c", _RETRIEVE_ALL, str(art.folder), "edge", json.dumps(questions)],
            capture_output=True,
            text=True,
            check=True,
            timeout=300,
        ).stdout
        for _ in range(2)
    ]
    assert runs[0] == runs[1]
    assert any(a[1] == b[1] for hs in json.loads(runs[0])["hybrid"] for a, b in zip(hs, hs[1:], strict=False)), (
        "no tied fused scores: this test would not catch an unstable order"
    )


def test_edge_shard_is_written_once_and_opened_by_many(built) -> None:  # type: ignore[no-untyped-def]
    """The shard lives in the index folder; later opens (other trial processes) only load it."""
    art, embedder = built
    open_index(art, store="edge")
    shard = art.folder / "edge"
    inode = shard.stat().st_ino  # a rebuild would rename a new folder into place
    handles = [open_index(art, store="edge") for _ in range(3)]  # like three trials at once: no WAL lock
    assert shard.stat().st_ino == inode and not list(art.folder.glob(".edge-*"))
    assert all(Retriever(h, embedder, "dense").retrieve(QUESTIONS[:1], 2)[0] for h in handles)


def test_approximate_search_has_its_own_shard_and_is_exact_below_the_threshold(built) -> None:  # type: ignore[no-untyped-def]
    """``pipeline.hnsw_ef`` builds an HNSW shard beside the exact one; on a corpus this small Qdrant scans anyway,
    so both give the same hits (the same scores; chunks that tie may swap places, which is why hybrid, whose
    fused score depends on those places, is not compared here)."""
    art, embedder = built
    exact, approx = open_index(art, store="edge"), open_index(art, store="edge", hnsw_ef=64)
    assert (art.folder / "edge").is_dir() and (art.folder / "edge-hnsw").is_dir()
    for mode in ("dense", "bm25"):
        want = Retriever(exact, embedder, mode).retrieve(QUESTIONS, 5)
        got = Retriever(approx, embedder, mode).retrieve(QUESTIONS, 5)
        for w, g in zip(want, got, strict=True):
            assert np.allclose([h.score for h in g], [h.score for h in w], atol=1e-5), mode
            if mode == "dense":
                assert [h.chunk.id for h in g] == [h.chunk.id for h in w]
