"""Query transformations: what a question is searched with, decided by the generator before retrieval.

Contract: a transform maps a batch of questions to, per question, the texts retrieval searches with (their
hits are fused by :class:`~ragsweep.pipelines.retrieve.Fusion`) and what that cost (:class:`TransformCost`).
Its LLM calls go through the trial's generator client, so they hit the same server, the same request cache
(temperature 0, seeded) and are metered as generator tokens. A reply that yields nothing usable falls back to
the question itself, so a transform never leaves a question with nothing to search.

- ``none``: the question (no LLM call).
- ``hyde``: the question and a hypothetical answer passage the generator writes (HyDE, Gao et al. 2022).
- ``multi_query``: the question and up to ``n`` paraphrases, one LLM call for all of them.
- ``rewrite``: one clarified search query in place of the question.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from ragsweep.pipelines.base.registry import Registry
from ragsweep.pipelines.llm_client.chat import ChatClient, ChatRequest, ChatResponse


@dataclass(frozen=True)
class TransformSettings:
    seed: int = 0
    multi_query_n: int = 3  # paraphrases asked for by multi_query
    max_tokens: int = 96  # per transform call


@dataclass(frozen=True)
class TransformCost:
    calls: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0  # the LLM's own time for this question's calls


SearchTexts = list[list[str]]
Transform = Callable[[Sequence[str], ChatClient, TransformSettings], tuple[SearchTexts, list[TransformCost]]]
TRANSFORMS: Registry[Transform] = Registry("query transformation")

_HYDE = (
    "You write short encyclopedia passages.",
    "Write one short passage (two or three sentences) that answers the question.\nQuestion: {question}\nPassage:",
)
_MULTI = (
    "You rephrase search queries.",
    "Write {n} different rephrasings of the question below, one per line, without numbering or any other "
    "text.\nQuestion: {question}",
)
_REWRITE = (
    "You turn questions into search queries.",
    "Rewrite the question as one clear, self-contained search query. Reply with the query only.\nQuestion: {question}",
)


def _ask(
    questions: Sequence[str], llm: ChatClient, settings: TransformSettings, prompt: tuple[str, str], **fields: object
) -> tuple[list[str], list[TransformCost]]:
    system, user = prompt
    requests = [
        ChatRequest(
            messages=(("system", system), ("user", user.format(question=q, **fields))),
            temperature=0.0,
            max_tokens=settings.max_tokens,
            seed=settings.seed,
        )
        for q in questions
    ]
    responses: list[ChatResponse] = llm.complete(requests)
    return (
        [r.text.strip() for r in responses],
        [TransformCost(1, r.prompt_tokens, r.completion_tokens, r.latency_s) for r in responses],
    )


@TRANSFORMS.register("none", "search with the question as asked (no LLM call)", llm_calls=0)
def _none(
    questions: Sequence[str], llm: ChatClient, settings: TransformSettings
) -> tuple[SearchTexts, list[TransformCost]]:
    return [[q] for q in questions], [TransformCost() for _ in questions]


@TRANSFORMS.register(
    "hyde", "search with the question and a hypothetical answer passage the generator writes (HyDE), fused", llm_calls=1
)
def _hyde(
    questions: Sequence[str], llm: ChatClient, settings: TransformSettings
) -> tuple[SearchTexts, list[TransformCost]]:
    passages, cost = _ask(questions, llm, settings, _HYDE)
    return [[q, p] if p else [q] for q, p in zip(questions, passages, strict=True)], cost


_NUMBERING = re.compile(r"^\s*(?:[-*•]|\d+[.)]|\(\d+\))\s*")


def paraphrases(reply: str, question: str, n: int) -> list[str]:
    """Up to ``n`` distinct non-empty lines of ``reply`` (list markers removed), none equal to ``question``."""
    seen = {question.strip().lower()}
    out: list[str] = []
    for line in reply.splitlines():
        text = _NUMBERING.sub("", line).strip().strip('"').strip()
        if text and text.lower() not in seen:
            seen.add(text.lower())
            out.append(text)
        if len(out) == n:
            break
    return out


@TRANSFORMS.register(
    "multi_query",
    "search with the question and up to pipeline.multi_query_n paraphrases (one LLM call), all fused",
    llm_calls=1,
)
def _multi_query(
    questions: Sequence[str], llm: ChatClient, settings: TransformSettings
) -> tuple[SearchTexts, list[TransformCost]]:
    replies, cost = _ask(questions, llm, settings, _MULTI, n=settings.multi_query_n)
    return [[q, *paraphrases(r, q, settings.multi_query_n)] for q, r in zip(questions, replies, strict=True)], cost


@TRANSFORMS.register("rewrite", "search with one clarified query the generator rewrites the question into", llm_calls=1)
def _rewrite(
    questions: Sequence[str], llm: ChatClient, settings: TransformSettings
) -> tuple[SearchTexts, list[TransformCost]]:
    replies, cost = _ask(questions, llm, settings, _REWRITE)
    firsts = [next((line.strip().strip('"') for line in r.splitlines() if line.strip()), "") for r in replies]
    return [[f or q] for q, f in zip(questions, firsts, strict=True)], cost


__all__ = ["TRANSFORMS", "SearchTexts", "TransformCost", "TransformSettings", "paraphrases"]
