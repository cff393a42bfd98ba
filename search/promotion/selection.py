"""Which finished trial wins: the cheapest of the finalists tied with the best, or a point of the Pareto front.

Contract: trials are :class:`TrialRecord` with ``objective`` (quality, maximised) and ``metrics`` (including the
cost metric, minimised).

- :func:`finalists` are the best ``n`` trials that answered every question, by search objective.
- :func:`select` judges finalists on :class:`Evidence` (per-question scores and cost, on the held-out questions
  when there are any): the best is the highest objective; a finalist is *tied* with it when the paired bootstrap
  interval of best minus finalist includes 0. Rule ``cheapest_tied`` (the default, the one-standard-error rule
  of model selection) picks the cheapest of the best and its ties by tokens per question, then p95 latency, but
  only when it saves a material share of the best's cost (``min_saving``, default 20% of tokens or of p95
  latency): a lower point estimate is not traded for a few percent; ``best`` picks the best.
- :func:`pareto_front` returns the non-dominated trials sorted by cost; :func:`choose` applies the promotion rule
  of a multi-objective search (``objective.cost``) and returns the winner with the reason, or ``(None, reason)``
  when no trial satisfies the rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from ragsweep.judges.intervals import PairedDifference, Scores, paired_difference
from ragsweep.search.config import Objective


@dataclass(kw_only=True)
class TrialRecord:
    """One trial that reported; ``objective`` is at ``n_questions`` (partial if it was stopped early)."""

    name: str
    run_id: str
    params: dict[str, Any]
    status: str  # completed | stopped_early
    objective: float
    n_questions: int
    metrics: dict[str, Any] = field(default_factory=dict)
    baseline: bool = False


Trial = TrialRecord


def _cost(t: Trial, metric: str) -> float:
    v = t.metrics.get(metric, math.nan)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else math.inf


def pareto_front(trials: list[Trial], cost: str) -> list[Trial]:
    """Trials no other trial beats on both quality (higher) and cost (lower), cheapest first."""
    front = []
    for t in trials:
        q, c = t.objective, _cost(t, cost)
        dominated = any(
            (o.objective >= q and _cost(o, cost) <= c) and (o.objective > q or _cost(o, cost) < c) for o in trials
        )
        if not dominated:
            front.append(t)
    return sorted(front, key=lambda t: (_cost(t, cost), -t.objective))


def choose(trials: list[Trial], objective: Objective) -> tuple[Trial | None, str]:
    """The trial to promote and why (``None`` if no trial meets ``max_cost``)."""
    if not trials:
        return None, "no trial answered every question"
    best = max(trials, key=lambda t: t.objective)
    if objective.cost is None:
        return best, "highest objective"
    front = pareto_front(trials, objective.cost)
    if objective.max_cost is None:
        return best, f"highest objective (Pareto front of {len(front)} on objective vs {objective.cost})"
    ok = [t for t in front if _cost(t, objective.cost) <= objective.max_cost]
    if not ok:
        cheapest = _cost(front[0], objective.cost)
        return None, (
            f"no trial has {objective.cost} <= {objective.max_cost} (cheapest on the front: "
            f"{cheapest:.4g}); nothing promoted"
        )
    pick = max(ok, key=lambda t: t.objective)
    return pick, f"highest objective with {objective.cost} <= {objective.max_cost} on the Pareto front"


def finalists(trials: list[Trial], n: int) -> list[Trial]:
    """The best ``n`` completed trials by search objective, best first."""
    done = [t for t in trials if t.status == "completed"]
    return sorted(done, key=lambda t: t.objective, reverse=True)[:n]


@dataclass(frozen=True)
class Evidence:
    """What a finalist is judged on: its per-question scores, their objective and its cost per question."""

    trial: Trial
    scores: Mapping[str, Scores]  # question id -> metric -> value
    objective: float
    tokens_per_question: float
    latency_p95_s: float


@dataclass(frozen=True)
class Selection:
    pick: Trial
    reason: str
    best: Trial  # highest objective on the evidence
    versus_best: dict[str, PairedDifference]  # run id -> best minus that finalist (not for the best itself)
    tied: tuple[str, ...]  # run ids of the finalists tied with the best, the best included


def _cheapness(e: Evidence) -> tuple[float, float]:
    def finite(v: float) -> float:
        return v if math.isfinite(v) else math.inf

    return finite(e.tokens_per_question), finite(e.latency_p95_s)


def saving(pick: Evidence, best: Evidence) -> float:
    """The share of ``best``'s cost that ``pick`` saves: the larger of the token and the p95-latency saving."""
    out = 0.0
    for mine, theirs in zip(_cheapness(pick), _cheapness(best), strict=True):
        if math.isfinite(mine) and math.isfinite(theirs) and theirs > 0:
            out = max(out, (theirs - mine) / theirs)
    return out


def select(
    evidence: list[Evidence],
    weights: dict[str, float],
    rule: str,
    confidence: float,
    samples: int,
    seed: int = 0,
    on: str = "held-out",
    min_saving: float = 0.2,
) -> Selection:
    """Pick among finalists by ``rule`` (``cheapest_tied`` or ``best``); ``weights`` combine ``evidence`` scores.

    With ``cheapest_tied`` a tied finalist replaces the best only if it saves at least ``min_saving`` of the best's
    tokens per question or p95 latency (:func:`saving`)."""
    if not evidence:
        raise ValueError("no finalist to select from")
    best = max(evidence, key=lambda e: e.objective)
    versus = {
        e.trial.run_id: paired_difference(best.scores, e.scores, weights, confidence, samples, seed)
        for e in evidence
        if e is not best
    }
    tied = [best, *(e for e in evidence if e is not best and versus[e.trial.run_id].verdict == "tied")]
    tied_ids = tuple(e.trial.run_id for e in tied)
    if rule == "best" or len(tied) == 1:
        why = (
            f"highest {on} objective"
            if rule == "best"
            else f"highest {on} objective; no other finalist of {len(evidence)} is tied with it"
        )
        return Selection(best.trial, why, best.trial, versus, tied_ids)
    pick = min(tied, key=_cheapness)
    if pick is not best and saving(pick, best) < min_saving:
        why = (
            f"highest {on} objective; the cheapest of the {len(tied)} finalists tied with it saves only "
            f"{saving(pick, best):.0%} of its cost ({pick.tokens_per_question:.0f} vs "
            f"{best.tokens_per_question:.0f} tokens/question), below search.min_saving {min_saving:.0%}"
        )
        return Selection(best.trial, why, best.trial, versus, tied_ids)
    if pick is best:
        why = (
            f"highest {on} objective and the cheapest of the {len(tied)} finalists tied with it "
            f"({pick.tokens_per_question:.0f} tokens/question)"
        )
    else:
        why = (
            f"cheapest of the {len(tied)} finalists tied with the best {on} objective at {confidence:.0%} "
            f"({pick.tokens_per_question:.0f} vs {best.tokens_per_question:.0f} tokens/question, "
            f"{saving(pick, best):.0%} less; "
            f"{versus[pick.trial.run_id].describe()})"
        )
    return Selection(pick.trial, why, best.trial, versus, tied_ids)
