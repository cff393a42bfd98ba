"""Where the headroom is: the answers a generator and prompt give with the gold passage as the only context.

Contract: :func:`gold_passage` is the context an ideal retriever would send for a question: the paragraph of a
gold document that holds its answer span (cut to ``max_chars`` around the span), else the start of its first gold
document; None for a question without gold (unanswerable). :func:`oracle_rows` answers such questions with one
generator and prompt (temperature 0, the trial's settings, through the request cache) and scores them as a trial
does. :func:`headroom` compares the winner with that ceiling and with the best retrieval the screen found, and says
in plain words which part limits the pipeline.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ragsweep.judges.intervals import PairedDifference, Scores, paired_difference
from ragsweep.judges.retrieval import ChunkRef
from ragsweep.judges.scoring import score_answer
from ragsweep.pipelines.data import Document, Question
from ragsweep.pipelines.llm_client.client import ChatRequest
from ragsweep.pipelines.prompts import PromptTemplate

MAX_CHARS = 800  # about one retrieved chunk: the answer's paragraph, or a window of it around the answer


def gold_passage(
    q: Question, corpus: Mapping[str, Document], max_chars: int = MAX_CHARS
) -> tuple[str, ChunkRef] | None:
    """The gold context of ``q`` and where it lies in its document."""
    if q.answer_spans:
        span = q.answer_spans[0]
        text = corpus[span.doc_id].text
        start = text.rfind("\n\n", 0, span.start)
        start = 0 if start < 0 else start + 2
        end = text.find("\n\n", span.end)
        end = len(text) if end < 0 else end
        if end - start > max_chars:  # a long paragraph: a window centred on the answer
            mid = (span.start + span.end) // 2
            start = max(start, min(mid - max_chars // 2, end - max_chars))
            end = min(end, start + max_chars)
        return text[start:end], ChunkRef(span.doc_id, start, end)
    if q.gold_doc_ids:
        doc = corpus[q.gold_doc_ids[0]]
        return doc.text[:max_chars], ChunkRef(doc.id, 0, min(len(doc.text), max_chars))
    return None


def oracle_rows(
    client: Any,
    prompt: PromptTemplate,
    questions: Sequence[Question],
    corpus: Mapping[str, Document],
    temperature: float,
    max_tokens: int,
    seed: int,
) -> dict[str, dict[str, float]]:
    """Question id -> deterministic scores of the answer given the gold passage, for questions with gold."""
    asked = [(q, g) for q in questions if (g := gold_passage(q, corpus)) is not None]
    requests = [
        ChatRequest(
            messages=prompt.render(q.question, [text]), temperature=temperature, max_tokens=max_tokens, seed=seed
        )
        for q, (text, _) in asked
    ]
    replies = client.complete(requests)
    return {q.id: score_answer(q, r.text.strip(), [ref]) for (q, (_, ref)), r in zip(asked, replies, strict=True)}


@dataclass(kw_only=True, frozen=True)
class Headroom:
    """The winner against the oracle-retrieval ceiling (same generator and prompt, same questions)."""

    oracle: float  # objective with the gold passage as context
    winner: float  # the winner's objective on the same questions
    gap: PairedDifference  # oracle minus winner
    recall: float  # the winner's recall of the context sent, on every search question
    best_recall: float  # the best the screen found
    best_recall_label: str

    def lines(self, generator: str) -> list[str]:
        g = self.gap
        out = [
            f"headroom: retrieval recall {self.recall:.3f} vs {self.best_recall:.3f} for the best retrieval "
            f"found ({self.best_recall_label}); answers {self.winner:.4f} vs {self.oracle:.4f} with the gold "
            f"passage as the only context (oracle retrieval; {g.mean:+.4f} on {g.n} questions, "
            f"{g.confidence:.0%} CI [{g.low:+.4f}, {g.high:+.4f}])"
        ]
        if g.verdict != "better":
            out.append(
                f"  the generator limits this pipeline: perfect retrieval would not measurably improve its "
                f"answers; a stronger generator ({generator} now) or a better prompt is the lever"
            )
        elif self.oracle < 0.5:
            out.append(
                f"  both limit it: perfect retrieval would add {g.mean:+.4f}, yet even then the generator "
                f"({generator}) scores only {self.oracle:.3f}; a stronger generator is the bigger lever"
            )
        else:
            out.append(
                f"  retrieval limits this pipeline: the gold passage would add {g.mean:+.4f}; search "
                "retrieval keys (chunking, embedder, top_k, reranker) further"
            )
        return out


def headroom(
    oracle: Mapping[str, Scores],
    winner: Mapping[str, Scores],
    weights: dict[str, float],
    recall: float,
    best_recall: float,
    best_label: str,
    confidence: float,
    samples: int,
    seed: int,
) -> Headroom | None:
    """``oracle`` and ``winner``: question id -> scores; compared on the questions both have."""
    shared = set(oracle) & set(winner)
    if len(shared) < 2:
        return None
    gap = paired_difference(
        {q: oracle[q] for q in shared}, {q: winner[q] for q in shared}, weights, confidence, samples, seed
    )
    return Headroom(
        oracle=gap.a_objective,
        winner=gap.b_objective,
        gap=gap,
        recall=recall if math.isfinite(recall) else math.nan,
        best_recall=best_recall,
        best_recall_label=best_label,
    )


Pair = tuple[str | None, str]  # (generator name or None for llm.generator, prompt name)


def oracle_answers(
    cfg: Any, ctx: Any, trials: Sequence[Any], question_ids: Sequence[str], say: Any = None
) -> dict[Pair, dict[str, float]]:
    """Per distinct (generator, prompt) of ``trials``: question id -> objective of the gold-passage answer, on
    ``question_ids`` (the search questions). Empty when ``search.oracle`` is off; a failure is said, not raised:
    the ceiling informs the user and decides nothing."""
    from ragsweep.judges.scoring import objective
    from ragsweep.search.answering import request_cache
    from ragsweep.search.assemble import prompt_for
    from ragsweep.search.space import TrialParams

    if not cfg.search.oracle or not trials:
        return {}
    by_id = {q.id: q for q in ctx.dataset.questions}
    questions = [by_id[i] for i in question_ids]
    cache = request_cache(ctx)
    out: dict[Pair, dict[str, float]] = {}
    for t in trials:
        params = TrialParams.from_sampled(t.params)
        pair = (params.generator, params.prompt)
        if pair in out:
            continue
        try:
            client = ctx.endpoints.generator_for(params.generator).resolved().client(cache)
            gen = cfg.llm.generator_for(params.generator)
            rows = oracle_rows(
                client,
                prompt_for(params, cfg.pipeline),
                questions,
                ctx.dataset.corpus,
                params.temperature,
                gen.max_tokens or cfg.pipeline.max_tokens,
                cfg.search.seed,
            )
        except Exception as e:  # noqa: BLE001 - the ceiling is information; the search's outcome stands without it
            if say is not None:
                say(f"oracle ceiling for prompt {params.prompt!r} not measured: {type(e).__name__}: {e}")
            continue
        out[pair] = {q: objective(s, cfg.objective.weights) for q, s in rows.items()}
        if say is not None:
            say(
                f"oracle ceiling (gold passage as the only context) for prompt {params.prompt!r}: "
                f"{sum(out[pair].values()) / max(1, len(out[pair])):.4f} on {len(out[pair])} search questions"
            )
    return out
