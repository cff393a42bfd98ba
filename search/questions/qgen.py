"""Synthetic questions, span first: the pure part of `ragsweep generate-questions` (no servers here).

Contract:
- :func:`candidates` yields, for a seed, the same endless sequence of :class:`Candidate` over a corpus: a passage
  (one sentence, or two adjacent ones for ``multi_sentence``) and, for answerable kinds, an answer span inside
  it, a number, a date or a name, with its character offsets in the document. The span is chosen *before* any
  question exists, so ``answer_spans`` are exact by construction.
- :func:`prompt_for` is the request that asks a model for a question that the span answers (or, for
  ``unanswerable``, a question on the passage's topic that it does not answer); :func:`parse_question` takes
  the question out of the model's reply, or None.
- :class:`Filters` decides what is kept, and counts every reason for dropping: a malformed reply, an answer that
  is guessable from the question (lexical overlap above ``max_overlap``), a near-duplicate of a kept question
  (token Jaccard at least ``max_similarity``), and, when asked, an answer the model cannot find in the passage.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from ragsweep.judges.lexical import normalize, token_f1
from ragsweep.pipelines.data import Document
from ragsweep.pipelines.llm_client.chat import ChatRequest

KINDS = ("factoid", "multi_sentence", "unanswerable")
PROMPT_VERSION = "qgen-v1"
BOUNDARY = re.compile(r"(?<=[.!?])[\"\u201d)]?\s+(?=[A-Z0-9\"\u201c(])|\n\s*\n")
# Answer spans a question can ask for: numbers (with their unit or era), dates, and capitalised names that do
# not start the sentence. Longest first, so "12 May 1969" wins over "1969".
SPAN_PATTERNS = (
    re.compile(
        r"\b\d{1,2} (?:January|February|March|April|May|June|July|August|September|October|November|"
        r"December) \d{3,4}\b"
    ),
    re.compile(
        r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)"
        r" \d{1,2}, \d{3,4}\b"
    ),
    re.compile(
        r"\b\d[\d,.]*(?: ?(?:%|percent|per cent|million|billion|thousand|km|miles|kg|tons|tonnes|"
        r"years|meters|metres|feet|degrees))?\b"
    ),
    re.compile(r"(?<=[a-z,;:] )(?:[A-Z][\w'-]+(?: (?:of|the|de|von|van|and|for) | ))*[A-Z][\w'-]+"),
)
MIN_SENTENCE_CHARS = 40
# Small models wrap their question in another one ("What is the answer to the question: Who ...?"): unwrap it.
WRAPPER = re.compile(
    r"^(?:what is the answer to (?:the|this) question|the question is|question)\s*[:,]?\s*[\"\u201c']?", re.I
)
STOPWORDS = frozenset(
    """what which who whom whose when where why how is are was were be been being do does did
the a an of in on at to for from by with and or not this that these those it its as into about than then there
their they them he she his her has have had will would can could should may might one ones answer question text
following sentence""".split()
)


@dataclass(kw_only=True, frozen=True)
class Candidate:
    index: int  # position in the seeded sequence: what resuming skips past
    kind: str
    doc_id: str
    passage: str
    passage_start: int
    span_start: int = -1  # offsets in the document's text; -1 for unanswerable
    span_end: int = -1
    answer: str = ""


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) of each sentence of ``text`` with at least MIN_SENTENCE_CHARS characters, stripped. A sentence
    ends at . ! or ? before white space and a capital, digit or quote, or at a blank line (a single line break,
    as PDF text wraps, does not end one)."""
    out = []
    start = 0
    for m in [*BOUNDARY.finditer(text), None]:
        end = m.start() if m is not None else len(text)
        s, e = start, end
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if e - s >= MIN_SENTENCE_CHARS:
            out.append((s, e))
        if m is not None:
            start = m.end()
    return out


def spans_in(text: str, start: int, end: int) -> list[tuple[int, int]]:
    """Answer span candidates inside text[start:end], as document offsets, longest pattern first."""
    found: list[tuple[int, int]] = []
    for pattern in SPAN_PATTERNS:
        for m in pattern.finditer(text, start, end):
            s, e = m.start(), m.end()
            if e - s >= 2 and not any(s < fe and fs < e for fs, fe in found):
                found.append((s, e))
    return found


def candidates(docs: list[Document], kinds: dict[str, float], seed: int) -> Iterator[Candidate]:
    """The seeded sequence of candidates (see the module docstring); ``kinds`` maps a kind to its weight."""
    rng = random.Random(f"qgen-{seed}")
    names = [k for k in kinds if kinds[k] > 0]
    weights = [kinds[k] for k in names]
    per_doc = {d.id: sentences(d.text) for d in docs}
    usable = [d for d in docs if per_doc[d.id]]
    if not usable or not names:
        return
    index = 0
    misses = 0
    while misses < 1000:  # a corpus with no span left to ask about ends the sequence
        kind = rng.choices(names, weights)[0]
        doc = rng.choice(usable)
        sents = per_doc[doc.id]
        i = rng.randrange(len(sents))
        if kind == "multi_sentence" and len(sents) > 1:
            i = min(i, len(sents) - 2)
            p_start, p_end = sents[i][0], sents[i + 1][1]
            span_from = sents[i + 1]  # the answer is in the second sentence; the question needs the first
        else:
            p_start, p_end = sents[i]
            span_from = sents[i]
        passage = doc.text[p_start:p_end]
        if kind == "unanswerable":
            yield Candidate(index=index, kind=kind, doc_id=doc.id, passage=passage, passage_start=p_start)
        else:
            spans = spans_in(doc.text, *span_from)
            if not spans:
                misses += 1
                continue
            s, e = rng.choice(spans)
            yield Candidate(
                index=index,
                kind=kind,
                doc_id=doc.id,
                passage=passage,
                passage_start=p_start,
                span_start=s,
                span_end=e,
                answer=doc.text[s:e],
            )
        misses = 0
        index += 1


