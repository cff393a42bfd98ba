"""One MLflow trace per answered question, with the judges' verdicts attached as feedback.

Contract: :class:`TraceWriter` is created inside a trial's active MLflow run (traces link to that run).
:meth:`TraceWriter.record` turns one answered question into a trace, built after the fact from what the
pipeline and the judges recorded, with its real wall-clock times:

    question (CHAIN)                 inputs: question; outputs: answer; attributes: question id, scores
    ├── retrieve (RETRIEVER)         outputs: Documents; attributes: chunk ids, doc ids, offsets, scores
    ├── rerank (RERANKER)            only when the trial reranks
    ├── prompt (PARSER)              outputs: the rendered messages
    ├── generate (CHAT_MODEL)        model, sampling params, prompt/completion tokens, latency, cached
    └── judge_<name> (EVALUATOR)     value, reason, prompt version
        └── call (CHAT_MODEL)        one per request, repairs included

Spans are exported by MLflow's asynchronous trace export, so recording costs the trial only the span objects.
Feedback (one per judge verdict) needs the exported trace, so it is logged on a background thread after a
flush; :meth:`close` waits for it and must run before the trial's run ends. Only questions picked by
:func:`sampled` are traced: the same questions in every trial, so traces compare across trials. Every text is
passed through the trial's :class:`~search.redact.Redactor` first.

Why not LangGraph autologging: the graph answers a whole shard in one invocation (batch-first, for speed), so
autologging would give one trace per shard, and it cannot see the judges; we build per-question traces instead.
"""

from __future__ import annotations

import hashlib
import math
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.entities import AssessmentSource, AssessmentSourceType, Document, SpanType
from mlflow.tracing.constant import SpanAttributeKey

from ragsweep.judges.base import JudgeResult
from ragsweep.pipelines.data import Question
from ragsweep.pipelines.graph import Answer
from ragsweep.pipelines.llm_client.client import ChatRequest, ChatResponse
from ragsweep.pipelines.retrieve import Hit
from ragsweep.search.tracking.redact import Redactor

TRACE_NAME = "question"


def sampled(question_id: str, rate: float) -> bool:
    """Whether ``question_id`` is traced at ``rate``: a hash of the id, so every trial picks the same questions."""
    if rate >= 1.0:
        return True
    h = int(hashlib.sha256(question_id.encode()).hexdigest()[:8], 16)
    return h / 2**32 < rate


def _ns(t: float) -> int:
    return int(t * 1e9)


@dataclass(frozen=True)
class ModelInfo:
    """What the generate span says about the generator."""

    model: str
    engine: str
    temperature: float
    max_tokens: int
    seed: int


