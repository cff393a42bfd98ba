"""Run the retrieval screen: every screened configuration scored on every search question, no LLM call.

Contract: :func:`run_screen` (a Ray task body, or a plain call) scores each point of :func:`.front.screen_points`
through the search's index cache (each distinct index built once, as trials would) and :class:`RetrievalCache`
(each configuration computed once; a re-run or a resumed search reads it). It prints a progress line per index and
returns a :class:`ScreenResult`. :func:`trial_retrieval` gives one trial's rows from the same cache (computing them
when the screen did not), so every trial logs ``retrieval.*`` on all search questions.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ragsweep.pipelines.data import Dataset, Question
from ragsweep.pipelines.embedders.query_vectors import StoredQueries, stored_queries
from ragsweep.pipelines.index import IndexCache
from ragsweep.pipelines.retrieve import RETRIEVERS
from ragsweep.search.assemble import RetrievalParts, make_retriever, open_retrieval
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.console import logger
from ragsweep.search.screen.front import Screened, _index_of, label, point_params, screen_points
from ragsweep.search.screen.retrieval import (
    RerankMemo,
    RetrievalCache,
    Scored,
    cache_key,
    evaluate,
    questions_digest,
    retrieval_point,
)
from ragsweep.search.space import INDEX_KEYS, TrialParams

if TYPE_CHECKING:
    from ragsweep.search.tracking.tracker import RunRef

_GEN_STUB = {"prompt": "-", "temperature": 0.0}  # generation keys a retrieval-only TrialParams needs to validate


def retrieval_cache(cfg: ExperimentConfig) -> RetrievalCache:
    return RetrievalCache((cfg.storage_dir / "retrieval-cache").resolve())


@dataclass(kw_only=True, frozen=True)
class ScreenResult:
    screened: list[Screened]
    n_indexes: int
    n_questions: int
    computed: int  # configurations computed now (the rest came from the cache)
    seconds: float
    timings: dict[str, float] = field(default_factory=dict)


def _questions(dataset: Dataset, ids: tuple[str, ...]) -> list[Question]:
    by_id = {q.id: q for q in dataset.questions}
    return [by_id[i] for i in ids]


def run_screen(
    cfg: ExperimentConfig,
    dataset: Dataset,
    question_ids: tuple[str, ...],
    baseline: dict[str, Any] | None,
    index_cache: Path,
    embed_also: tuple[str, ...] = (),
) -> ScreenResult:
    """Score every screened configuration of ``cfg.space`` on ``question_ids``; store the query vectors of those
    questions and of ``embed_also`` (the held-out ones: embedded, never scored) for every embedder that a screened
    configuration retrieves densely with."""
    log = logger("search")
    t0 = time.perf_counter()
    s = cfg.search
    points = screen_points(cfg.space, baseline, s.seed, s.screen_configs, s.screen_indexes)
    questions = _questions(dataset, question_ids)
    qdigest = questions_digest(dataset.digest, question_ids)
    cache, indexes = retrieval_cache(cfg), IndexCache(index_cache)
    groups: dict[str, list[dict[str, Any]]] = {}
    for p in points:
        groups.setdefault(_index_of(p), []).append(p)
    memos: dict[str, StoredQueries] = {}
    dense: set[str] = set()  # embedders some screened configuration retrieves densely with
    out: list[Screened] = []
    computed = 0
    for i, group in enumerate(groups.values(), 1):
        t1 = time.perf_counter()
        parts = open_retrieval(
            point_params(group[0], _GEN_STUB), cfg.pipeline, dataset.corpus, dataset.corpus_digest, indexes
        )
        memo = memos.get(parts.embedder.spec) or memos.setdefault(
            parts.embedder.spec, stored_queries(parts.embedder, indexes.root)
        )
        if any(RETRIEVERS.entry(p["retriever"]).info["dense"] for p in group):
            dense.add(parts.embedder.spec)
        if parts.reranker is not None:
            parts.reranker = RerankMemo(parts.reranker)
        for p in group:
            scored = _score(cfg, cache, parts, memo, p, questions, qdigest)
            computed += scored.computed
            out.append(Screened(p, scored.rows))
        index = label({k: v for k, v in group[0].items() if k in INDEX_KEYS})
        log.info(
            f"retrieval screen: index {i}/{len(groups)} ({index}): {len(group)} configuration(s) on "
            f"{len(questions)} questions in {time.perf_counter() - t1:.1f} s"
        )
    # Every question a trial or the held-out confirmation will retrieve for, embedded here once: their processes
    # then read the vectors and never load the model (vectors only; nothing is scored on held-out questions).
    texts = [q.question for q in (*questions, *_questions(dataset, embed_also))]
    for spec in dense:
        memos[spec].encode_queries(texts)
        memos[spec].save()
    return ScreenResult(
        screened=out,
        n_indexes=len(groups),
        n_questions=len(questions),
        computed=computed,
        seconds=time.perf_counter() - t0,
    )


def _score(
    cfg: ExperimentConfig,
    cache: RetrievalCache,
    parts: RetrievalParts,
    memo: StoredQueries,
    point: dict[str, Any],
    questions: list[Question],
    qdigest: str,
) -> Scored:
    params = point_params(point, _GEN_STUB)
    key = cache_key(retrieval_point(params.model_dump()), parts.index.key, cfg.pipeline.reranker_model, qdigest)
    return cache.get_or_compute(
        key,
        lambda: evaluate(make_retriever(parts, params, memo), parts.reranker, point, questions),
        {"point": point, "index": parts.index.key},
    )


def trial_retrieval(
    params: TrialParams,
    cfg: ExperimentConfig,
    dataset: Dataset,
    question_ids: tuple[str, ...],
    retriever: Any,
    reranker: Any,
    index_key: str,
) -> Scored | None:
    """One trial's retrieval rows on ``question_ids`` (from the cache, else computed now); None when its query
    transformation asks the LLM what to search with (retrieval is then not free)."""
    if params.query_transform != "none" or not question_ids:
        return None
    point = retrieval_point(params.model_dump())
    key = cache_key(point, index_key, cfg.pipeline.reranker_model, questions_digest(dataset.digest, question_ids))
    questions = _questions(dataset, question_ids)
    return retrieval_cache(cfg).get_or_compute(
        key, lambda: evaluate(retriever, reranker, point, questions), {"point": point, "index": index_key}
    )


@dataclass(frozen=True)
class Staging:
    """A two-stage search's first stage: the screen, its front and the candidates the LLM trials try."""

    result: ScreenResult
    front: list[Screened]
    candidates: list[Screened]

    @property
    def has_gold(self) -> bool:
        """Whether any screened question has retrieval gold (answer spans or gold documents) to rank by."""
        return any(
            isinstance(r.get("recall_at_k"), float) and r["recall_at_k"] == r["recall_at_k"]
            for s in self.result.screened
            for r in s.rows
        )

    @property
    def by_label(self) -> dict[str, dict[str, Any]]:
        return {s.label: s.point for s in self.candidates}

    @property
    def best_recall(self) -> Screened:
        return max(self.result.screened, key=lambda s: (s.recall, -s.tokens))

    def lines(self) -> list[str]:
        r = self.result
        out = [
            f"retrieval screen: {len(r.screened)} configurations on {r.n_indexes} index(es) x {r.n_questions} "
            f"search questions, no LLM call ({r.computed} computed, {len(r.screened) - r.computed} cached) in "
            f"{r.seconds:.1f} s; the recall-vs-context-tokens front has {len(self.front)}; the LLM trials try "
            f"{len(self.candidates)}:"
        ]
        out += [f"  recall {s.recall:.3f} at {s.tokens:.0f} tokens: {s.label}" for s in self.candidates]
        return out

    def as_json(self) -> dict[str, Any]:
        on_front = {s.label for s in self.front}
        chosen = {s.label for s in self.candidates}
        return {
            "n_questions": self.result.n_questions,
            "configurations": [
                {
                    "label": s.label,
                    "point": s.point,
                    "recall": s.recall,
                    "context_tokens": s.tokens,
                    "front": s.label in on_front,
                    "candidate": s.label in chosen,
                }
                for s in self.result.screened
            ],
        }


