"""The retrieval screen's pure parts: which configurations are screened, the recall-vs-tokens front and its
distinct steps, the LLM stage's space, the racing stop rule, the materiality floor and the gold passage."""

from __future__ import annotations

import math
import random

import optuna
import pytest

from ragsweep.judges.intervals import paired_difference
from ragsweep.pipelines.data import AnswerSpan, Document, Question
from ragsweep.search.promotion.racing import race_over, race_step
from ragsweep.search.promotion.selection import Evidence, TrialRecord, select
from ragsweep.search.screen.front import Screened, all_points, candidates, front, label, screen_points, steps
from ragsweep.search.screen.oracle import gold_passage
from ragsweep.search.space import STAGED, DefineByRun, SearchSpace, staged_points


def _screened(point: dict, recalls: list[float], tokens: float) -> Screened:
    return Screened(
        point,
        [
            {"id": f"q{i}", "recall_at_k": r, "mrr": r, "ndcg_at_k": r, "precision_at_k": r, "context_tokens": tokens}
            for i, r in enumerate(recalls)
        ],
    )


def test_front_keeps_only_undominated_points_cheapest_first() -> None:
    a = _screened({"top_k": 1}, [1, 0, 0, 0], 100)  # 0.25 recall, cheap
    b = _screened({"top_k": 3}, [1, 1, 0, 0], 300)  # 0.5, dearer
    c = _screened({"top_k": 4}, [1, 0, 0, 0], 400)  # dominated by a: same recall, more tokens
    d = _screened({"top_k": 5}, [1, 1, 1, 1], 500)
    assert [s.point["top_k"] for s in front([c, d, b, a])] == [1, 3, 5]


def test_steps_drop_a_costlier_point_whose_extra_recall_is_noise() -> None:
    n = 200
    cheap = _screened({"top_k": 1}, [1.0 if i % 2 else 0.0 for i in range(n)], 100)
    noise = _screened({"top_k": 2}, [1.0 if i % 2 or i == 0 else 0.0 for i in range(n)], 200)  # one question more
    real = _screened({"top_k": 5}, [1.0] * n, 500)
    kept = steps(front([cheap, noise, real]), 0.95, 500, 0)
    assert [s.point["top_k"] for s in kept] == [1, 5]


def test_candidates_always_hold_the_baselines_configuration() -> None:
    best = _screened({"top_k": 5}, [1.0] * 50, 100)
    base = _screened({"top_k": 2}, [0.0] * 50, 300)  # dominated: off the front
    chosen = candidates([best, base], {"top_k": 2, "prompt": "concise"}, 0.95, 200, 0)
    assert [s.point for s in chosen] == [{"top_k": 5}, {"top_k": 2}]


def test_screen_points_enumerate_the_retrieval_keys_and_respect_both_caps() -> None:
    space = SearchSpace(
        chunk_size=[400, 800],
        chunk_overlap=[0, 100],
        retriever=["dense", "hybrid"],
        top_k=[2, 5],
        context_budget=[0, 200],
        prompt=["concise", "extractive"],
        hybrid_weight=[0.3, 0.7],
    )
    points = all_points(space)
    # hybrid_weight only with hybrid: 2 x 2 x (1 dense + 2 hybrid) x 2 x 2; the prompt is not a retrieval key
    assert len(points) == 2 * 2 * 3 * 2 * 2
    assert all("prompt" not in p for p in points)
    assert all(("hybrid_weight" in p) == (p["retriever"] == "hybrid") for p in points)
    base = {
        "chunk_size": 400,
        "chunk_overlap": 0,
        "retriever": "dense",
        "top_k": 2,
        "context_budget": 0,
        "prompt": "concise",
    }
    few = screen_points(space, base, 0, max_points=5, max_indexes=2)
    assert len(few) == 5 and few[0] == {k: v for k, v in base.items() if k != "prompt"}
    assert len({(p["chunk_size"], p["chunk_overlap"]) for p in screen_points(space, base, 0, 1000, 2)}) == 2


def test_the_llm_stage_samples_a_candidate_and_the_generation_keys_only() -> None:
    space = SearchSpace(chunk_size=[400, 800], top_k=[2, 5], prompt=["concise", "extractive"], temperature=[0.0, 0.5])
    cands = {label(p): p for p in ({"chunk_size": 400, "top_k": 2}, {"chunk_size": 800, "top_k": 5})}
    fn = DefineByRun(space, cands)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    trial = study.ask()
    fixed = fn(trial)
    gen = {STAGED, "prompt", "temperature", "query_transform", "context_order"}  # the last two: one choice each
    assert set(trial.params) == gen
    assert fixed == cands[trial.params[STAGED]]
    points = staged_points(space, cands)
    assert len(points) == 2 * 2 * 2 and all(set(p) == gen for p in points)


def _scores(values: list[float]) -> dict[str, dict[str, float]]:
    return {f"q{i}": {"token_f1": v} for i, v in enumerate(values)}


def test_race_drops_only_a_finalist_significantly_worse_than_the_best() -> None:
    n = 40
    rng = random.Random(0)
    base = [rng.random() for _ in range(n)]
    best = _scores(base)
    tied = _scores([v + rng.uniform(-0.3, 0.3) for v in base])  # as good, noisily
    bad = _scores([v * 0.2 for v in base])
    step = race_step({"a": best, "b": tied, "c": bad}, ["a", "b", "c"], {"token_f1": 1.0}, 0.95, 500)
    assert step.best in ("a", "b") and step.alive == ["a", "b"] and set(step.dropped) == {"c"}
    assert step.dropped["c"].verdict == "better"  # best minus it is above 0
    assert not race_over(step.alive, 16, 48, started=3)
    assert race_over(["a"], 16, 48, started=3)
    assert race_over(["a", "b"], 48, 48, started=3)
    assert not race_over(["a"], 8, 48, started=1)  # nothing to race: every held-out question is answered


