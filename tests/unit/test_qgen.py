"""The pure part of question generation: seeded candidate spans with exact offsets, reply parsing, filters."""

from __future__ import annotations

from itertools import islice

from ragsweep.pipelines.data import Document
from ragsweep.search.questions.qgen import Candidate, Filters, candidates, parse_question, sentences

DOCS = [
    Document(
        "a",
        "Apollo",
        "Apollo 11 landed on 20 July 1969 in the Sea of Tranquility. The crew of three "
        "returned to\nEarth safely after eight days, a line wrapped as PDF text wraps.\n\nIt ended the "
        "Space Race with the Soviet Union.",
    ),
    Document("b", "Rhine", "The Rhine is 1,230 km long and flows into the North Sea near Rotterdam."),
]


def test_sentences_end_at_punctuation_not_at_wrapped_lines() -> None:
    spans = sentences(DOCS[0].text)
    texts = [DOCS[0].text[s:e] for s, e in spans]
    assert texts[0] == "Apollo 11 landed on 20 July 1969 in the Sea of Tranquility."
    assert texts[1].startswith("The crew of three") and texts[1].endswith("as PDF text wraps.")
    assert texts[2] == "It ended the Space Race with the Soviet Union."  # a blank line ends one too


def test_candidates_are_seeded_and_their_spans_exact() -> None:
    kinds = {"factoid": 1.0, "multi_sentence": 1.0, "unanswerable": 1.0}
    first = list(islice(candidates(DOCS, kinds, seed=3), 30))
    assert first == list(islice(candidates(DOCS, kinds, seed=3), 30))
    assert first != list(islice(candidates(DOCS, kinds, seed=4), 30))
    assert [c.index for c in first] == list(range(30))
    texts = {d.id: d.text for d in DOCS}
    answers = set()
    for c in first:
        assert texts[c.doc_id][c.passage_start : c.passage_start + len(c.passage)] == c.passage
        if c.kind == "unanswerable":
            assert c.answer == "" and c.span_start == -1
        else:
            assert texts[c.doc_id][c.span_start : c.span_end] == c.answer
            assert c.passage_start <= c.span_start < c.span_end <= c.passage_start + len(c.passage)
            answers.add(c.answer)
    assert {"20 July 1969", "1,230 km"} & answers  # whole dates and numbers with units, not their pieces


def test_parse_question_unwraps_and_refuses() -> None:
    assert parse_question('What is the answer to the question "Who built it?"') == "Who built it?"
    assert parse_question("Question: When did it land? It landed in 1969.") == "When did it land?"
    assert parse_question("Sure! Here it is:\n1. How long is the Rhine?") == "How long is the Rhine?"
    assert parse_question("The Rhine is long.") is None
    assert parse_question("Why?") is None  # too short to be a question about anything


def test_filters_count_each_reason() -> None:
    c = Candidate(
        index=0,
        kind="factoid",
        doc_id="b",
        passage=DOCS[1].text,
        passage_start=0,
        span_start=13,
        span_end=21,
        answer="1,230 km",
    )
    f = Filters()
    assert f.reason_to_drop(c, None) == "malformed reply (no question)"
    assert f.reason_to_drop(c, "What is the answer to this?") == "not about its passage (no content word of it)"
    assert f.reason_to_drop(c, "Is the Rhine 1,230 km long?").startswith("answer guessable")
    assert f.reason_to_drop(c, "How long is the Rhine?") is None
    f.keep("How long is the Rhine?")
    assert f.reason_to_drop(c, "Into which sea does the Rhine flow?") is None
    assert f.reason_to_drop(c, "How long is the Rhine river?") == "near-duplicate of a kept question"  # 4/5
    assert f.check_answer(c, "about 1,230 km") is None
    assert f.check_answer(c, "Rotterdam") == "not answerable from its passage (model check)"
