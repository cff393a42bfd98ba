"""Benchmark: what the default judge suite costs per question, and batching vs one request at a time.

Usage: .venv/bin/python benchmarks/judge_suite.py [--questions 8] [--ks 1,3,5,10] [--throughput-k 3]

Part 1, for each k: xquad_en questions with their gold answer and k retrieved passages (the gold passage plus
k-1 passages of other questions), judged by the default suite (correctness, faithfulness, answer relevance,
context precision; `judges` defaults) on a fresh client with the request cache off. Prints LLM requests and
tokens per question beside the Ragas count for the same four metrics (k + 6 calls: faithfulness 2, answer
relevancy 1 + its 3 generated questions, context precision k, context recall 1; as the issue states it).
Part 2: the same suite at one k, all judges' requests sent in one batch per round (run_judges, client
concurrency 1 and 2) vs one request at a time (each judge on each item in turn), in the same run. A
llama.cpp server answers one request at a time, so batching can only pay off on a batching server (vLLM).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from ragsweep.judges.base import JudgeItem, run_judges
from ragsweep.judges.calibrate import passage, sample_questions
from ragsweep.judges.suite import build_judges
from ragsweep.pipelines.data import load_dataset
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.search.config import JudgeSettings
from ragsweep.search.serving.engines import LlamaCppServer, resolve_gguf

DATA = Path(__file__).resolve().parent.parent / "data" / "xquad_en"


def _items(n: int, k: int) -> list[JudgeItem]:
    ds = load_dataset(DATA / "corpus.jsonl", DATA / "questions.jsonl")
    qs = sample_questions(ds, n + k, seed=0)
    out = []
    for q in qs[:n]:
        others = [passage(ds, o, 300) for o in qs[n:] + qs[:n] if o.id != q.id][: k - 1]
        out.append(JudgeItem(q.question, q.answers[0], q.answers, (passage(ds, q, 300), *others)))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--questions", type=int, default=8)
    ap.add_argument("--ks", default="1,3,5,10")
    ap.add_argument("--throughput-k", type=int, default=3)
    args = ap.parse_args()
    ks = [int(x) for x in args.ks.split(",")]
    settings = JudgeSettings()
    judges = build_judges(settings)
    server = LlamaCppServer(resolve_gguf("default"), Path(tempfile.mkdtemp()) / "server.log")
    server.start()
    rows = []
    try:
        for k in ks:
            items = _items(args.questions, k)
            client = LLMClient(server.base_url, server.model_id, max_concurrency=2)
            t0 = time.perf_counter()
            out = run_judges(client, judges, items)
            secs = time.perf_counter() - t0
            failed = sum(r.failed for rs in out.values() for r in rs)
            repaired = sum(r.repaired for rs in out.values() for r in rs)
            n = len(items)
            tokens = client.stats.prompt_tokens + client.stats.completion_tokens
            rows.append((k, client.stats.requests / n, tokens / n, k + 6, secs / n, failed, repaired))
        items = _items(args.questions, args.throughput_k)
        batched = LLMClient(server.base_url, server.model_id, max_concurrency=2)
        t0 = time.perf_counter()
        run_judges(batched, judges, items)
        batch_s = time.perf_counter() - t0
        serial = LLMClient(server.base_url, server.model_id, max_concurrency=1)
        t0 = time.perf_counter()
        run_judges(serial, judges, items)
        serial_s = time.perf_counter() - t0
        single = LLMClient(server.base_url, server.model_id, max_concurrency=1)
        t0 = time.perf_counter()
        for item in items:
            for j in judges:
                run_judges(single, [j], [item])
        single_s = time.perf_counter() - t0
    finally:
        server.stop()
    names = ", ".join(j.name.removeprefix("judge_") for j in judges)
    print(
        f"\nDefault judge suite ({names}; faithfulness_calls {settings.faithfulness_calls}, reason_chars "
        f"{settings.reason_chars}), SmolLM2-135M on llama.cpp (CPU), {args.questions} xquad_en questions per k"
    )
    print(
        f"{'k':>3}{'calls/question':>16}{'Ragas (k+6)':>13}{'ratio':>8}{'tokens/question':>17}{'s/question':>12}"
        f"{'unusable':>10}{'repaired':>10}"
    )
    for k, calls, tokens, ragas, spq, failed, repaired in rows:
        print(
            f"{k:>3}{calls:>16.2f}{ragas:>13}{calls / ragas:>7.2f}x{tokens:>17.0f}{spq:>12.2f}{failed:>10}"
            f"{repaired:>10}"
        )
    n_verdicts = len(items) * len(judges)
    print(f"\nThroughput at k={args.throughput_k}, {n_verdicts} verdicts:")
    print(f"{'mode':<44}{'seconds':>9}{'verdicts/s':>12}{'speed-up':>10}")
    print(f"{'one request at a time (concurrency 1)':<44}{single_s:>9.1f}{n_verdicts / single_s:>12.2f}{1.0:>9.2f}x")
    for mode, secs in (
        ("one batch per round, concurrency 1", serial_s),
        ("one batch per round, concurrency 2", batch_s),
    ):
        print(f"{mode:<44}{secs:>9.1f}{n_verdicts / secs:>12.2f}{single_s / secs:>9.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
