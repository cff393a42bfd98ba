"""Promotion gates: may the search's best trial replace the current champion?

Contract: :func:`evaluate` takes the ``promotion`` settings, the objective weights, the candidate and the current
champion (``None`` if there is none) and returns a :class:`Decision`: every gate with whether it passed, why,
and its numbers. Nothing here talks to MLflow; :mod:`search.promote` gathers the inputs and records the outcome.

Gates, in order (all are evaluated, so a decision lists every reason):

- ``min_objective`` and ``min_metrics``: absolute floors on the candidate's trial metrics.
- ``max_latency_p95_s``: the candidate's p95 seconds per question.
- ``signature``: the candidate's pyfunc input/output signature equals the champion's (clients keep working).
- ``beats_champion``: on the questions both answered, the per-question objective (the same weighted sum as the
  trial objective, with an undefined score counting 0) of candidate minus champion has a paired bootstrap
  confidence interval whose lower end is above zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from judges.scoring import objective
from search.config import PromotionSettings


@dataclass(frozen=True)
class Candidate:
    """What the gates need of a model: its trial's metrics, per-question scores and pyfunc signature."""

    label: str  # e.g. "trial 3 (run abc)" or "champion v2"
    metrics: Mapping[str, float]
    scores: Mapping[str, Mapping[str, float]]  # question id -> metric -> value (NaN when undefined)
    signature: dict[str, Any] | None  # ModelSignature.to_dict(); None when unknown


@dataclass(frozen=True)
class Gate:
    name: str
    passed: bool
    detail: str
    numbers: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Decision:
    promoted: bool
    gates: tuple[Gate, ...]

    @property
    def reason(self) -> str:
        failed = [g for g in self.gates if not g.passed]
        if not failed:
            return "all gates passed: " + "; ".join(g.detail for g in self.gates) if self.gates else "no gates"
        return "; ".join(f"{g.name}: {g.detail}" for g in failed)

    def as_dict(self) -> dict[str, Any]:
        return {"promoted": self.promoted, "reason": self.reason, "gates": [asdict(g) for g in self.gates]}


def per_question_objective(scores: Mapping[str, Mapping[str, float]], weights: Mapping[str, float]) -> dict[str, float]:
    return {qid: objective(s, weights) for qid, s in scores.items()}


def paired_bootstrap(diffs: np.ndarray, confidence: float, samples: int, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of the mean of ``diffs`` at ``confidence``, from ``samples`` resamples of questions."""
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(diffs), size=(samples, len(diffs)))
    means = diffs[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    return float(np.quantile(means, alpha)), float(np.quantile(means, 1 - alpha))


def _floors(s: PromotionSettings, c: Candidate) -> list[Gate]:
    gates = []
    floors = {**({"objective": s.min_objective} if s.min_objective is not None else {}), **s.min_metrics}
    for name, floor in floors.items():
        v = float(c.metrics.get(name, math.nan))
        ok = math.isfinite(v) and v >= floor
        gates.append(Gate(f"min_{name}", ok, f"{name} {v:.4f} {'>=' if ok else '<'} floor {floor:g}",
                          {"value": v, "floor": floor}))
    if s.max_latency_p95_s is not None:
        v = float(c.metrics.get("latency_p95_s", math.nan))
        ok = math.isfinite(v) and v <= s.max_latency_p95_s
        gates.append(Gate("max_latency_p95_s", ok,
                          f"p95 latency {v:.3f} s {'<=' if ok else '>'} limit {s.max_latency_p95_s:g} s",
                          {"value": v, "limit": s.max_latency_p95_s}))
    return gates


def _versus(s: PromotionSettings, weights: Mapping[str, float], c: Candidate, champ: Candidate) -> list[Gate]:
    gates = []
    if champ.signature is not None and c.signature != champ.signature:
        gates.append(Gate("signature", False, f"input/output signature differs from {champ.label}'s "
                          f"({c.signature} vs {champ.signature}); clients of the champion would break"))
    elif champ.signature is not None:
        gates.append(Gate("signature", True, f"same signature as {champ.label}"))
    if not s.compare_to_champion:
        return gates
    mine = per_question_objective(c.scores, weights)
    theirs = per_question_objective(champ.scores, weights)
    common = sorted(set(mine) & set(theirs))
    if len(common) < 2:
        gates.append(Gate("beats_champion", False,
                          f"only {len(common)} question(s) answered by both this trial and {champ.label}: cannot "
                          "compare (different dataset or question sample?); promote by hand with ragsweep promote "
                          "--force", {"n": float(len(common))}))
        return gates
    diffs = np.array([mine[q] - theirs[q] for q in common])
    lo, hi = paired_bootstrap(diffs, s.confidence, s.bootstrap_samples)
    mean = float(diffs.mean())
    nums = {"n": float(len(common)), "mean_diff": mean, "ci_low": lo, "ci_high": hi, "confidence": s.confidence,
            "candidate_mean": float(np.mean([mine[q] for q in common])),
            "champion_mean": float(np.mean([theirs[q] for q in common]))}
    ci = f"{s.confidence:.0%} CI [{lo:+.4f}, {hi:+.4f}]"
    if lo > 0:
        gates.append(Gate("beats_champion", True, f"better than {champ.label} by {mean:+.4f} per question on "
                          f"{len(common)} shared questions, {ci} excludes 0", nums))
    else:
        verdict, where = ("worse than", "is below 0") if hi < 0 else ("not distinguishable from", "includes 0")
        gates.append(Gate("beats_champion", False, f"{verdict} {champ.label}: mean difference {mean:+.4f} per "
                          f"question on {len(common)} shared questions, {ci} {where}", nums))
    return gates


def evaluate(s: PromotionSettings, weights: Mapping[str, float], candidate: Candidate,
             champion: Candidate | None) -> Decision:
    gates = _floors(s, candidate)
    if champion is not None:
        gates += _versus(s, weights, candidate, champion)
    return Decision(all(g.passed for g in gates), tuple(gates))
