from __future__ import annotations

import math

import pytest

from judges.lexical import contains, exact_match, normalize, token_f1
from judges.llm_judge import parse_verdict
from judges.retrieval import ChunkRef, is_gold, mrr, recall_at_k
from judges.scoring import aggregate, objective
from pipelines.data import AnswerSpan, Question


def test_normalize_handles_unicode_articles_and_punctuation() -> None:
    assert normalize("  The Café,  “Déjà” vu! ") == "café déjà vu"
    assert normalize("ＡＢＣ") == "abc"  # NFKC folds full-width letters


def test_exact_match_and_f1_take_best_gold() -> None:
    assert exact_match("the Denver Broncos", ["Broncos", "Denver Broncos"]) == 1.0
    assert token_f1("Denver Broncos won", ["Denver Broncos"]) == pytest.approx(0.8)
    assert token_f1("", ["x"]) == 0.0
    assert token_f1("anything", []) != token_f1("anything", [])  # NaN: undefined without gold


def test_contains_is_word_bounded() -> None:
    assert contains("It was 38 years old.", ["38 years"]) == 1.0
    assert contains("It was 138 years old.", ["38 years"]) == 0.0


Q = Question("q", "?", ("x",), True, ("d1",), (AnswerSpan("d1", 100, 110),))
Q_DOC = Question("q", "?", ("x",), True, ("d2",), ())
Q_NONE = Question("q", "?", (), False, (), ())


def test_span_gold_is_overlap() -> None:
    assert is_gold(ChunkRef("d1", 90, 101), Q)
    assert is_gold(ChunkRef("d1", 109, 200), Q)
    assert not is_gold(ChunkRef("d1", 110, 200), Q)  # end is exclusive
    assert not is_gold(ChunkRef("d2", 100, 110), Q)


def test_recall_and_mrr_with_spans_and_doc_fallback() -> None:
    ranked = [ChunkRef("d2", 0, 50), ChunkRef("d1", 0, 50), ChunkRef("d1", 95, 150)]
    assert recall_at_k(ranked, Q) == 1.0 and mrr(ranked, Q) == pytest.approx(1 / 3)
    assert recall_at_k(ranked[:2], Q) == 0.0 and mrr(ranked[:2], Q) == 0.0
    assert recall_at_k(ranked, Q_DOC) == 1.0 and mrr(ranked, Q_DOC) == 1.0
    assert math.isnan(recall_at_k(ranked, Q_NONE)) and math.isnan(mrr(ranked, Q_NONE))


def test_aggregate_skips_nan_and_counts_it() -> None:
    means = aggregate([{"a": 1.0}, {"a": math.nan}, {"a": 0.0}], ["a", "b"])
    assert means["a"] == 0.5 and means["a_nan"] == 1.0 and math.isnan(means["b"])


def test_objective_is_always_finite() -> None:
    assert objective({"a": 0.5, "b": math.nan}, {"a": 2.0, "b": 1.0}) == 1.0
    assert objective({}, {"a": 1.0}) == 0.0


@pytest.mark.parametrize(
    ("text", "value"),
    [('{"correct": true}', 1.0), ('{"correct": false}', 0.0), ("yes", math.nan), ('{"correct": "yes"}', math.nan)],
)
def test_parse_verdict_never_turns_garbage_into_zero(text: str, value: float) -> None:
    got, reason = parse_verdict(text)
    assert (math.isnan(got) and reason) if math.isnan(value) else (got == value and not reason)


def test_request_cache_key_ignores_endpoint_and_reflects_content(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from pipelines.llm import ChatRequest, ChatResponse
    from pipelines.llm_cache import RequestCache, cacheable, request_key

    req = ChatRequest((("user", "q"),), temperature=0.0, max_tokens=8)
    assert request_key("m", req) == request_key("m", ChatRequest((("user", "q"),), temperature=0.0, max_tokens=8))
    for other in (ChatRequest((("user", "q2"),)), ChatRequest((("user", "q"),), max_tokens=9),
                  ChatRequest((("user", "q"),), max_tokens=8, json_schema={"type": "object"})):
        assert request_key("m", other) != request_key("m", req)
    assert request_key("m2", req) != request_key("m", req)
    assert cacheable(req) and not cacheable(ChatRequest((("user", "q"),), temperature=0.7))
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put("k", ChatResponse("answer", 3, 2, 0.5))
    again = RequestCache(tmp_path / "c.sqlite")  # another process would open it the same way
    hit = again.get("k")
    assert hit is not None and hit.cached and (hit.text, hit.prompt_tokens, hit.latency_s) == ("answer", 3, 0.5)
    assert again.get("missing") is None and len(again) == 1


def test_merge_intervals_counts_overlap_once() -> None:
    from pipelines.llm import ClientStats, merge_intervals

    assert merge_intervals([(5, 6), (0, 2), (1, 3), (3, 4)]) == [(0, 4), (5, 6)]
    stats = ClientStats(intervals=[(0.0, 2.0), (1.0, 3.0), (10.0, 11.0)])
    assert stats.busy_s == 4.0 and stats.as_metrics("g")["g_busy_s"] == 4.0


def test_cost_terms_are_objective_metrics() -> None:
    from search.config import Objective

    o = Objective(weights={"token_f1": 1.0, "latency_p95_s": -0.05, "tokens_per_question": -0.001})
    assert objective({"token_f1": 0.5, "latency_p95_s": 2.0, "tokens_per_question": 100.0}, o.weights) == (
        pytest.approx(0.5 - 0.1 - 0.1))
