"""A batch-first client for OpenAI-compatible chat endpoints (llama.cpp server, vLLM, any external one).

Contract: :meth:`LLMClient.complete` takes a batch of :class:`ChatRequest` and returns one
:class:`ChatResponse` per request, in order. With a :class:`~ragsweep.pipelines.llm_client.cache.RequestCache`,
temperature-0 requests already answered are served from it and never sent; :attr:`LLMClient.stats` counts what
was spent.
Requests run concurrently up to ``max_concurrency``.
Transient failures (connection errors, timeouts, 408/409/429/5xx, honouring Retry-After) are retried with
jittered exponential backoff by the ``openai`` SDK; when retries run out, :class:`LLMError` names the
endpoint. OpenAI-shaped dicts never leave this module.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import openai

from ragsweep.pipelines.llm_client.cache import RequestCache, cacheable, request_key
from ragsweep.pipelines.llm_client.chat import ChatRequest, ChatResponse, Engine, LLMError

__all__ = ["ChatRequest", "ChatResponse", "ClientStats", "Engine", "LLMClient", "LLMError", "check_endpoint"]

USAGE = "llm."  # usage counters live under llm.<role>.<counter>; quality scores never contain a dot


def usage_prefix(role: str) -> str:
    return f"{USAGE}{role}."


@dataclass(kw_only=True)
class ClientStats:
    """What a client spent: requests actually sent, cache hits/misses, tokens and seconds of those requests."""

    requests: int = 0
    failovers: int = 0  # requests moved to another replica after one failed for good
    cache_hits: int = 0
    cache_misses: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    request_s: float = 0.0

    by_url: dict[str, int] = field(default_factory=dict)  # requests sent per replica
    intervals: list[tuple[float, float]] = field(default_factory=list)  # wall-clock (start, end) of each request

    @property
    def busy_s(self) -> float:
        """Seconds during which at least one request was in flight (overlapping requests count once)."""
        return sum(b - a for a, b in merge_intervals(self.intervals))

    def as_metrics(self, role: str) -> dict[str, float]:
        """The counters as metrics ``llm.<role>.<counter>``: a namespace no quality score can share."""
        out = {f"{usage_prefix(role)}{k}": float(v) for k, v in vars(self).items() if isinstance(v, (int, float))}
        out[f"{usage_prefix(role)}busy_s"] = self.busy_s
        return out


def merge_intervals(intervals: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Union of time intervals as sorted, disjoint intervals."""
    merged: list[tuple[float, float]] = []
    for a, b in sorted(intervals):
        if merged and a <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], b))
        else:
            merged.append((a, b))
    return merged


def structured_output_params(engine: Engine, schema: dict[str, Any]) -> dict[str, Any]:
    """Request fields that ask ``engine`` for JSON of ``schema``, in the dialect it understands.

    llama.cpp's server takes ``json_object`` plus a ``schema``; vLLM takes ``json_schema``. The old
    ``guided_*`` fields are silently ignored by current vLLM, so they are never sent.
    """
    if engine == "llama.cpp":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}}