def _evidence(name: str, values: list[float], tokens: float) -> Evidence:
    scores = {f"q{i}": {"objective": v} for i, v in enumerate(values)}
    return Evidence(
        TrialRecord(
            name=name,
            run_id=name,
            params={},
            status="completed",
            objective=sum(values) / len(values),
            n_questions=len(values),
        ),
        scores,
        sum(values) / len(values),
        tokens,
        1.0,
    )


def test_cheapest_tied_needs_a_material_saving() -> None:
    rng = random.Random(0)
    vals = [rng.random() for _ in range(40)]
    best = _evidence("best", [v + rng.uniform(-0.2, 0.25) for v in vals], 321)
    slightly_cheaper = _evidence("lean", vals, 299)  # 7% fewer tokens: not worth a lower point estimate
    sel = select([best, slightly_cheaper], {"objective": 1.0}, "cheapest_tied", 0.95, 500, min_saving=0.2)
    assert sel.pick.name == "best" and "below search.min_saving 20%" in sel.reason
    much_cheaper = _evidence("lean", vals, 150)
    assert (
        select([best, much_cheaper], {"objective": 1.0}, "cheapest_tied", 0.95, 500, min_saving=0.2).pick.name == "lean"
    )
    assert (
        select([best, slightly_cheaper], {"objective": 1.0}, "cheapest_tied", 0.95, 500, min_saving=0.0).pick.name
        == "lean"
    )


def test_gold_passage_is_the_answers_paragraph() -> None:
    text = "First paragraph about cats.\n\nThe oldest cat lived to 38 years.\n\nLast one."
    start = text.index("38 years")
    q = Question(
        id="q",
        question="How old?",
        answers=("38 years",),
        answerable=True,
        gold_doc_ids=("d",),
        answer_spans=(AnswerSpan("d", start, start + 8),),
    )
    passage, ref = gold_passage(q, {"d": Document("d", "", text)})
    assert passage == "The oldest cat lived to 38 years." and text[ref.start : ref.end] == passage
    by_doc = Question(id="q2", question="?", answers=("x",), answerable=True, gold_doc_ids=("d",))
    assert gold_passage(by_doc, {"d": Document("d", "", text)}, max_chars=10)[0] == text[:10]
    assert gold_passage(Question(id="q3", question="?", answers=(), answerable=False, gold_doc_ids=()), {}) is None
    long = "x" * 5000 + " 38 years " + "y" * 5000
    s = long.index("38")
    q_long = Question(
        id="q",
        question="?",
        answers=("38 years",),
        answerable=True,
        gold_doc_ids=("d",),
        answer_spans=(AnswerSpan("d", s, s + 8),),
    )
    passage, ref = gold_passage(q_long, {"d": Document("d", "", long)}, max_chars=1000)
    assert len(passage) == 1000 and "38 years" in passage


def test_paired_difference_is_the_races_test() -> None:
    # The race calls a finalist out exactly when selection would call it worse than the best: one test, one meaning.
    a, b = _scores([0.9] * 20), _scores([0.1] * 20)
    assert paired_difference(a, b, {"token_f1": 1.0}, 0.95, 200).verdict == "better"
    assert math.isfinite(paired_difference(a, a, {"token_f1": 1.0}, 0.95, 200).mean)


@pytest.mark.parametrize("bad", [{"top_k": 0}])
def test_a_bad_point_is_refused_when_completed_into_params(bad: dict) -> None:
    from ragsweep.search.screen.front import point_params

    with pytest.raises(ValueError):
        point_params(
            {"chunk_size": 400, "chunk_overlap": 0, "retriever": "dense", "reranker": "none", **bad},
            {"prompt": "concise", "temperature": 0.0},
        )


def test_rerank_memo_ranks_each_question_once_and_serves_prefixes() -> None:
    from ragsweep.pipelines.chunking import Chunk
    from ragsweep.pipelines.retrieve import Hit
    from ragsweep.search.screen.retrieval import RerankMemo

    class Counting:
        calls = 0

        def rerank(self, question: str, hits: list[Hit], k: int) -> list[Hit]:
            Counting.calls += 1
            return sorted(hits, key=lambda h: -h.chunk.id)[:k]

    hits = [Hit(Chunk(i, "d", i, i + 1, "x"), 0.0) for i in range(5)]
    memo = RerankMemo(Counting())
    assert [h.chunk.id for h in memo.rerank("q", hits, 2)] == [4, 3]
    assert [h.chunk.id for h in memo.rerank("q", hits, 4)] == [4, 3, 2, 1]
    assert Counting.calls == 1


def test_a_screen_without_any_retrieval_gold_says_so() -> None:
    from ragsweep.search.screen.screening import ScreenResult, Staging

    blind = _screened({"top_k": 1}, [math.nan] * 4, 100)
    assert not Staging(
        ScreenResult(screened=[blind], n_indexes=1, n_questions=4, computed=1, seconds=0.1), [blind], [blind]
    ).has_gold
    seen = _screened({"top_k": 1}, [1.0, math.nan, 0.0, 0.0], 100)
    assert Staging(
        ScreenResult(screened=[seen], n_indexes=1, n_questions=4, computed=1, seconds=0.1), [seen], [seen]
    ).has_gold
