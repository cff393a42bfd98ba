"""The OpenAI-compatible client against a real llama.cpp server (and a closed port for the error path)."""

from __future__ import annotations

import json

import pytest

from ragsweep.pipelines.llm import ChatRequest, LLMClient, LLMError, check_endpoint
from ragsweep.search.serving.engines import LlamaCppServer
from tests.integration.local_cluster import free_port

pytestmark = pytest.mark.integration


def test_batch_completion_counts_tokens(llama_server: LlamaCppServer) -> None:
    client = LLMClient(llama_server.base_url, llama_server.model_id, max_concurrency=2)
    reqs = [ChatRequest((("user", f"Say the number {i}."),), max_tokens=8) for i in range(3)]
    out = client.complete(reqs)
    assert len(out) == 3
    assert all(r.completion_tokens > 0 and r.prompt_tokens > 0 and r.latency_s > 0 for r in out)


def test_json_schema_output_parses(llama_server: LlamaCppServer) -> None:
    client = LLMClient(llama_server.base_url, llama_server.model_id)
    schema = {"type": "object", "properties": {"correct": {"type": "boolean"}}, "required": ["correct"]}
    out = client.complete([ChatRequest((("user", "Is 2+2=4? Answer in JSON."),), max_tokens=16, json_schema=schema)])
    assert isinstance(json.loads(out[0].text)["correct"], bool)


def test_health_check_lists_model(llama_server: LlamaCppServer) -> None:
    assert llama_server.model_id in check_endpoint(llama_server.base_url)


def test_unreachable_endpoint_error_names_it() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    with pytest.raises(LLMError, match=f"{url} unreachable"):
        LLMClient(url, "m", max_retries=1, timeout_s=5).complete([ChatRequest((("user", "hi"),))])
    with pytest.raises(LLMError, match=f"{url}/models is not usable"):
        check_endpoint(url)


def test_request_cache_serves_repeats_without_calling_the_server(llama_server: LlamaCppServer, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragsweep.pipelines.llm_cache import RequestCache

    reqs = [ChatRequest((("user", f"Name a colour, {i}."),), max_tokens=6) for i in range(3)]
    first = LLMClient(llama_server.base_url, llama_server.model_id, cache=RequestCache(tmp_path / "c.sqlite"))
    out1 = first.complete(reqs)
    assert (first.stats.requests, first.stats.cache_misses, first.stats.cache_hits) == (3, 3, 0)
    # A new client (as in another trial or a re-run), even at another URL spelling, hits the cache.
    second = LLMClient(llama_server.base_url + "/", llama_server.model_id, cache=RequestCache(tmp_path / "c.sqlite"))
    out2 = second.complete(reqs)
    assert (second.stats.requests, second.stats.cache_hits) == (0, 3)
    assert [r.text for r in out1] == [r.text for r in out2] and all(r.cached for r in out2)
    sampled = ChatRequest((("user", "Name a colour."),), temperature=0.7, max_tokens=6)
    second.complete([sampled, sampled])
    assert second.stats.requests == 2  # sampled requests are never cached