class LLMClient:
    """Talks to one model served at one or more URLs (replicas). Cheap to construct.

    Requests go round-robin over the replicas; a request that fails for good on one (after the SDK's retries)
    moves to the next before :class:`LLMError` is raised.
    """

    def __init__(
        self,
        base_url: str | Sequence[str],
        model: str,
        *,
        engine: Engine = "llama.cpp",
        api_key: str = "not-needed",
        max_concurrency: int = 2,
        timeout_s: float = 120.0,
        max_retries: int = 3,
        cache: RequestCache | None = None,
        model_fingerprint: str | None = None,
    ) -> None:
        """``cache`` serves and stores temperature-0 responses under ``model_fingerprint`` (default: ``model``)."""
        urls = [base_url] if isinstance(base_url, str) else list(base_url)
        if not urls:
            raise ValueError("LLMClient needs at least one base URL")
        self.base_urls = [u.rstrip("/") for u in urls]
        self.model = model
        self.engine = engine
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.cache = cache
        self.model_fingerprint = model_fingerprint or model
        self.stats = ClientStats()
        self._next = 0  # round-robin position over the replicas

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Run a batch of requests concurrently (bounded); raise :class:`LLMError` if any fails for good."""
        if not requests:
            return []
        return asyncio.run(self._complete_all(requests))

    async def _complete_all(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        results: list[ChatResponse | None] = [None] * len(requests)
        keys: dict[int, str] = {}
        if self.cache is not None:
            for i, req in enumerate(requests):
                if cacheable(req):
                    keys[i] = request_key(self.model_fingerprint, req)
                    results[i] = self.cache.get(keys[i])
            hits = sum(r is not None for r in results)
            self.stats.cache_hits += hits
            self.stats.cache_misses += len(keys) - hits
        todo = [i for i, r in enumerate(results) if r is None]
        if todo:
            sent = await self._send_all([requests[i] for i in todo])
            for i, resp in zip(todo, sent, strict=True):
                results[i] = resp
                if i in keys and self.cache is not None:
                    self.cache.put(keys[i], resp)
        return [r for r in results if r is not None]

    async def _send_all(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        sem = asyncio.Semaphore(self.max_concurrency * len(self.base_urls))
        clients = [
            openai.AsyncOpenAI(base_url=u, api_key=self.api_key, timeout=self.timeout_s, max_retries=self.max_retries)
            for u in self.base_urls
        ]
        start = self._next
        self._next += len(requests)

        async def one(i: int, req: ChatRequest) -> ChatResponse:
            async with sem:
                n = len(clients)
                for attempt in range(n):
                    k = (start + i + attempt) % n
                    try:
                        return await self._complete_one(clients[k], self.base_urls[k], req)
                    except LLMError as e:
                        if not e.retryable or attempt == n - 1:
                            raise
                        self.stats.failovers += 1
                raise AssertionError("unreachable")

        try:
            return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))
        finally:
            for c in clients:
                await c.close()

    async def _complete_one(self, client: openai.AsyncOpenAI, url: str, req: ChatRequest) -> ChatResponse:
        extra: dict[str, Any] = {}
        if req.json_schema is not None:
            extra = structured_output_params(self.engine, req.json_schema)
        t0, wall0 = time.perf_counter(), time.time()
        try:
            resp = await client.chat.completions.create(
                model=self.model,
                messages=[{"role": r, "content": c} for r, c in req.messages],  # type: ignore[misc]
                temperature=req.temperature,
                max_tokens=req.max_tokens,
                seed=req.seed,
                **extra,
            )
        except openai.APIConnectionError as e:  # includes timeouts
            raise LLMError(f"LLM endpoint {url} unreachable after {self.max_retries} retries: {e}", True) from e
        except openai.APIStatusError as e:
            retryable = e.status_code in (408, 409, 429) or e.status_code >= 500
            raise LLMError(f"LLM endpoint {url} answered HTTP {e.status_code}: {e.message}", retryable) from e
        except (json.JSONDecodeError, openai.APIResponseValidationError) as e:  # e.g. a server dying mid-reply
            raise LLMError(f"LLM endpoint {url} sent an unreadable response: {e}", True) from e
        latency = time.perf_counter() - t0
        usage = resp.usage
        out = ChatResponse(
            text=(resp.choices[0].message.content or "") if resp.choices else "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
            started_at=wall0,
        )
        # Counted on the event loop's single thread: no lock needed.
        self.stats.requests += 1
        self.stats.by_url[url] = self.stats.by_url.get(url, 0) + 1
        self.stats.request_s += latency
        self.stats.intervals.append((wall0, wall0 + latency))
        self.stats.prompt_tokens += out.prompt_tokens
        self.stats.completion_tokens += out.completion_tokens
        return out


def check_endpoint(base_url: str, timeout_s: float = 5.0, api_key: str | None = None) -> list[str]:
    """Return the model ids served at ``base_url`` (``GET /models``); raise :class:`LLMError` naming it."""
    url = base_url.rstrip("/") + "/models"
    headers = {"Authorization": f"Bearer {api_key}"} if api_key and api_key != "not-needed" else {}
    try:
        r = httpx.get(url, timeout=timeout_s, headers=headers)
        r.raise_for_status()
        return [m.get("id", "") for m in r.json().get("data", [])]
    except (httpx.HTTPError, ValueError) as e:
        raise LLMError(f"LLM endpoint {url} is not usable: {e}") from e
