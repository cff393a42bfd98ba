"""Answering one configuration: its session (pipeline and LLM clients of the shared servers), a batch of
questions answered, judged and scored into answers.jsonl rows, and the means, cost and intervals over rows.

Shared by trials (:mod:`.trial`) and held-out confirmation (:mod:`.confirm`). :class:`SearchContext` is what both
need besides a configuration's params.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ragsweep.judges.base import JudgeItem, JudgeResult, run_judges
from ragsweep.judges.intervals import intervals
from ragsweep.judges.retrieval import ChunkRef
from ragsweep.judges.scoring import (
    DETERMINISTIC_METRICS,
    aggregate,
    objective,
    score_answer,
)
from ragsweep.judges.suite import build_judges
from ragsweep.pipelines.data import Dataset, Question
from ragsweep.pipelines.graph import Answer
from ragsweep.pipelines.index import IndexCache
from ragsweep.pipelines.llm_client.cache import RequestCache
from ragsweep.search.assemble import Assembled, build_pipeline
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.serving.servers import Endpoints
from ragsweep.search.space import TrialParams
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.tracking.traces import TraceWriter

HEADLINE = ("token_f1", "recall_at_k")  # metrics with an interval in every trial run (besides the objective's terms)


@dataclass(kw_only=True, frozen=True)
class SearchContext:
    """Everything a trial needs besides its sampled params. Picklable; paths and URIs are absolute."""

    config: ExperimentConfig
    dataset: Dataset
    question_ids: tuple[str, ...]  # the seeded order shared by every trial
    endpoints: Endpoints
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    index_cache_dir: Path
    llm_cache_path: Path | None = None  # sqlite request cache shared by trials and re-runs; None = off
    env: dict[str, str] = field(default_factory=dict)
    prompt_uris: dict[str, str] = field(default_factory=dict)  # template name -> prompts:/<name>/<version>
    held_out: tuple[Question, ...] = ()  # questions the search never sees; finalists answer them afterwards
    screen_ids: tuple[str, ...] = ()  # every search question: retrieval is scored on these with no LLM call


def _percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else math.nan


def _row(q: Question, ans: Answer, scores: dict[str, float], verdicts: dict[str, JudgeResult]) -> dict[str, Any]:
    """One line of answers.jsonl: everything needed to debug this answer."""
    return {
        "id": q.id,
        "question": q.question,
        "answer": ans.answer,
        "gold": list(q.answers),
        "answerable": q.answerable,
        "contexts": [
            {
                "doc_id": h.chunk.doc_id,
                "start": h.chunk.start,
                "end": h.chunk.end,
                "score": h.score,
                "text": h.chunk.text,
            }
            for h in ans.hits
        ],
        # NaN (undefined) is written as null so the file stays valid JSON.
        "scores": {
            k: v if math.isfinite(v) else None
            for k, v in {**scores, **{n: v.value for n, v in verdicts.items()}}.items()
        },
        # Per judge: its reason (or why there is no value), the raw reply when it did not parse, calls made.
        "judges": {
            n: {
                "reason": v.reason,
                "raw": v.raw,
                "repaired": v.repaired,
                "calls": v.calls,
                "tokens": v.prompt_tokens + v.completion_tokens,
            }
            for n, v in verdicts.items()
        },
        "latency_s": ans.latency_s,
        "search_texts": ans.search_texts,
        "llm_calls": ans.llm_calls,
        "prompt_tokens": ans.prompt_tokens,
        "completion_tokens": ans.completion_tokens,
        "judge_tokens": sum(v.prompt_tokens + v.completion_tokens for v in verdicts.values()),
    }


@dataclass(kw_only=True)
class Session:
    """One configuration's pipeline and LLM clients, and what answering has cost so far."""

    params: TrialParams
    built: Assembled
    generator: Any  # LLMClient of the generator server
    judge_client: Any  # LLMClient of the judge server
    judges: list[Any]
    timings: dict[str, float]
    t_start: float
    judge_asked: int = 0
    judge_failed: int = 0
    judge_repaired: int = 0
    retrieval_metrics: dict[str, float] = field(default_factory=dict)  # retrieval.* on every search question

    @property
    def quality_metrics(self) -> tuple[str, ...]:
        return DETERMINISTIC_METRICS + tuple(j.name for j in self.judges)


