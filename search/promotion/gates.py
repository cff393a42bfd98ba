"""Promotion gates: may the search's best trial replace the current champion?

Contract: :func:`evaluate` takes the ``promotion`` settings, the objective weights, the candidate and the current
champion (``None`` if there is none) and returns a :class:`Decision`: every gate with whether it passed, why,
and its numbers. Nothing here talks to MLflow; :mod:`search.promote` gathers the inputs and records the outcome.

Gates, in order (all are evaluated, so a decision lists every reason):

- ``min_objective`` and ``min_metrics``: absolute floors on the candidate's trial metrics.
- ``max_latency_p95_s``: the candidate's p95 seconds per question.
- ``signature``: the candidate's pyfunc input/output signature equals the champion's (clients keep working).
- ``beats_champion``: on the questions both answered (the held-out questions when the search confirmed both
  configurations on them), the objective of candidate minus champion has a paired bootstrap confidence
  interval (:func:`judges.intervals.paired_difference`) whose lower end is above zero.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from ragsweep.judges.intervals import paired_difference
from ragsweep.search.config import PromotionSettings


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


def _floors(s: PromotionSettings, c: Candidate) -> list[Gate]:
    gates = []
    floors = {**({"objective": s.min_objective} if s.min_objective is not None else {}), **s.min_metrics}
    for name, floor in floors.items():
        v = float(c.metrics.get(name, math.nan))
        ok = math.isfinite(v) and v >= floor
        gates.append(
            Gate(
                f"min_{name}", ok, f"{name} {v:.4f} {'>=' if ok else '<'} floor {floor:g}", {"value": v, "floor": floor}
            )
        )
    if s.max_latency_p95_s is not None:
        v = float(c.metrics.get("latency_p95_s", math.nan))
        ok = math.isfinite(v) and v <= s.max_latency_p95_s
        gates.append(
            Gate(
                "max_latency_p95_s",
                ok,
                f"p95 latency {v:.3f} s {'<=' if ok else '>'} limit {s.max_latency_p95_s:g} s",
                {"value": v, "limit": s.max_latency_p95_s},
            )
        )
    return gates


def _versus(s: PromotionSettings, weights: Mapping[str, float], c: Candidate, champ: Candidate) -> list[Gate]:
    gates = []
    if champ.signature is not None and c.signature != champ.signature:
        gates.append(
            Gate(
                "signature",
                False,
                f"input/output signature differs from {champ.label}'s "
                f"({c.signature} vs {champ.signature}); clients of the champion would break",
            )
        )
    elif champ.signature is not None:
        gates.append(Gate("signature", True, f"same signature as {champ.label}"))
    if not s.compare_to_champion:
        return gates
    d = paired_difference(c.scores, champ.scores, weights, s.confidence, s.bootstrap_samples)
    if d.n < 2:
        gates.append(
            Gate(
                "beats_champion",
                False,
                f"only {d.n} question(s) answered by both this trial and {champ.label}: cannot "
                "compare (different dataset or question sample?); promote by hand with ragsweep promote "
                "--force",
                {"n": float(d.n)},
            )
        )
        return gates
    nums = {
        "n": float(d.n),
        "mean_diff": d.mean,
        "ci_low": d.low,
        "ci_high": d.high,
        "confidence": s.confidence,
        "candidate_mean": d.a_objective,
        "champion_mean": d.b_objective,
    }
    ci = f"{s.confidence:.0%} CI [{d.low:+.4f}, {d.high:+.4f}]"
    if d.verdict == "better":
        gates.append(
            Gate(
                "beats_champion",
                True,
                f"better than {champ.label} by {d.mean:+.4f} on {d.n} shared questions, {ci} excludes 0",
                nums,
            )
        )
    else:
        verdict, where = (
            ("worse than", "is below 0") if d.verdict == "worse" else ("not distinguishable from", "includes 0")
        )
        gates.append(
            Gate(
                "beats_champion",
                False,
                f"{verdict} {champ.label}: mean difference {d.mean:+.4f} on {d.n} shared questions, {ci} {where}",
                nums,
            )
        )
    return gates


def evaluate(
    s: PromotionSettings, weights: Mapping[str, float], candidate: Candidate, champion: Candidate | None
) -> Decision:
    gates = _floors(s, candidate)
    if champion is not None:
        gates += _versus(s, weights, candidate, champion)
    return Decision(all(g.passed for g in gates), tuple(gates))
