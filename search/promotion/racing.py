"""Racing confirmation's stop rule: finalists answer held-out questions in batches until one is left.

Contract (F-Race / irace style, with ragsweep's own test of a tie): after each batch, :func:`race_step` takes every
running finalist's per-question scores on the held-out questions answered so far, finds the best by objective, and
drops each finalist the best is significantly better than: the paired bootstrap interval of best minus it, on the
same questions and at the search's confidence, lies above 0 (the test :func:`~.selection.select` calls a tie).
A finalist tied with the best keeps running, so the cheapest-tied rule later sees every tie on all the questions
the race used. :func:`race_over`: one finalist left, or every held-out question answered; a race that starts with
a single finalist has nothing to decide and answers every held-out question (the promotion gates compare it with
the champion on them).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ragsweep.judges.intervals import PairedDifference, Scores, paired_difference
from ragsweep.judges.scoring import aggregate, objective


@dataclass(frozen=True)
class Step:
    """One round's outcome: who runs on, who dropped out (with best minus it), and the best so far."""

    alive: list[str]
    dropped: dict[str, PairedDifference]
    best: str


def objective_of(scores: Mapping[str, Scores], weights: Mapping[str, float]) -> float:
    """The objective over the questions answered (NaN skipped per metric), as a trial computes it."""
    rows = [{k: float("nan") if v is None else float(v) for k, v in s.items()} for s in scores.values()]
    return objective(aggregate(rows, list(weights)), weights)


def race_step(
    scores: Mapping[str, Mapping[str, Scores]],
    alive: list[str],
    weights: Mapping[str, float],
    confidence: float,
    samples: int,
    seed: int = 0,
) -> Step:
    """``scores``: run id -> question id -> metric -> value, for every running finalist."""
    best = max(alive, key=lambda r: objective_of(scores[r], weights))
    dropped = {}
    for r in alive:
        if r == best:
            continue
        d = paired_difference(scores[best], scores[r], weights, confidence, samples, seed)
        if d.verdict == "better":
            dropped[r] = d
    return Step([r for r in alive if r not in dropped], dropped, best)


def race_over(alive: list[str], answered: int, total: int, started: int) -> bool:
    """``started``: finalists at the start of the race."""
    return answered >= total or (started > 1 and len(alive) <= 1)
