"""A batch-first client for OpenAI-compatible chat endpoints (llama.cpp server, vLLM, any external one).

Contract: :meth:`LLMClient.complete` takes a batch of :class:`ChatRequest` and returns one
:class:`ChatResponse` per request, in order. Requests run concurrently up to ``max_concurrency``.
Transient failures (connection errors, timeouts, 408/409/429/5xx, honouring Retry-After) are retried with
jittered exponential backoff by the ``openai`` SDK; when retries run out, :class:`LLMError` names the
endpoint. OpenAI-shaped dicts never leave this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import httpx
import openai

Engine = Literal["llama.cpp", "vllm", "external"]


class LLMError(RuntimeError):
    """A request failed for good (retries exhausted, or a request error); the message names the endpoint."""


@dataclass(frozen=True)
class ChatRequest:
    messages: tuple[tuple[str, str], ...]  # (role, content) pairs
    temperature: float = 0.0
    max_tokens: int = 64
    seed: int | None = 0
    json_schema: dict[str, Any] | None = None  # ask for JSON output of this shape


@dataclass
class ChatResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float


def structured_output_params(engine: Engine, schema: dict[str, Any]) -> dict[str, Any]:
    """Request fields that ask ``engine`` for JSON of ``schema``, in the dialect it understands.

    llama.cpp's server takes ``json_object`` plus a ``schema``; vLLM takes ``json_schema``. The old
    ``guided_*`` fields are silently ignored by current vLLM, so they are never sent.
    """
    if engine == "llama.cpp":
        return {"response_format": {"type": "json_object", "schema": schema}}
    return {"response_format": {"type": "json_schema", "json_schema": {"name": "verdict", "schema": schema}}}


class LLMClient:
    """Talks to one OpenAI-compatible endpoint. Cheap to construct; safe to use from any thread."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        engine: Engine = "llama.cpp",
        api_key: str = "not-needed",
        max_concurrency: int = 2,
        timeout_s: float = 120.0,
        max_retries: int = 3,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.engine = engine
        self.api_key = api_key
        self.max_concurrency = max_concurrency
        self.timeout_s = timeout_s
        self.max_retries = max_retries

    def complete(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        """Run a batch of requests concurrently (bounded); raise :class:`LLMError` if any fails for good."""
        if not requests:
            return []
        return asyncio.run(self._complete_all(requests))

    async def _complete_all(self, requests: Sequence[ChatRequest]) -> list[ChatResponse]:
        sem = asyncio.Semaphore(self.max_concurrency)
        async with openai.AsyncOpenAI(
            base_url=self.base_url, api_key=self.api_key, timeout=self.timeout_s, max_retries=self.max_retries
        ) as client:

            async def one(req: ChatRequest) -> ChatResponse:
                async with sem:
                    return await self._complete_one(client, req)

            return list(await asyncio.gather(*(one(r) for r in requests)))

    async def _complete_one(self, client: openai.AsyncOpenAI, req: ChatRequest) -> ChatResponse:
        extra: dict[str, Any] = {}
        if req.json_schema is not None:
            extra = structured_output_params(self.engine, req.json_schema)
        t0 = time.perf_counter()
        try:
            resp = await client.chat.completions.create(
                model=self.model,
                messages=[{"role": r, "content": c} for r, c in req.messages],  # type: ignore[misc]
                temperature=req.temperature,
                max_tokens=req.max_tokens,
                seed=req.seed,
                **extra,
            )
        except openai.APIConnectionError as e:
            raise LLMError(f"LLM endpoint {self.base_url} unreachable after {self.max_retries} retries: {e}") from e
        except openai.APIStatusError as e:
            raise LLMError(f"LLM endpoint {self.base_url} answered HTTP {e.status_code}: {e.message}") from e
        latency = time.perf_counter() - t0
        usage = resp.usage
        return ChatResponse(
            text=(resp.choices[0].message.content or "") if resp.choices else "",
            prompt_tokens=usage.prompt_tokens if usage else 0,
            completion_tokens=usage.completion_tokens if usage else 0,
            latency_s=latency,
        )


def check_endpoint(base_url: str, timeout_s: float = 5.0) -> list[str]:
    """Return the model ids served at ``base_url`` (``GET /models``); raise :class:`LLMError` naming it."""
    url = base_url.rstrip("/") + "/models"
    try:
        r = httpx.get(url, timeout=timeout_s)
        r.raise_for_status()
        return [m.get("id", "") for m in r.json().get("data", [])]
    except (httpx.HTTPError, ValueError) as e:
        raise LLMError(f"LLM endpoint {url} is not usable: {e}") from e
