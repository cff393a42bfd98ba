"""The chat contract every LLM client honours: requests and responses as plain values, one error type.

Contract: a :class:`ChatClient` takes a batch of :class:`ChatRequest` and returns one :class:`ChatResponse` per
request, in order, or raises :class:`LLMError` naming the endpoint; ``stats`` counts what was actually sent.
Temperature-0 requests are deterministic for a given server build, so they may be cached
(:mod:`ragsweep.pipelines.llm_client.cache`). The contract suite in ``tests/contracts`` runs against every real client.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

Engine = str  # a name in ragsweep.search.registries.ENGINES (llama.cpp, vllm, external)


class LLMError(RuntimeError):
    """A request failed for good (retries exhausted, or a request error); the message names the endpoint.

    ``retryable``: the failure was the server's (unreachable, timeout, 429/5xx), so another replica may succeed.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    temperature: float = 0.0
    max_tokens: int = 64
    seed: int | None = 0
    json_schema: dict[str, Any] | None = None  # ask for JSON output of this shape


@dataclass(kw_only=True)
class ChatResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # of the request that produced it (a cache hit keeps the original latency)
    cached: bool = False
    started_at: float = 0.0  # wall-clock time the request was sent (a cache hit: when it was looked up)


class ChatClient(Protocol):
    """What pipelines and judges need from an LLM: :class:`~ragsweep.pipelines.llm_client.client.LLMClient` is the
    implementation."""

    model: str

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]: ...
