"""Per-question scores and their per-trial aggregates.

Contract: :func:`score_answer` returns every deterministic metric for one answer; :func:`aggregate` turns
per-question rows into means that skip NaN (and counts the NaNs); :func:`objective` is always finite.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ragsweep.judges import lexical, retrieval
from ragsweep.judges.builtin import JUDGES
from ragsweep.judges.retrieval import ChunkRef
from ragsweep.pipelines.data import Question

ANSWER_METRICS = ("exact_match", "token_f1", "contains", "rouge_l")
RETRIEVAL_METRICS = ("recall_at_k", "precision_at_k", "mrr", "ndcg_at_k")
# abstain_correct: on unanswerable questions, did the pipeline decline; false_abstain: on answerable ones, did
# it decline wrongly (lower is better). Each is NaN on the other kind of question.
ABSTENTION_METRICS = ("abstain_correct", "false_abstain")
# Everything score_answer computes: no LLM involved, so every run of the same answers gives the same values.
DETERMINISTIC_METRICS = ANSWER_METRICS + RETRIEVAL_METRICS + ABSTENTION_METRICS
# Built-in LLM judges (judges/builtin.py); custom judges add judge_<name>. LLM usage counters are llm.<role>.*.
JUDGE_PREFIX = "judge_"
JUDGE_METRICS = tuple(e.info["metric"] for e in JUDGES)
# Appended to a score's name for its NaN count and its confidence interval.
DERIVED_SUFFIXES = ("_nan", "_ci_low", "_ci_high")
# Cost of a configuration, per question answered so far (seconds, tokens): give them negative weights.
# gpu_s_per_question: LLM-server busy seconds x GPUs per replica (0 on CPU-only servers).
COST_METRICS = ("latency_p50_s", "latency_p95_s", "tokens_per_question", "gpu_s_per_question")
# Metrics that may appear in objective.weights: quality means in [0, 1] and cost terms.
OBJECTIVE_METRICS = frozenset(ANSWER_METRICS + RETRIEVAL_METRICS + ABSTENTION_METRICS + JUDGE_METRICS + COST_METRICS)


def score_answer(q: Question, answer: str, retrieved: Sequence[ChunkRef]) -> dict[str, float]:
    golds = q.answers if q.answerable else ()
    declined = lexical.declined(answer)
    return {
        "exact_match": lexical.exact_match(answer, golds),
        "token_f1": lexical.token_f1(answer, golds),
        "contains": lexical.contains(answer, golds),
        "rouge_l": lexical.rouge_l(answer, golds),
        "recall_at_k": retrieval.recall_at_k(retrieved, q),
        "precision_at_k": retrieval.precision_at_k(retrieved, q),
        "mrr": retrieval.mrr(retrieved, q),
        "ndcg_at_k": retrieval.ndcg_at_k(retrieved, q),
        "abstain_correct": math.nan if q.answerable else float(declined),
        "false_abstain": float(declined) if q.answerable else math.nan,
    }


def aggregate(rows: Iterable[Mapping[str, float]], names: Sequence[str]) -> dict[str, float]:
    """Mean of each metric over rows, NaN skipped; also ``<name>_nan`` counts where any NaN occurred."""
    rows = list(rows)
    out: dict[str, float] = {}
    for name in names:
        values = np.array([r.get(name, math.nan) for r in rows], dtype=float)
        finite = values[np.isfinite(values)]
        out[name] = float(finite.mean()) if finite.size else math.nan
        n_nan = int(values.size - finite.size)
        if n_nan:
            out[f"{name}_nan"] = float(n_nan)
    return out


def objective(means: Mapping[str, float], weights: Mapping[str, float]) -> float:
    """Weighted sum of metric means; an undefined (NaN) mean contributes 0, so the result is finite."""
    total = 0.0
    for name, w in weights.items():
        v = means.get(name, math.nan)
        total += w * (v if math.isfinite(v) else 0.0)
    return total
