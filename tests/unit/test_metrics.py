from __future__ import annotations

import math

import pytest

from ragsweep.judges.lexical import contains, exact_match, normalize, token_f1
from ragsweep.judges.retrieval import ChunkRef, is_gold, mrr, recall_at_k
from ragsweep.judges.scoring import aggregate, objective
from ragsweep.pipelines.data import AnswerSpan, Question


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


Q = Question(
    id="q",
    question="?",
    answers=("x",),
    answerable=True,
    gold_doc_ids=("d1",),
    answer_spans=(AnswerSpan("d1", 100, 110),),
)
Q_DOC = Question(id="q", question="?", answers=("x",), answerable=True, gold_doc_ids=("d2",), answer_spans=())
Q_NONE = Question(id="q", question="?", answers=(), answerable=False, gold_doc_ids=(), answer_spans=())


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


def test_request_cache_key_ignores_endpoint_and_reflects_content(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragsweep.pipelines.llm_client.cache import RequestCache, cacheable, request_key
    from ragsweep.pipelines.llm_client.client import ChatRequest, ChatResponse

    req = ChatRequest((("user", "q"),), temperature=0.0, max_tokens=8)
    assert request_key("m", req) == request_key("m", ChatRequest((("user", "q"),), temperature=0.0, max_tokens=8))
    for other in (
        ChatRequest((("user", "q2"),)),
        ChatRequest((("user", "q"),), max_tokens=9),
        ChatRequest((("user", "q"),), max_tokens=8, json_schema={"type": "object"}),
    ):
        assert request_key("m", other) != request_key("m", req)
    assert request_key("m2", req) != request_key("m", req)
    assert cacheable(req) and not cacheable(ChatRequest((("user", "q"),), temperature=0.7))
    cache = RequestCache(tmp_path / "c.sqlite")
    cache.put("k", ChatResponse(text="answer", prompt_tokens=3, completion_tokens=2, latency_s=0.5))
    again = RequestCache(tmp_path / "c.sqlite")  # another process would open it the same way
    hit = again.get("k")
    assert hit is not None and hit.cached and (hit.text, hit.prompt_tokens, hit.latency_s) == ("answer", 3, 0.5)
    assert again.get("missing") is None and len(again) == 1


def test_a_redacting_request_cache_keeps_personal_replies_off_disk(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """With mlflow.redact on, a reply the masks would change is served from memory, unmasked, and never written."""
    import pickle

    from ragsweep.pipelines.llm_client.cache import RequestCache
    from ragsweep.pipelines.llm_client.client import ChatResponse
    from ragsweep.search.config import RedactSettings
    from ragsweep.search.tracking.redact import Redactor

    cache = RequestCache(tmp_path / "c.sqlite", Redactor(RedactSettings()))
    cache.put(
        "private",
        ChatResponse(text="Write to jane.doe@example.org", prompt_tokens=3, completion_tokens=2, latency_s=0.5),
    )
    cache.put("plain", ChatResponse(text="Paris", prompt_tokens=3, completion_tokens=1, latency_s=0.5))
    hit = cache.get("private")
    assert hit is not None and hit.text == "Write to jane.doe@example.org"  # metrics see the real reply
    cache.close()
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir())
    assert b"jane.doe" not in stored and b"Paris" in stored
    again = pickle.loads(pickle.dumps(RequestCache(tmp_path / "c.sqlite", Redactor(RedactSettings()))))
    assert again.redact is not None and again.get("private") is None and again.get("plain") is not None


def test_merge_intervals_counts_overlap_once() -> None:
    from ragsweep.pipelines.llm_client.client import ClientStats, merge_intervals

    assert merge_intervals([(5, 6), (0, 2), (1, 3), (3, 4)]) == [(0, 4), (5, 6)]
    stats = ClientStats(intervals=[(0.0, 2.0), (1.0, 3.0), (10.0, 11.0)])
    assert stats.busy_s == 4.0 and stats.as_metrics("g")["llm.g.busy_s"] == 4.0


def test_cost_terms_are_objective_metrics() -> None:
    from ragsweep.search.config import Objective

    o = Objective(weights={"token_f1": 1.0, "latency_p95_s": -0.05, "tokens_per_question": -0.001})
    assert objective({"token_f1": 0.5, "latency_p95_s": 2.0, "tokens_per_question": 100.0}, o.weights) == (
        pytest.approx(0.5 - 0.1 - 0.1)
    )


# ---- ROUGE-L, precision@k, nDCG@k, abstention (hand-checked) ----------------------------------------------


def test_rouge_l_best_gold_unicode_and_empty() -> None:
    from ragsweep.judges.lexical import rouge_l

    # LCS("denver broncos", "denver broncos won") = 2 tokens: P 2/3, R 1, F = 0.8 (articles are dropped).
    assert rouge_l("Denver Broncos won", ["the Denver Broncos", "Carolina"]) == pytest.approx(0.8)
    assert rouge_l("東京 タワー", ["東京 タワー"]) == 1.0  # non-Latin scripts are kept (rouge-score's own drops them)
    assert rouge_l("Café", ["cafe", "café"]) == 1.0
    assert rouge_l("", ["x"]) == 0.0
    assert math.isnan(rouge_l("x", []))


Q2 = Question(
    id="q",
    question="?",
    answers=("x", "y"),
    answerable=True,
    gold_doc_ids=("d1",),
    answer_spans=(AnswerSpan("d1", 0, 10), AnswerSpan("d1", 500, 510)),
)


def test_precision_at_k_counts_gold_chunks() -> None:
    from ragsweep.judges.retrieval import precision_at_k

    hits = [ChunkRef("d1", 0, 50), ChunkRef("d2", 0, 50), ChunkRef("d1", 495, 600), ChunkRef("d1", 100, 200)]
    assert precision_at_k(hits, Q2) == pytest.approx(2 / 4)
    assert precision_at_k([], Q2) == 0.0
    assert math.isnan(precision_at_k(hits, Q_NONE))


def test_ndcg_rewards_each_gold_span_once_and_early() -> None:
    from ragsweep.judges.retrieval import ndcg_at_k

    ideal = 1 + 1 / math.log2(3)
    both_first = [ChunkRef("d1", 0, 50), ChunkRef("d1", 490, 520), ChunkRef("d2", 0, 9)]
    assert ndcg_at_k(both_first, Q2) == pytest.approx(1.0)
    # A second chunk over the same span (a chunk boundary inside the span) earns nothing.
    dup = [ChunkRef("d1", 0, 5), ChunkRef("d1", 5, 50), ChunkRef("d1", 505, 520)]
    assert ndcg_at_k(dup, Q2) == pytest.approx((1 + 1 / math.log2(4)) / ideal)
    # A span straddling two chunks counts as found by the first one that overlaps it.
    straddle = [ChunkRef("d2", 0, 9), ChunkRef("d1", 95, 105), ChunkRef("d1", 105, 200)]  # span is 100..110
    assert ndcg_at_k(straddle, Q) == pytest.approx(1 / math.log2(3))
    assert ndcg_at_k([ChunkRef("d2", 0, 9)], Q2) == 0.0
    assert math.isnan(ndcg_at_k(both_first, Q_NONE))


@pytest.mark.parametrize(
    ("answer", "declined"),
    [
        ("I don't know.", True),
        ("I do not know", True),
        ("Unanswerable", True),
        ("N/A", True),
        ("", True),
        ("The context does not mention it.", True),
        ("Not mentioned in the passages", True),
        ("Denver Broncos", False),
        ("Knowledge is power", False),
        ("In 1066", False),
    ],
)
def test_declined_detects_abstention(answer: str, declined: bool) -> None:
    from ragsweep.judges.lexical import declined as is_declined

    assert is_declined(answer) is declined


def test_abstention_metrics_apply_to_the_right_questions() -> None:
    from ragsweep.judges.scoring import score_answer

    unanswerable = score_answer(Q_NONE, "I don't know", [])
    assert unanswerable["abstain_correct"] == 1.0 and math.isnan(unanswerable["false_abstain"])
    assert score_answer(Q_NONE, "Paris", [])["abstain_correct"] == 0.0
    answerable = score_answer(Q, "I don't know", [ChunkRef("d1", 90, 120)])
    assert answerable["false_abstain"] == 1.0 and math.isnan(answerable["abstain_correct"])
    assert answerable["ndcg_at_k"] == 1.0 and answerable["precision_at_k"] == 1.0
