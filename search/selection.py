"""Which finished trial wins: the best quality, or with a cost objective a point of the Pareto front.

Contract: trials are :class:`TrialRecord` with ``objective`` (quality, maximised) and ``metrics`` (including the
cost metric, minimised). :func:`pareto_front` returns the non-dominated trials sorted by cost; :func:`choose`
applies the promotion rule of ``objective`` and returns the winner with the reason, or ``(None, reason)`` when no trial
satisfies the rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from search.config import Objective


@dataclass
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
            (o.objective >= q and _cost(o, cost) <= c) and (o.objective > q or _cost(o, cost) < c)
            for o in trials
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
        return None, (f"no trial has {objective.cost} <= {objective.max_cost} (cheapest on the front: "
                      f"{cheapest:.4g}); nothing promoted")
    pick = max(ok, key=lambda t: t.objective)
    return pick, f"highest objective with {objective.cost} <= {objective.max_cost} on the Pareto front"
