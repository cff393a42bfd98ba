"""The chat contract (ragsweep.pipelines.llm_client.chat) against every client backend: llama.cpp, a scripted
endpoint, vLLM."""

from __future__ import annotations

import json
from pathlib import Path

from ragsweep.pipelines.llm_client.cache import RequestCache
from ragsweep.pipelines.llm_client.chat import ChatClient
from ragsweep.pipelines.llm_client.client import ChatRequest, LLMClient, check_endpoint
from tests.contracts.conftest import ChatBackend


def _client(b: ChatBackend, **kw: object) -> LLMClient:
    return LLMClient(b.base_url, b.model, engine="vllm" if b.name == "vllm" else "llama.cpp", **kw)  # type: ignore[arg-type]


def test_is_a_chat_client(chat_backend: ChatBackend) -> None:
    client: ChatClient = _client(chat_backend)
    assert client.model == chat_backend.model


def test_one_response_per_request_in_order_with_usage(chat_backend: ChatBackend) -> None:
    client = _client(chat_backend, max_concurrency=3)
    reqs = [ChatRequest((("user", f"Repeat this word: w{i}"),), max_tokens=8) for i in range(4)]
    out = client.complete(reqs)
    assert len(out) == 4
    assert all(isinstance(r.text, str) and r.prompt_tokens > 0 and r.completion_tokens > 0 for r in out)
    assert all(r.latency_s >= 0 and not r.cached for r in out)
    assert client.stats.requests == 4 and client.stats.prompt_tokens == sum(r.prompt_tokens for r in out)
    if chat_backend.echoes:  # replies name their request: order is observable
        assert [r.text for r in out] == [f"echo: Repeat this word: w{i}" for i in range(4)]


def test_an_empty_batch_sends_nothing(chat_backend: ChatBackend) -> None:
    client = _client(chat_backend)
    assert client.complete([]) == [] and client.stats.requests == 0


def test_a_json_schema_is_honoured(chat_backend: ChatBackend) -> None:
    schema = {"type": "object", "properties": {"correct": {"type": "boolean"}}, "required": ["correct"]}
    out = _client(chat_backend).complete(
        [ChatRequest((("user", "Is 2+2=4? Answer in JSON."),), max_tokens=16, json_schema=schema)]
    )
    assert isinstance(json.loads(out[0].text)["correct"], bool)


def test_temperature_zero_repeats_are_served_from_the_cache(chat_backend: ChatBackend, tmp_path: Path) -> None:
    reqs = [ChatRequest((("user", f"Name a colour, {i}."),), max_tokens=6) for i in range(2)]
    first = _client(chat_backend, cache=RequestCache(tmp_path / "c.sqlite"))
    a = first.complete(reqs)
    second = _client(chat_backend, cache=RequestCache(tmp_path / "c.sqlite"))
    b = second.complete(reqs)
    assert (first.stats.requests, second.stats.requests, second.stats.cache_hits) == (2, 0, 2)
    assert [r.text for r in a] == [r.text for r in b] and all(r.cached for r in b)


def test_the_endpoint_lists_its_model(chat_backend: ChatBackend) -> None:
    assert chat_backend.model in check_endpoint(chat_backend.base_url)