class TraceWriter:
    def __init__(
        self,
        experiment_id: str,
        rate: float,
        redactor: Redactor,
        generator: ModelInfo,
        judge_model: str,
        judge_versions: dict[str, str],
        trial: str,
    ) -> None:
        self.experiment_id, self.rate, self.redact = experiment_id, rate, redactor
        self.generator, self.judge_model, self.trial = generator, judge_model, trial
        self.judge_versions = judge_versions
        self.trace_ids: list[str] = []
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ragsweep-feedback")
        self._jobs: list[Future[None]] = []
        self._pending: list[tuple[str, list[tuple[str, JudgeResult]]]] = []  # (trace id, verdicts) not handed on

    def wanted(self, question_id: str) -> bool:
        return sampled(question_id, self.rate)

    def record(self, q: Question, ans: Answer, scores: dict[str, float], verdicts: dict[str, JudgeResult]) -> str:
        """Build and end the trace of one answered question; return its trace id."""
        r = self.redact
        stages = ans.stages
        times = [s for s, _ in stages.values()] + ([ans.response.started_at] if ans.response else [])
        start = min(times) if times else time.time()
        # Span attributes take any JSON-serialisable value (MLflow's annotation says str).
        attributes: dict[str, Any] = {
            "ragsweep.question_id": q.id,
            "ragsweep.trial": self.trial,
            "ragsweep.gold": r.deep(list(q.answers)),
            "ragsweep.answerable": q.answerable,
            "ragsweep.scores": {k: v for k, v in scores.items() if math.isfinite(v)},
        }
        root = mlflow.start_span_no_context(
            TRACE_NAME,
            span_type=SpanType.CHAIN,
            inputs={"question": r(q.question)},
            attributes=attributes,
            tags={"ragsweep.question_id": q.id, "ragsweep.trial": self.trial},
            experiment_id=self.experiment_id,
            start_time_ns=_ns(start),
        )
        end = self._stage_spans(root, q, ans, start)
        for name, v in verdicts.items():
            end = max(end, self._judge_span(root, name, v))
        root.end(outputs={"answer": r(ans.answer)}, end_time_ns=_ns(end))
        trace_id = root.trace_id
        self.trace_ids.append(trace_id)
        self._pending.append((trace_id, [(name, v) for name, v in verdicts.items() if not v.skipped]))
        return trace_id

    def _stage_spans(self, root: Any, q: Question, ans: Answer, start: float) -> float:
        """The pipeline's spans under ``root`` (transform, retrieve, rerank, prompt, generate: those it ran); returns
        when the last one ended."""
        r, stages, end = self.redact, ans.stages, start
        if "transform" in stages:
            end = max(end, self._transform_span(root, q, ans))
        if "retrieve" in stages:
            end = max(
                end,
                self._hits_span(
                    root,
                    "retrieve",
                    SpanType.RETRIEVER,
                    stages["retrieve"],
                    {"query": r(q.question), "search_texts": len(ans.search_texts) or 1, "k": len(ans.candidates)},
                    ans.candidates,
                ),
            )
        if "rerank" in stages:
            end = max(
                end,
                self._hits_span(
                    root,
                    "rerank",
                    SpanType.RERANKER,
                    stages["rerank"],
                    {"candidates": len(ans.candidates), "top_k": len(ans.hits)},
                    ans.hits,
                ),
            )
        if "prompt" in stages:
            outputs = {"messages": self._messages(ans.messages)}
            end = max(
                end,
                _stage_span(root, "prompt", SpanType.PARSER, stages["prompt"], {"contexts": len(ans.hits)}, outputs),
            )
        if ans.response is not None:
            g = self.generator
            settings = {
                "model": g.model,
                "engine": g.engine,
                "temperature": g.temperature,
                "max_tokens": g.max_tokens,
                "seed": g.seed,
            }
            end = max(end, self._call(root, "generate", ans.messages, ans.response, settings))
        return end

    def _transform_span(self, root: Any, q: Question, ans: Answer) -> float:
        """The query transformation's span (what retrieval searched with); returns when it ended."""
        r = self.redact
        return _stage_span(
            root,
            "transform",
            SpanType.LLM,
            ans.stages["transform"],
            {"question": r(q.question)},
            {"search_texts": [r(t) for t in ans.search_texts]},
            {"ragsweep.llm_calls": ans.llm_calls - 1, "ragsweep.batch_window": True},
        )

    def submit(self) -> None:
        """Hand the traces recorded since the last call to the background thread: it flushes MLflow's export
        queue once (a flush takes up to a second), then logs their feedback. Call once per shard."""
        if self._pending:
            self._jobs.append(self._pool.submit(self._log_feedback, self._pending))
            self._pending = []

    def close(self) -> None:
        """Export every trace and log every feedback; raise the first error (naming the trace) if one failed."""
        self.submit()
        self._pool.shutdown(wait=True)
        for job in self._jobs:
            job.result()

    # ---- spans ----------------------------------------------------------------------------------------

    def _messages(self, messages: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
        return [{"role": role, "content": self.redact(content)} for role, content in messages]

    def _hits_span(
        self, root: Any, name: str, kind: str, window: tuple[float, float], inputs: dict[str, Any], hits: list[Hit]
    ) -> float:
        a, b = window
        span = mlflow.start_span_no_context(name, span_type=kind, parent_span=root, inputs=inputs, start_time_ns=_ns(a))
        span.set_attributes(
            {
                "ragsweep.chunk_ids": [h.chunk.id for h in hits],
                "ragsweep.doc_ids": [h.chunk.doc_id for h in hits],
                "ragsweep.offsets": [[h.chunk.start, h.chunk.end] for h in hits],
                "ragsweep.scores": [round(h.score, 6) for h in hits],
                # The node ran once for the whole shard: its time window is the shard's.
                "ragsweep.batch_window": True,
            }
        )
        docs = [
            Document(
                page_content=self.redact(h.chunk.text),
                id=str(h.chunk.id),
                metadata={
                    "doc_uri": h.chunk.doc_id,
                    "chunk_id": h.chunk.id,
                    "start": h.chunk.start,
                    "end": h.chunk.end,
                    "score": h.score,
                },
            ).to_dict()
            for h in hits
        ]
        span.end(outputs=docs, end_time_ns=_ns(b))
        return b

    def _call(
        self, parent: Any, name: str, messages: tuple[tuple[str, str], ...], resp: ChatResponse, params: dict[str, Any]
    ) -> float:
        """A CHAT_MODEL span for one request; a cache hit is an instant span that keeps the original latency."""
        a = resp.started_at
        b = a if resp.cached else a + resp.latency_s
        span = mlflow.start_span_no_context(
            name,
            span_type=SpanType.CHAT_MODEL,
            parent_span=parent,
            inputs={"messages": self._messages(messages)},
            start_time_ns=_ns(a),
        )
        span.set_attributes(
            {
                **params,
                "prompt_tokens": resp.prompt_tokens,
                "completion_tokens": resp.completion_tokens,
                "latency_s": round(resp.latency_s, 4),
                "cached": resp.cached,
                SpanAttributeKey.CHAT_USAGE: {
                    "input_tokens": resp.prompt_tokens,
                    "output_tokens": resp.completion_tokens,
                    "total_tokens": resp.prompt_tokens + resp.completion_tokens,
                },
            }
        )
        span.end(outputs={"content": self.redact(resp.text)}, end_time_ns=_ns(b))
        return b

    def _judge_span(self, root: Any, name: str, v: JudgeResult) -> float:
        times = [
            (resp.started_at, resp.started_at + (0.0 if resp.cached else resp.latency_s)) for _, resp in v.exchanges
        ]
        a = min((s for s, _ in times), default=root.start_time_ns / 1e9)
        b = max((e for _, e in times), default=a)
        span = mlflow.start_span_no_context(
            name, span_type=SpanType.EVALUATOR, parent_span=root, inputs={"calls": v.calls}, start_time_ns=_ns(a)
        )
        span.set_attributes(
            {
                "prompt_version": self.judge_versions.get(name, ""),
                "skipped": v.skipped,
                "repaired": v.repaired,
                "model": self.judge_model,
            }
        )
        for req, resp in v.exchanges:
            self._call(span, "call", req.messages, resp, self._request_params(req))
        value = v.value if math.isfinite(v.value) else None
        span.end(outputs={"value": value, "reason": self.redact(v.reason)}, end_time_ns=_ns(b))
        return b

    def _request_params(self, req: ChatRequest) -> dict[str, Any]:
        return {
            "model": self.judge_model,
            "temperature": req.temperature,
            "max_tokens": req.max_tokens,
            "seed": req.seed if req.seed is not None else -1,
        }

    # ---- feedback -------------------------------------------------------------------------------------

    def _log_feedback(self, traces: list[tuple[str, list[tuple[str, JudgeResult]]]]) -> None:
        mlflow.flush_trace_async_logging()  # the traces must exist on the server before feedback refers to them
        source = AssessmentSource(source_type=AssessmentSourceType.LLM_JUDGE, source_id=self.judge_model)
        for trace_id, verdicts in traces:
            for name, v in verdicts:
                self._feedback(trace_id, name, v, source)

    def _feedback(self, trace_id: str, name: str, v: JudgeResult, source: AssessmentSource) -> None:
        meta = {"prompt_version": self.judge_versions.get(name, ""), "calls": str(v.calls)}
        try:
            if v.failed:
                mlflow.log_feedback(
                    trace_id=trace_id,
                    name=name,
                    source=source,
                    metadata=meta,
                    error=RuntimeError(self.redact(v.reason) or "no verdict"),
                )
            else:
                mlflow.log_feedback(
                    trace_id=trace_id,
                    name=name,
                    value=v.value,
                    source=source,
                    metadata=meta,
                    rationale=self.redact(v.reason) or None,
                )
        except Exception as e:
            raise RuntimeError(f"could not log feedback {name!r} on trace {trace_id}: {e}") from e


def _stage_span(
    root: Any,
    name: str,
    span_type: str,
    window: tuple[float, float],
    inputs: dict[str, Any],
    outputs: dict[str, Any],
    attributes: dict[str, Any] | None = None,
) -> float:
    """A pipeline stage's span under ``root`` over ``window`` (start, end in seconds); returns its end."""
    a, b = window
    span = mlflow.start_span_no_context(
        name, span_type=span_type, parent_span=root, inputs=inputs, start_time_ns=_ns(a)
    )
    if attributes:
        span.set_attributes(attributes)
    span.end(outputs=outputs, end_time_ns=_ns(b))
    return float(b)
