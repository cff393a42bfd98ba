"""Query-transformation reply parsing, context budget and order, and weighted RRF: the pure parts of issue-19 keys
(their nodes run on the real llama.cpp server in tests/integration/test_query_transforms.py)."""

from __future__ import annotations

from ragsweep.pipelines.context import ORDERS, best_at_ends, fit_budget
from ragsweep.pipelines.retrieve import Fusion
from ragsweep.pipelines.stores import DENSE, SPARSE, Leg, fuse_rrf
from ragsweep.pipelines.transforms import TRANSFORMS, paraphrases


def test_paraphrases_drop_markers_blanks_repeats_and_the_question() -> None:
    reply = "1. Where was Tesla born?\n\n- where was tesla born?\n2) In which town was Tesla born\n* What is Tesla?"
    assert paraphrases(reply, "Where was Tesla born?", 5) == ["In which town was Tesla born", "What is Tesla?"]
    assert paraphrases(reply, "x", 1) == ["Where was Tesla born?"]
    assert paraphrases("", "x", 3) == []


def test_none_transform_searches_with_the_question_and_costs_nothing() -> None:
    texts, costs = TRANSFORMS.get("none")(["a?", "b?"], None, None)  # type: ignore[arg-type]
    assert texts == [["a?"], ["b?"]] and all(c.calls == 0 for c in costs)
    assert [TRANSFORMS.entry(n).info["llm_calls"] for n in TRANSFORMS.names()] == [0, 1, 1, 1]


def test_budget_keeps_best_ranked_chunks_and_at_least_one() -> None:
    texts = ["a" * 400, "b" * 400, "c" * 400]  # 100 estimated tokens each
    assert fit_budget(texts, 0) == 3
    assert fit_budget(texts, 250) == 2
    assert fit_budget(texts, 10) == 1  # the best chunk even when it alone is over budget
    assert fit_budget([], 100) == 0


def test_ends_order_puts_the_two_best_first_and_last() -> None:
    assert best_at_ends([1, 2, 3, 4, 5]) == [1, 3, 5, 4, 2]
    assert best_at_ends([1]) == [1] and ORDERS.get("retrieved")([1, 2]) == [1, 2]


def test_weighted_rrf_at_half_equals_plain_rrf_and_moves_with_the_weight() -> None:
    dense, sparse = [(1, 0.9), (2, 0.8), (3, 0.7)], [(3, 9.0), (4, 8.0), (1, 7.0)]
    legs = (Leg(DENSE, [0.0], 3), Leg(SPARSE, [0.0], 3))  # type: ignore[arg-type]
    even = Fusion(0.5, 2)
    assert fuse_rrf([dense, sparse], 4, 2, [even.weight(leg) for leg in legs]) == fuse_rrf([dense, sparse], 4, 2)
    dense_heavy = Fusion(0.9, 2)
    assert fuse_rrf([dense, sparse], 1, 2, [dense_heavy.weight(leg) for leg in legs])[0][0] == 1
    sparse_heavy = Fusion(0.1, 2)
    assert fuse_rrf([dense, sparse], 1, 2, [sparse_heavy.weight(leg) for leg in legs])[0][0] == 3
