"""Search-space rules (conditional keys, baseline, grid) and the promotion rule (Pareto front)."""

from __future__ import annotations

import re

import optuna
import pytest

from ragsweep.search.config import Objective
from ragsweep.search.promotion.selection import TrialRecord, choose, pareto_front
from ragsweep.search.space import DefineByRun, FloatRange, IntRange, SearchSpace, baseline_point, grid_points
from tests.conftest import REPO


def _run(space: SearchSpace, n: int = 30) -> list[dict]:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.RandomSampler(seed=0))
    fn = DefineByRun(space)
    for i in range(n):
        t = study.ask()
        fn(t)
        study.tell(t, float(i))
    return [t.params for t in study.trials]


def test_rerank_candidates_only_with_a_reranker() -> None:
    space = SearchSpace(reranker=["none", "cross_encoder"], rerank_candidates=[10, 30])
    params = _run(space)
    assert {p["reranker"] for p in params} == {"none", "cross_encoder"}
    for p in params:
        assert ("rerank_candidates" in p) == (p["reranker"] == "cross_encoder")


def test_overlap_range_is_bounded_by_each_trials_chunk_size() -> None:
    space = SearchSpace(chunk_size=[100, 1000], chunk_overlap=IntRange(low=0, high=500, step=50))
    params = _run(space, 60)
    assert all(p["chunk_overlap"] < p["chunk_size"] for p in params)
    assert max(p["chunk_overlap"] for p in params if p["chunk_size"] == 1000) > 100  # not clipped to the smallest
    assert all(p["chunk_overlap"] % 50 == 0 for p in params)


def test_baseline_fills_first_choices_and_skips_inactive_keys() -> None:
    space = SearchSpace(chunk_size=IntRange(low=300, high=900, step=100), reranker=["none", "cross_encoder"])
    assert baseline_point(space, {"top_k": 5}) == {
        "chunk_size": 300,
        "chunk_overlap": 0,
        "retriever": "dense",
        "top_k": 5,
        "reranker": "none",
        "prompt": "concise",
        "temperature": 0.0,
        "chunker": "chars",
        "query_transform": "none",
        "context_order": "retrieved",
        "context_budget": 0,
    }
    assert baseline_point(space, {"reranker": "cross_encoder"})["rerank_candidates"] == 20
    fused = SearchSpace(retriever=["hybrid", "dense"], query_transform=["none", "multi_query"], rrf_k=[2, 60])
    assert {k: baseline_point(fused, {})[k] for k in ("hybrid_weight", "rrf_k")} == {"hybrid_weight": 0.5, "rrf_k": 2}
    plain = baseline_point(fused, {"retriever": "dense"})
    assert "hybrid_weight" not in plain and "rrf_k" not in plain
    assert baseline_point(fused, {"retriever": "dense", "query_transform": "multi_query"})["rrf_k"] == 2


def test_fusion_keys_are_sampled_only_where_lists_are_fused() -> None:
    space = SearchSpace(
        retriever=["dense", "bm25", "hybrid"],
        query_transform=["none", "hyde", "rewrite"],
        hybrid_weight=FloatRange(low=0.2, high=0.8),
        rrf_k=IntRange(low=1, high=60),
    )
    for p in _run(space, 40):
        assert ("hybrid_weight" in p) == (p["retriever"] == "hybrid")
        assert ("rrf_k" in p) == (p["retriever"] == "hybrid" or p["query_transform"] == "hyde")


@pytest.mark.parametrize(
    ("keys", "says"),
    [
        ({"hybrid_weight": [0.3, 0.7], "retriever": ["dense", "bm25"]}, "space.retriever includes 'hybrid'"),
        ({"rrf_k": [2, 60], "retriever": ["dense"]}, "space.query_transform includes 'hyde' or 'multi_query'"),
        ({"rerank_candidates": [10], "reranker": ["none"]}, "rerank_candidates is set but no trial would use it"),
    ],
)
def test_a_conditional_key_no_trial_uses_is_refused(keys: dict[str, object], says: str) -> None:
    with pytest.raises(ValueError, match=re.escape(says)):
        SearchSpace(**keys)


def test_grid_of_fusion_keys_skips_unused_values() -> None:
    space = SearchSpace(
        chunk_size=[400],
        chunk_overlap=[0],
        retriever=["dense", "hybrid"],
        top_k=[2],
        prompt=["concise"],
        hybrid_weight=[0.3, 0.7],
        rrf_k=[2, 60],
    )
    assert len(grid_points(space)) == 1 + 2 * 2  # dense once; hybrid x weights x k


def test_grid_counts_an_inactive_key_once() -> None:
    space = SearchSpace(
        chunk_size=[400],
        chunk_overlap=[0],
        retriever=["bm25"],
        top_k=[2, 3],
        prompt=["concise"],
        reranker=["none", "cross_encoder"],
        rerank_candidates=[10, 20],
    )
    # top_k 2 x (none + cross_encoder x 2 candidate counts)
    assert len(grid_points(space)) == 2 * 3


def _t(name: str, q: float, cost: float) -> TrialRecord:
    return TrialRecord(
        name=name,
        run_id=name,
        params={},
        status="completed",
        objective=q,
        n_questions=24,
        metrics={"latency_p95_s": cost},
    )


def test_pareto_front_and_promotion_rule() -> None:
    trials = [_t("a", 0.9, 3.0), _t("b", 0.8, 1.0), _t("c", 0.7, 2.0), _t("d", 0.6, 0.5), _t("e", 0.8, 1.5)]
    assert [t.name for t in pareto_front(trials, "latency_p95_s")] == ["d", "b", "a"]
    best, why = choose(trials, Objective(cost="latency_p95_s"))
    assert best.name == "a" and "highest objective" in why
    best, why = choose(trials, Objective(cost="latency_p95_s", max_cost=1.2))
    assert best.name == "b" and "<= 1.2" in why
    best, why = choose(trials, Objective(cost="latency_p95_s", max_cost=0.1))
    assert best is None and "cheapest on the front: 0.5" in why
    best, _ = choose(trials, Objective())
    assert best.name == "a"


def test_a_trial_stopped_early_is_pruned_for_optuna_not_complete(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragsweep.search.config import ExperimentConfig
    from ragsweep.search.searcher import build_searcher

    data = REPO / "data" / "xquad_en"
    cfg = ExperimentConfig.model_validate(
        {"dataset": {"corpus": data / "corpus.jsonl", "questions": data / "questions.jsonl"}, "storage_dir": tmp_path}
    )
    searcher = build_searcher(cfg, max_questions=24)
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert first["top_k"] == 2 and first["chunk_size"] == 400  # the baseline comes first
    assert second is not None
    searcher.on_trial_result("a", {"objective": 0.2, "training_iteration": 1, "n_questions": 8})
    searcher.on_trial_complete("a", {"objective": 0.2, "training_iteration": 1, "n_questions": 8})
    searcher.on_trial_complete("b", {"objective": 0.5, "training_iteration": 3, "n_questions": 24})
    states = [t.state for t in searcher._ot_study.trials]
    assert states == [optuna.trial.TrialState.PRUNED, optuna.trial.TrialState.COMPLETE]


def test_trial_table_shows_only_the_keys_that_vary() -> None:
    from ragsweep.search.console import varying_keys

    space = SearchSpace(chunk_size=[400], retriever=["dense", "hybrid"], hybrid_weight=FloatRange(low=0.2, high=0.8))
    assert varying_keys(space) == ["chunk_overlap", "retriever", "top_k", "prompt", "hybrid_weight"]
    assert "embedder" in varying_keys(SearchSpace(embedder=["default", "e5"]))