def request_cache(ctx: SearchContext) -> RequestCache | None:
    """The shared request cache (``llm.cache``); with ``mlflow.redact`` on, replies holding personal data stay out
    of its file (:mod:`ragsweep.pipelines.llm_client.cache`)."""
    if not ctx.llm_cache_path:
        return None
    redact = ctx.config.mlflow.redact
    return RequestCache(ctx.llm_cache_path, Redactor(redact) if redact is not None else None)


def open_session(params: TrialParams, ctx: SearchContext) -> Session:
    """Build the pipeline for ``params`` (index from the cache) and the clients of the shared servers."""
    cfg = ctx.config
    t_start = time.perf_counter()
    cache = request_cache(ctx)
    # Look the servers up by actor name: a restarted or replaced replica is found where it is now.
    generator = ctx.endpoints.generator_for(params.generator).resolved().client(cache)
    built = build_pipeline(
        params,
        cfg.pipeline,
        ctx.dataset.corpus,
        ctx.dataset.corpus_digest,
        IndexCache(ctx.index_cache_dir),
        generator,
        seed=cfg.search.seed,
        max_tokens=cfg.llm.generator_for(params.generator).max_tokens,
    )
    timings = {
        **built.timings,
        "transform_s": 0.0,
        "retrieve_s": 0.0,
        "rerank_s": 0.0,
        "generate_s": 0.0,
        "judge_s": 0.0,
        "trace_s": 0.0,
    }
    return Session(
        params=params,
        built=built,
        generator=generator,
        judge_client=ctx.endpoints.judge.resolved().client(cache),
        judges=build_judges(cfg.judges),
        timings=timings,
        t_start=t_start,
    )


def answer_batch(
    session: Session, batch: list[Question], cfg: ExperimentConfig, writer: TraceWriter | None = None
) -> list[dict[str, Any]]:
    """Answer, judge and score ``batch``; one answers.jsonl row per question (traced when ``writer`` wants it)."""
    answers, t = session.built.pipeline.answer([q.question for q in batch])
    for k, v in t.items():
        session.timings[k] = session.timings.get(k, 0.0) + v
    t0 = time.perf_counter()
    items = [
        JudgeItem(q.question, a.answer, q.answers if q.answerable else (), tuple(h.chunk.text for h in a.hits))
        for q, a in zip(batch, answers, strict=True)
    ]
    by_judge = run_judges(session.judge_client, session.judges, items)
    session.timings["judge_s"] += time.perf_counter() - t0
    flat = [v for vs in by_judge.values() for v in vs]
    session.judge_asked += sum(not v.skipped for v in flat)
    session.judge_failed += sum(v.failed for v in flat)
    session.judge_repaired += sum(v.repaired for v in flat)
    _check_judge_budget(session.judge_failed, session.judge_asked, cfg.judges.max_error_rate, flat)
    rows = []
    for n, (q, a) in enumerate(zip(batch, answers, strict=True)):
        refs = [ChunkRef(h.chunk.doc_id, h.chunk.start, h.chunk.end) for h in a.hits]
        scores, verdicts = score_answer(q, a.answer, refs), {name: vs[n] for name, vs in by_judge.items()}
        rows.append(_row(q, a, scores, verdicts))
        if writer is not None and writer.wanted(q.id):
            t0 = time.perf_counter()
            writer.record(q, a, scores, verdicts)
            session.timings["trace_s"] += time.perf_counter() - t0
    return rows


def row_scores(row: dict[str, Any]) -> dict[str, float]:
    """One answers.jsonl row's scores, null as NaN."""
    return {k: math.nan if v is None else float(v) for k, v in row["scores"].items()}