def prompt_for(c: Candidate, title: str, seed: int, max_tokens: int = 48) -> ChatRequest:
    system = "You write exam questions about a text. Reply with the question only, on one line."
    if c.kind == "unanswerable":
        user = (
            f"Topic: {title}\nText: {c.passage}\n\nWrite one question about {title} that this text does NOT "
            "answer (ask about a detail it never mentions).\nQuestion:"
        )
    else:
        need = " It must need both sentences." if c.kind == "multi_sentence" else ""
        user = (
            f"Text: {c.passage}\nAnswer: {c.answer}\n\nWrite one question about the text whose answer is "
            f'exactly "{c.answer}". Do not put the answer in the question.{need}\nQuestion:'
        )
    return ChatRequest((("system", system), ("user", user)), temperature=0.0, max_tokens=max_tokens, seed=seed)


def parse_question(reply: str) -> str | None:
    """The first line of ``reply`` that ends with '?', cleaned of labels and quotes; None if there is none."""
    for line in reply.strip().splitlines():
        q = re.sub(r"^\s*(?:\d+[.)]\s*|[-*]\s*|(?:question|q)\s*[:.-]\s*)", "", line.strip(), flags=re.I)
        q = WRAPPER.sub("", q.strip()).strip().strip("\"\u201c\u201d'").strip()
        if "?" in q:
            q = q[: q.index("?") + 1].strip()
            if 3 <= len(q.split()) <= 40:
                return q
    return None


def answerable_request(question: str, passage: str, seed: int) -> ChatRequest:
    """Ask the model to answer ``question`` from ``passage`` alone (the answerability check)."""
    return ChatRequest(
        (
            ("system", "Answer from the text only, in a few words."),
            ("user", f"Text: {passage}\nQuestion: {question}\nAnswer:"),
        ),
        temperature=0.0,
        max_tokens=24,
        seed=seed,
    )


@dataclass
class Filters:
    """What is kept; ``dropped`` counts each reason."""

    max_overlap: float = 0.5
    max_similarity: float = 0.8
    min_answer_f1: float = 0.5
    kept_tokens: list[set[str]] = field(default_factory=list)
    dropped: Counter[str] = field(default_factory=Counter)

    def reason_to_drop(self, c: Candidate, question: str | None) -> str | None:
        if question is None:
            return "malformed reply (no question)"
        q_tokens = set(normalize(question).split())
        content = {t for t in normalize(c.passage).split() if t not in STOPWORDS and len(t) > 2}
        if c.kind != "unanswerable":
            content -= set(normalize(c.answer).split())
        if not q_tokens & content:
            return "not about its passage (no content word of it)"
        if c.kind != "unanswerable":
            a_tokens = normalize(c.answer).split()
            if a_tokens and sum(t in q_tokens for t in a_tokens) / len(a_tokens) > self.max_overlap:
                return "answer guessable from the question (lexical overlap)"
        for kept in self.kept_tokens:
            union = q_tokens | kept
            if union and len(q_tokens & kept) / len(union) >= self.max_similarity:
                return "near-duplicate of a kept question"
        return None

    def check_answer(self, c: Candidate, model_answer: str) -> str | None:
        if token_f1(model_answer, [c.answer]) < self.min_answer_f1:
            return "not answerable from its passage (model check)"
        return None

    def keep(self, question: str) -> None:
        self.kept_tokens.append(set(normalize(question).split()))

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1


def question_row(c: Candidate, question: str, number: int, meta: dict[str, Any]) -> dict[str, Any]:
    """One line of questions.jsonl (ragsweep's dataset layout) for a kept candidate."""
    answerable = c.kind != "unanswerable"
    row: dict[str, Any] = {
        "id": f"gen-{number:05d}",
        "question": question,
        "answers": [c.answer] if answerable else [],
        "answerable": answerable,
        "gold_doc_ids": [c.doc_id] if answerable else [],
    }
    if answerable:
        row["answer_spans"] = [{"doc_id": c.doc_id, "start": c.span_start, "end": c.span_end, "text": c.answer}]
    row["generated"] = {
        "kind": c.kind,
        "candidate": c.index,
        "passage_start": c.passage_start,
        "passage_end": c.passage_start + len(c.passage),
        "source_doc": c.doc_id,
        **meta,
    }
    return row
