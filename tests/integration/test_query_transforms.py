"""Each query transformation as a node of the real pipeline graph, on the real llama.cpp server (SmolLM2) over a
real index: what it searched with, what it cost, and that a rerun is served from the request cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.embedders.local import Embedder
from ragsweep.pipelines.graph import GenerationParams, RagPipeline
from ragsweep.pipelines.index import IndexCache, IndexSpec, open_index
from ragsweep.pipelines.llm_client.cache import RequestCache
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.pipelines.prompts import load_templates
from ragsweep.pipelines.retrieve import Fusion, Retriever
from ragsweep.search.serving.engines import LlamaCppServer

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory, xquad_slice: tuple[Path, Path]):  # type: ignore[no-untyped-def]
    ds = load_dataset(*xquad_slice)
    art = IndexCache(tmp_path_factory.mktemp("idx")).get_or_build(
        IndexSpec(ds.corpus_digest, 600, 0, "default", "sentence"), ds.corpus, Embedder()
    )
    return ds, open_index(art)


@pytest.mark.parametrize("transform", ["hyde", "multi_query", "rewrite"])
def test_transform_node_searches_with_what_the_generator_wrote(  # type: ignore[no-untyped-def]
    transform: str, index, llama_server: LlamaCppServer, tmp_path: Path
) -> None:
    ds, handle = index
    questions = [q.question for q in ds.questions[:4]]
    cache = RequestCache(tmp_path / "cache.db")
    client = LLMClient(llama_server.base_url, llama_server.model_id, cache=cache)
    params = GenerationParams(
        top_k=3,
        temperature=0.0,
        max_tokens=16,
        query_transform=transform,
        context_order="ends",
        context_budget=200,
        multi_query_n=2,
    )
    retriever = Retriever(handle, Embedder(), "hybrid", Fusion(hybrid_weight=0.7, rrf_k=10))
    pipeline = RagPipeline(retriever, client, load_templates()["concise"], params)
    answers, timings = pipeline.answer(questions)

    assert timings["transform_s"] > 0 and "transform" in answers[0].stages
    for q, a in zip(questions, answers, strict=True):
        assert a.llm_calls == 2  # one transform call and the answer
        texts = a.search_texts
        if transform == "rewrite":
            assert len(texts) == 1 and texts[0].strip()
        else:  # the question itself, and what the generator added
            assert texts[0] == q and 1 <= len(texts) <= 1 + (2 if transform == "multi_query" else 1)
        assert a.prompt_tokens > a.response.prompt_tokens  # the transform's tokens are in the answer's cost
        assert 1 <= len(a.hits) <= 3
        assert sum(len(h.chunk.text) for h in a.hits[:-1]) <= 200 * 4  # the budget (estimated tokens) holds
    assert any(len(a.search_texts) > 1 for a in answers) or transform == "rewrite"

    # Temperature 0 and seeded: the same batch again is answered from the cache, transform calls included.
    hits_before = client.stats.cache_hits
    again, _ = pipeline.answer(questions)
    assert client.stats.cache_hits - hits_before == 2 * len(questions)
    assert [a.search_texts for a in again] == [a.search_texts for a in answers]