def summarize(session: Session, rows: list[dict[str, Any]], cfg: ExperimentConfig) -> dict[str, float]:
    """Quality means, cost per question and the objective over ``rows`` (everything answered so far)."""
    return summarize_rows(
        rows, session.quality_metrics, gpu_seconds(session, cfg), session.judge_failed, session.judge_repaired, cfg
    )


def gpu_seconds(session: Session, cfg: ExperimentConfig) -> float:
    """LLM-server busy seconds x GPUs per replica of the session's generator and judge (0 on CPU-only servers)."""
    g, j = session.generator, session.judge_client
    return (
        g.stats.busy_s * cfg.llm.generator_for(session.params.generator).gpus_per_replica
        + j.stats.busy_s * cfg.judge_endpoint.gpus_per_replica
    )


def summarize_rows(
    rows: list[dict[str, Any]],
    quality_metrics: tuple[str, ...],
    gpu_s: float,
    judge_failed: int,
    judge_repaired: int,
    cfg: ExperimentConfig,
) -> dict[str, float]:
    """:func:`summarize` from its parts (rows answered in several sessions, e.g. the batches of a race)."""
    done = len(rows)
    latencies = [r["latency_s"] for r in rows]
    metrics = {
        **aggregate((row_scores(r) for r in rows), quality_metrics),
        # Cost of the configuration, including answers served from the cache (their original counts).
        "latency_p50_s": _percentile(latencies, 50),
        "latency_p95_s": _percentile(latencies, 95),
        "tokens_per_question": sum(r["prompt_tokens"] + r["completion_tokens"] for r in rows) / done,
        "llm_calls_per_question": sum(r.get("llm_calls", 1) for r in rows) / done,
        "gpu_s_per_question": gpu_s / done,
        "n_questions": float(done),
        "llm.judge.failed": float(judge_failed),
        "llm.judge.repaired": float(judge_repaired),
    }
    metrics["objective"] = objective(metrics, cfg.objective.weights)
    return metrics


def interval_metrics(rows: list[dict[str, Any]], cfg: ExperimentConfig) -> dict[str, float]:
    """``<metric>_ci_low`` / ``_ci_high`` of the objective and the headline metrics: a bootstrap over questions."""
    s = cfg.search
    cis = intervals(
        [row_scores(r) for r in rows], HEADLINE, cfg.objective.weights, s.confidence, s.bootstrap_samples, s.seed
    )
    return {f"{name}_ci_{side}": v for name, (lo, hi) in cis.items() for side, v in (("low", lo), ("high", hi))}


def question_objectives(rows: list[dict[str, Any]], weights: dict[str, float]) -> list[float]:
    """Each answered question's objective (undefined metrics count 0), in answer order: what paired tests use."""
    return [objective(row_scores(r), weights) for r in rows]


class JudgeBudgetError(RuntimeError):
    """Too many of a trial's judge verdicts were unusable (``judges.max_error_rate``)."""


def _check_judge_budget(failed: int, asked: int, limit: float | None, latest: list[JudgeResult]) -> None:
    if limit is None or not asked or failed / asked <= limit:
        return
    reason = next((v.reason for v in latest if v.failed), "")
    raise JudgeBudgetError(
        f"{failed} of {asked} judge verdicts unusable after one repair ({failed / asked:.0%}), "
        f"above judges.max_error_rate {limit:.0%}; e.g. {reason[:300]}"
    )


ROW_IDS = ("id",)  # the only strings of a row that are never masked (numbers, booleans and None have nothing to mask)


def redacted(row: dict[str, Any], r: Redactor) -> dict[str, Any]:
    """``row`` with every text in it masked, whatever field holds it (a field added later, such as the search
    texts of a query transformation, is masked too); ids, numbers and scores stay."""
    return {k: v if k in ROW_IDS else r.deep(v) for k, v in row.items()}
