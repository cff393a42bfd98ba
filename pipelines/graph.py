"""The RAG pipeline as a LangGraph graph: [transform] -> retrieve -> [rerank] -> generate.

Contract: :meth:`RagPipeline.answer` takes a batch of questions and returns one :class:`Answer` per
question, in order, with the contexts it used, token counts and latency. The graph is batch-first: each
node handles the whole batch (one embedding call, one concurrent LLM batch), which is what keeps
framework overhead small. Nodes are plain functions of state; models and clients live in the pipeline.
The transform node (a query transformation other than ``none``) asks the generator what to search with; its
calls and tokens count in the answer's cost. The generate node keeps the ranked hits that fit the context budget
and renders them in the context order; :attr:`Answer.hits` are the kept hits, best first.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict

from langgraph.graph import END, START, StateGraph

from ragsweep.pipelines.context import ORDERS, fit_budget
from ragsweep.pipelines.llm_client.client import ChatRequest, ChatResponse, LLMClient
from ragsweep.pipelines.prompts import PromptTemplate
from ragsweep.pipelines.rerank import CrossEncoderReranker
from ragsweep.pipelines.retrieve import Hit, Retriever
from ragsweep.pipelines.transforms import TRANSFORMS, TransformCost, TransformSettings


def _merge(a: dict[str, float], b: dict[str, float]) -> dict[str, float]:
    return {**a, **{k: a.get(k, 0.0) + v for k, v in b.items()}}


def _union(a: dict[str, tuple[float, float]], b: dict[str, tuple[float, float]]) -> dict[str, tuple[float, float]]:
    return {**a, **b}


class RagState(TypedDict, total=False):
    questions: list[str]
    search_texts: list[list[str]]  # what retrieval searches with, per question (the transform's output)
    transform_costs: list[TransformCost]
    candidates: list[list[Hit]]  # what retrieval returned (the reranker's input when there is one)
    hits: list[list[Hit]]
    messages: list[tuple[tuple[str, str], ...]]  # the rendered prompt per question
    responses: list[ChatResponse]
    timings: Annotated[dict[str, float], _merge]  # seconds spent per node, summed
    stages: Annotated[dict[str, tuple[float, float]], _union]  # wall-clock (start, end) of each node


@dataclass(kw_only=True, frozen=True)
class GenerationParams:
    top_k: int
    temperature: float
    max_tokens: int
    rerank_candidates: int = 20
    seed: int = 0
    query_transform: str = "none"
    context_order: str = "retrieved"
    context_budget: int = 0  # estimated tokens of context; 0 = every retrieved chunk
    multi_query_n: int = 3


@dataclass(kw_only=True)
class Answer:
    question: str
    answer: str
    hits: list[Hit]
    prompt_tokens: int
    completion_tokens: int
    latency_s: float  # this question's share: its LLM requests plus retrieval time split over the batch
    # For tracing: what retrieval returned before any rerank, the rendered prompt, the generator's response,
    # and the wall-clock (start, end) of each stage of the batch this question was answered in.
    candidates: list[Hit] = field(default_factory=list)
    messages: tuple[tuple[str, str], ...] = ()
    response: ChatResponse | None = None
    stages: dict[str, tuple[float, float]] = field(default_factory=dict)
    search_texts: list[str] = field(default_factory=list)  # what retrieval searched with
    llm_calls: int = 1  # generator calls for this answer (transform calls + 1)


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
        if self.params.query_transform != "none":
            g.add_node("transform", self._transform)
            g.add_edge(START, "transform")
            g.add_edge("transform", "retrieve")
        else:
            g.add_edge(START, "retrieve")
        if self.reranker is not None:
            g.add_node("rerank", self._rerank)
            g.add_edge("retrieve", "rerank")
            g.add_edge("rerank", "generate")
        else:
            g.add_edge("retrieve", "generate")
        g.add_edge("generate", END)
        return g.compile()

    def _transform(self, state: RagState) -> RagState:
        t0, wall0 = time.perf_counter(), time.time()
        p = self.params
        texts, costs = TRANSFORMS.get(p.query_transform)(
            state["questions"], self.llm, TransformSettings(seed=p.seed, multi_query_n=p.multi_query_n)
        )
        return {
            "search_texts": texts,
            "transform_costs": costs,
            "timings": {"transform_s": time.perf_counter() - t0},
            "stages": {"transform": (wall0, time.time())},
        }

    def _retrieve(self, state: RagState) -> RagState:
        t0, wall0 = time.perf_counter(), time.time()
        k = max(self.params.rerank_candidates, self.params.top_k) if self.reranker else self.params.top_k
        hits = self.retriever.retrieve(state["questions"], k, state.get("search_texts"))
        return {
            "hits": hits,
            "candidates": hits,
            "timings": {"retrieve_s": time.perf_counter() - t0},
            "stages": {"retrieve": (wall0, time.time())},
        }

    def _rerank(self, state: RagState) -> RagState:
        assert self.reranker is not None
        t0, wall0 = time.perf_counter(), time.time()
        pairs = zip(state["questions"], state["hits"], strict=True)
        hits = [self.reranker.rerank(q, h, self.params.top_k) for q, h in pairs]
        return {
            "hits": hits,
            "timings": {"rerank_s": time.perf_counter() - t0},
            "stages": {"rerank": (wall0, time.time())},
        }

    def _generate(self, state: RagState) -> RagState:
        t0, wall0 = time.perf_counter(), time.time()
        order = ORDERS.get(self.params.context_order)
        kept = [hits[: fit_budget([h.chunk.text for h in hits], self.params.context_budget)] for hits in state["hits"]]
        messages = [
            self.prompt.render(q, [h.chunk.text for h in order(hits)])
            for q, hits in zip(state["questions"], kept, strict=True)
        ]
        wall1 = time.time()
        requests = [
            ChatRequest(
                messages=m,
                temperature=self.params.temperature,
                max_tokens=self.params.max_tokens,
                seed=self.params.seed,
            )
            for m in messages
        ]
        responses = self.llm.complete(requests)
        return {
            "hits": kept,
            "responses": responses,
            "messages": messages,
            "timings": {"generate_s": time.perf_counter() - t0},
            "stages": {"prompt": (wall0, wall1), "generate": (wall1, time.time())},
        }

    def answer(self, questions: Sequence[str]) -> tuple[list[Answer], dict[str, float]]:
        """Answer a batch; also return seconds spent per node for this batch."""
        if not questions:
            return [], {}
        out = self.graph.invoke({"questions": list(questions), "timings": {}, "stages": {}})
        timings = out["timings"]
        pre = (timings.get("retrieve_s", 0.0) + timings.get("rerank_s", 0.0)) / len(questions)
        costs = out.get("transform_costs") or [TransformCost() for _ in questions]
        texts = out.get("search_texts") or [[q] for q in questions]
        answers = [
            Answer(
                question=q,
                answer=r.text.strip(),
                hits=hits,
                prompt_tokens=r.prompt_tokens + c.prompt_tokens,
                completion_tokens=r.completion_tokens + c.completion_tokens,
                latency_s=r.latency_s + c.seconds + pre,
                candidates=cands,
                messages=m,
                response=r,
                stages=dict(out["stages"]),
                search_texts=list(st),
                llm_calls=1 + c.calls,
            )
            for q, hits, cands, m, r, c, st in zip(
                questions, out["hits"], out["candidates"], out["messages"], out["responses"], costs, texts, strict=True
            )
        ]
        return answers, dict(timings)


__all__ = ["Answer", "GenerationParams", "RagPipeline", "RagState"]
