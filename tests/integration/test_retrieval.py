"""Index cache, Qdrant retrieval (dense / BM25 / hybrid) and cross-encoder reranking with real models."""

from __future__ import annotations

import json
import multiprocessing as mp
from pathlib import Path

import pytest

from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.embedders.local import Embedder, resolve_embedder_path
from ragsweep.pipelines.index import IndexCache, IndexSpec, open_index
from ragsweep.pipelines.rerank import CrossEncoderReranker
from ragsweep.pipelines.retrieve import Retriever

pytestmark = pytest.mark.integration


def _build(args: tuple[str, str, str, IndexSpec]) -> bool:
    root, corpus, questions, spec = args
    ds = load_dataset(Path(corpus), Path(questions))
    return IndexCache(Path(root)).get_or_build(spec, ds.corpus, Embedder()).built


def test_cache_builds_each_key_once_even_when_processes_race(tmp_path: Path, xquad_slice: tuple[Path, Path]) -> None:
    ds = load_dataset(*xquad_slice)
    spec = IndexSpec(ds.corpus_digest, 800, 100, "default")
    with mp.get_context("spawn").Pool(2) as pool:
        built = pool.map(_build, [(str(tmp_path), str(xquad_slice[0]), str(xquad_slice[1]), spec)] * 2)
    assert sorted(built) == [False, True]
    again = IndexCache(tmp_path).get_or_build(spec, ds.corpus, Embedder())
    assert not again.built and len(again.chunks) > 6
    builds = (tmp_path / "builds.jsonl").read_text().splitlines()
    assert [json.loads(b)["key"] for b in builds] == [spec.key]
    assert IndexSpec(ds.corpus_digest, 400, 100, "default").key != spec.key


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_each_retriever_finds_the_gold_document(
    tmp_path: Path, xquad_slice: tuple[Path, Path], mode: str, capfd: pytest.CaptureFixture[str]
) -> None:
    ds = load_dataset(*xquad_slice)
    art = IndexCache(tmp_path).get_or_build(IndexSpec(ds.corpus_digest, 800, 100, "default"), ds.corpus, Embedder())
    # Off a terminal a build says one line when done: which index, how many chunks, how fast.
    assert f"[ragsweep] index {art.key} (chunk_size 800): {len(art.chunks)} chunks in " in capfd.readouterr().err
    retriever = Retriever(open_index(art), Embedder(), mode)  # type: ignore[arg-type]
    qs = ds.questions[:20]
    hits = retriever.retrieve([q.question for q in qs], 5)
    assert all(0 < len(h) <= 5 for h in hits)
    found = sum(any(h.chunk.doc_id in q.gold_doc_ids for h in hs) for q, hs in zip(qs, hits, strict=True))
    assert found >= 14, f"{mode}: gold document in top 5 for only {found}/20 questions"
    scores = [h.score for h in hits[0]]
    assert scores == sorted(scores, reverse=True)


@pytest.fixture(scope="module")
def tiny_cross_encoder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised one-layer BERT cross-encoder, built and saved locally (nothing downloaded)."""
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    folder = tmp_path_factory.mktemp("tiny-ce")
    tok = AutoTokenizer.from_pretrained(str(resolve_embedder_path("default")))
    cfg = BertConfig(
        vocab_size=tok.vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=1,
    )
    BertForSequenceClassification(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def test_cross_encoder_reranks_to_k(tmp_path: Path, xquad_slice: tuple[Path, Path], tiny_cross_encoder: Path) -> None:
    ds = load_dataset(*xquad_slice)
    art = IndexCache(tmp_path).get_or_build(IndexSpec(ds.corpus_digest, 400, 0, "default"), ds.corpus, Embedder())
    hits = Retriever(open_index(art), Embedder(), "dense").retrieve([ds.questions[0].question], 8)[0]
    reranked = CrossEncoderReranker(tiny_cross_encoder).rerank(ds.questions[0].question, hits, 3)
    assert len(reranked) == 3
    assert {h.chunk.id for h in reranked} <= {h.chunk.id for h in hits}
    assert [h.score for h in reranked] == sorted((h.score for h in reranked), reverse=True)


def test_onnx_backends_are_exported_once_and_stay_within_their_tolerance(
    tmp_path: Path, xquad_slice: tuple[Path, Path]
) -> None:
    """fp32 ONNX equals torch to float rounding; int8 moves vectors a little (docs/config.md states how much
    retrieval changes); the export happens once per model and variant."""
    import numpy as np

    ds = load_dataset(*xquad_slice)
    texts = [d.text[:300] for d in ds.corpus.values()] + [q.question for q in ds.questions]
    ref = Embedder().encode(texts)
    fp32 = Embedder(backend="onnx", cache_dir=tmp_path)
    assert np.abs(fp32.encode(texts) - ref).max() < 1e-4
    int8 = Embedder(backend="onnx-int8", cache_dir=tmp_path).encode(texts)
    assert np.all(np.sum(int8 * ref, axis=1) > 0.95) and np.allclose(np.linalg.norm(int8, axis=1), 1, atol=1e-5)
    files = {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")}
    assert len(files) == 2
    Embedder(backend="onnx", cache_dir=tmp_path).load()  # another process: loads the file, exports nothing
    assert {p: p.stat().st_mtime_ns for p in tmp_path.glob("*.onnx")} == files