def stage(
    cfg: ExperimentConfig,
    dataset: Dataset,
    question_ids: tuple[str, ...],
    baseline: dict[str, Any] | None,
    index_cache: Path,
    embed_also: tuple[str, ...] = (),
) -> Staging:
    """Screen, then choose the LLM stage's candidates (:func:`.front.candidates`)."""
    from ragsweep.search.screen.front import candidates, front

    result = run_screen(cfg, dataset, question_ids, baseline, index_cache, embed_also)
    s = cfg.search
    return Staging(
        result,
        front(result.screened),
        candidates(result.screened, baseline, s.confidence, s.bootstrap_samples, s.seed, s.max_candidates),
    )


def screen_stage(
    cfg: ExperimentConfig,
    dataset: Dataset,
    screen_ids: tuple[str, ...],
    parent: RunRef,
    timings: dict[str, float],
    holdout_ids: tuple[str, ...] = (),
) -> Staging | None:
    """The retrieval screen of a two-stage search, said on the console and logged on the parent run; None for a
    joint search, or when no search question has retrieval gold (then every key is searched jointly). The held-out
    questions are embedded for the confirmation's processes, never scored."""
    from ragsweep.search.searcher import baseline

    if cfg.search.strategy != "two_stage":
        return None
    t0 = time.perf_counter()
    staging = stage(cfg, dataset, screen_ids, baseline(cfg), cfg.index_cache, holdout_ids)
    timings["screen_s"] = time.perf_counter() - t0
    if not staging.has_gold:
        logger("search").info(
            "retrieval screen: no search question has retrieval gold (answer spans or gold_doc_ids), so retrieval "
            "cannot be ranked without answers; every key is searched jointly (search.strategy: joint)"
        )
        parent.tags({"ragsweep.screen": "no retrieval gold: joint search"})
        return None
    for line in staging.lines():
        logger("search").info(line)
    parent.json(staging.as_json(), "screen/retrieval.json")
    parent.metrics(
        {
            "screen.n_configurations": float(len(staging.result.screened)),
            "screen.n_front": float(len(staging.front)),
            "screen.n_candidates": float(len(staging.candidates)),
            "screen.best_recall": staging.best_recall.recall,
        }
    )
    return staging
