"""Benchmark: LLMClient throughput against the llama.cpp server at several concurrency bounds.

Usage: .venv/bin/python benchmarks/llm_client.py [--requests 16] [--max-tokens 32]

Prints requests/s and completion tokens/s at concurrency 1, 2, 4, 8, each as a ratio to a plain sequential
loop (one synchronous `openai` call after another) measured in the same run. The request cache is off.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import openai

from ragsweep.pipelines.llm_client.client import ChatRequest, LLMClient
from ragsweep.search.serving.engines import LlamaCppServer, resolve_gguf


def _requests(n: int, max_tokens: int) -> list[ChatRequest]:
    return [
        ChatRequest((("user", f"Write one sentence about the number {i}."),), max_tokens=max_tokens) for i in range(n)
    ]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=16)
    ap.add_argument("--max-tokens", type=int, default=32)
    args = ap.parse_args()
    server = LlamaCppServer(resolve_gguf("default"), Path(tempfile.mkdtemp()) / "server.log")
    server.start()
    try:
        reqs = _requests(args.requests, args.max_tokens)
        LLMClient(server.base_url, server.model_id).complete(reqs[:2])  # warm-up
        plain = openai.OpenAI(base_url=server.base_url, api_key="x")
        t0, tokens = time.perf_counter(), 0
        for r in reqs:
            resp = plain.chat.completions.create(
                model=server.model_id,
                max_tokens=r.max_tokens,
                temperature=0,
                seed=0,
                messages=[{"role": a, "content": b} for a, b in r.messages],
            )
            tokens += resp.usage.completion_tokens if resp.usage else 0
        base_s = time.perf_counter() - t0
        rows = [("plain sequential loop", base_s, tokens)]
        for c in (1, 2, 4, 8):
            client = LLMClient(server.base_url, server.model_id, max_concurrency=c)
            t0 = time.perf_counter()
            out = client.complete(reqs)
            secs = time.perf_counter() - t0
            rows.append((f"LLMClient, concurrency {c}", secs, sum(o.completion_tokens for o in out)))
    finally:
        server.stop()
    print(f"\nllama.cpp server (SmolLM2-135M, CPU), {args.requests} requests, max_tokens {args.max_tokens}")
    print(f"{'client':<28}{'seconds':>9}{'req/s':>8}{'tok/s':>8}{'vs loop':>9}")
    for name, secs, tok in rows:
        print(f"{name:<28}{secs:>9.2f}{args.requests / secs:>8.2f}{tok / secs:>8.1f}{base_s / secs:>8.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
