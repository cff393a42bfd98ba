"""The RAG pipeline as a LangGraph graph: retrieve -> [rerank] -> generate.

Contract: :meth:`RagPipeline.answer` takes a batch of questions and returns one :class:`Answer` per
question, in order, with the contexts it used, token counts and latency. The graph is batch-first: each
node handles the whole batch (one embedding call, one concurrent LLM batch), which is what keeps
framework overhead small. Nodes are plain functions of state; models and clients live in the pipeline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from ragsweep.pipelines.llm import ChatRequest, ChatResponse, LLMClient
from ragsweep.pipelines.prompts import PromptTemplate
from ragsweep.pipelines.rerank import CrossEncoderReranker
from ragsweep.pipelines.retrieve import Hit, Retriever


def _merge(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {**a, **{k: a.get(k, 0.0) + v for k, v in b.items()}}


def _union(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    return {**a, **b}


class RagState(TypedDict, total=False):
    questions: list[str]
    candidates: list[list[Hit]]  # what retrieval returned (the reranker's input when there is one)
    hits: list[list[Hit]]
    messages: list[tuple[tuple[str, str], ...]]  # the rendered prompt per question
    responses: list[ChatResponse]
    timings: Annotated[dict[str, float], _merge]  # seconds spent per node, summed
    stages: Annotated[dict[str, tuple[float, float]], _union]  # wall-clock (start, end) of each node


@dataclass(frozen=True)
class GenerationParams:
    top_k: int
    temperature: float
    max_tokens: int
    rerank_candidates: int = 20
    seed: int = 0


@dataclass
class Answer:
    question: str
    answer: str
    hits: list[Hit]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # this question's share: its LLM request plus retrieval time split over the batch
    # For tracing: what retrieval returned before any rerank, the rendered prompt, the generator's response,
    # and the wall-clock (start, end) of each stage of the batch this question was answered in.
    candidates: list[Hit] = field(default_factory=list)
    messages: tuple[tuple[str, str], ...] = ()
    response: ChatResponse | None = None
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)


class RagPipeline:
    def __init__(
        self,
        retriever: Retriever,
        llm: LLMClient,
        prompt: PromptTemplate,
        params: GenerationParams,
        reranker: CrossEncoderReranker | None = None,
    ) -> None:
        self.retriever, self.llm, self.prompt, self.params, self.reranker = retriever, llm, prompt, params, reranker
        self.graph = self._build()

    def _build(self) -> Any:
        g = StateGraph(RagState)
        g.add_node("retrieve", self._retrieve)
        g.add_node("generate", self._generate)
        g.add_edge(START, "retrieve")
        if self.reranker is not None:
            g.add_node("rerank", self._rerank)
            g.add_edge("retrieve", "rerank")
            g.add_edge("rerank", "generate")
        else:
            g.add_edge("retrieve", "generate")
        g.add_edge("generate", END)
        return g.compile()

    def _retrieve(self, state: RagState) -> RagState:
        t0, wall0 = time.perf_counter(), time.time()
        k = max(self.params.rerank_candidates, self.params.top_k) if self.reranker else self.params.top_k
        hits = self.retriever.retrieve(state["questions"], k)
        return {"hits": hits, "candidates": hits, "timings": {"retrieve_s": time.perf_counter() - t0},
                "stages": {"retrieve": (wall0, time.time())}}

    def _rerank(self, state: RagState) -> RagState:
        assert self.reranker is not None
        t0, wall0 = time.perf_counter(), time.time()
        pairs = zip(state["questions"], state["hits"], strict=True)
        hits = [self.reranker.rerank(q, h, self.params.top_k) for q, h in pairs]
        return {"hits": hits, "timings": {"rerank_s": time.perf_counter() - t0},
                "stages": {"rerank": (wall0, time.time())}}

    def _generate(self, state: RagState) -> RagState:
        t0, wall0 = time.perf_counter(), time.time()
        messages = [self.prompt.render(q, [h.chunk.text for h in hits])
                    for q, hits in zip(state["questions"], state["hits"], strict=True)]
        wall1 = time.time()
        requests = [ChatRequest(messages=m, temperature=self.params.temperature, max_tokens=self.params.max_tokens,
                                seed=self.params.seed) for m in messages]
        responses = self.llm.complete(requests)
        return {"responses": responses, "messages": messages, "timings": {"generate_s": time.perf_counter() - t0},
                "stages": {"prompt": (wall0, wall1), "generate": (wall1, time.time())}}

    def answer(self, questions: Sequence[str]) -> tuple[list[Answer], dict[str, float]]:
        """Answer a batch; also return seconds spent per node for this batch."""
        if not questions:
            return [], {}
        out = self.graph.invoke({"questions": list(questions), "timings": {}, "stages": {}})
        timings = out["timings"]
        pre = (timings.get("retrieve_s", 0.0) + timings.get("rerank_s", 0.0)) / len(questions)
        answers = [
            Answer(q, r.text.strip(), hits, r.prompt_tokens, r.completion_tokens, r.latency_s + pre,
                   candidates=cands, messages=m, response=r, stages=dict(out["stages"]))
            for q, hits, cands, m, r in zip(questions, out["hits"], out["candidates"], out["messages"],
                                            out["responses"], strict=True)
        ]
        return answers, dict(timings)


__all__ = ["Answer", "GenerationParams", "RagPipeline", "RagState"]
