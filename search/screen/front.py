"""Which retrieval configurations a search screens, and which of them its LLM trials try.

Contract:
- :func:`screen_points` lists the retrieval configurations of a space (every combination of the retrieval keys,
  ranges at a few evenly spaced values), seeded-sampled down to ``max_points`` configurations on at most
  ``max_indexes`` distinct indexes; the baseline's configuration is always among them.
- :func:`front` is the recall-versus-context-tokens Pareto front of screened configurations (mean recall of the
  context sent, higher is better; its mean estimated tokens, lower is better), cheapest first.
- :func:`candidates` are what the LLM stage tries: the front, and the baseline's configuration. A front larger
  than ``search.max_candidates`` is thinned (:func:`thin`) to its statistically distinct steps (:func:`steps`:
  walking from the cheapest point, a point starts a new step only when its recall is significantly above the last
  step's, by a paired bootstrap over the same questions), each represented by its highest-recall point.
- :func:`label` names a configuration for the ``retrieval`` choice of the LLM stage.
"""

from __future__ import annotations

import itertools
import json
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from ragsweep.judges.intervals import paired_difference
from ragsweep.search.screen.retrieval import Row, means
from ragsweep.search.space import (
    CONDITIONAL,
    INDEX_KEYS,
    RETRIEVAL_KEYS,
    FloatRange,
    IntRange,
    SearchSpace,
    TrialParams,
    searched,
)

RANGE_VALUES = 6  # values a range contributes to the screen when it has more than RANGE_MAX
RANGE_MAX = 12


@dataclass(frozen=True)
class Screened:
    """One screened configuration: its retrieval keys, label and per-question rows."""

    point: dict[str, Any]
    rows: list[Row]

    @property
    def label(self) -> str:
        return label(self.point)

    @property
    def recall(self) -> float:
        v = means(self.rows)["recall_at_k"]
        return v if math.isfinite(v) else 0.0

    @property
    def tokens(self) -> float:
        v = means(self.rows)["context_tokens"]
        return v if math.isfinite(v) else math.inf


def label(point: dict[str, Any]) -> str:
    """A stable, readable name: ``key=value`` of each retrieval key, in :data:`RETRIEVAL_KEYS` order."""
    return ",".join(f"{k}={point[k]}" for k in RETRIEVAL_KEYS if k in point)


def _axis(spec: Any) -> list[Any]:
    if isinstance(spec, IntRange):
        values = list(range(spec.low, spec.high + 1, spec.step))
        if len(values) <= RANGE_MAX:
            return values
        idx = sorted({round(i * (len(values) - 1) / (RANGE_VALUES - 1)) for i in range(RANGE_VALUES)})
        return [values[i] for i in idx]
    if isinstance(spec, FloatRange):
        if spec.log:
            ratio = (spec.high / spec.low) ** (1 / (RANGE_VALUES - 1))
            return [spec.low * ratio**i for i in range(RANGE_VALUES)]
        return [spec.low + i * (spec.high - spec.low) / (RANGE_VALUES - 1) for i in range(RANGE_VALUES)]
    return list(spec)


def _active(name: str, values: dict[str, Any]) -> bool:
    rules = CONDITIONAL.get(name)
    return rules is None or any(values.get(parent) in allowed for parent, allowed in rules)


def retrieval_keys(space: SearchSpace) -> tuple[str, ...]:
    """The retrieval keys this space searches."""
    return tuple(k for k in searched(space) if k in RETRIEVAL_KEYS)


def all_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Every retrieval configuration of ``space`` (ranges at :func:`_axis` values); a key a point does not use
    (e.g. ``hybrid_weight`` without hybrid) is left out of it, so such points are listed once."""
    keys = retrieval_keys(space)
    axes = [_axis(getattr(space, k)) for k in keys]
    seen, out = set(), []
    for combo in itertools.product(*axes):
        p = dict(zip(keys, combo, strict=True))
        p = {k: v for k, v in p.items() if _active(k, p)}
        if p.get("chunk_overlap", 0) >= p["chunk_size"]:
            continue
        ident = json.dumps(p, sort_keys=True, default=str)
        if ident not in seen:
            seen.add(ident)
            out.append(p)
    return out


def _index_of(point: dict[str, Any]) -> str:
    return json.dumps({k: point.get(k) for k in INDEX_KEYS}, sort_keys=True, default=str)


def index_count(points: Sequence[dict[str, Any]]) -> int:
    """Distinct indexes ``points`` need (each is built once)."""
    return len({_index_of(p) for p in points})


def screen_points(
    space: SearchSpace, baseline: dict[str, Any] | None, seed: int, max_points: int, max_indexes: int
) -> list[dict[str, Any]]:
    """The configurations a screen scores: the baseline's first, then a seeded sample within both caps."""
    points = all_points(space)
    rng = random.Random(seed)
    base = {k: v for k, v in (baseline or {}).items() if k in RETRIEVAL_KEYS}
    base_index = _index_of(base) if base else None
    indexes = list(dict.fromkeys(_index_of(p) for p in points))
    if len(indexes) > max_indexes:
        others = [i for i in indexes if i != base_index]
        keep = set(rng.sample(others, max_indexes - (base_index is not None)))
        if base_index is not None:
            keep.add(base_index)
        points = [p for p in points if _index_of(p) in keep]
    if len(points) > max_points:
        points = rng.sample(points, max_points)
    if base and base not in points:
        points = [base, *points[: max_points - 1]]
    elif base:
        points = [base, *(p for p in points if p != base)]
    return points


def front(screened: Sequence[Screened]) -> list[Screened]:
    """The non-dominated configurations (recall up, tokens down), cheapest first; equal points kept once."""
    out: list[Screened] = []
    for s in screened:
        dominated = any(
            o.recall >= s.recall and o.tokens <= s.tokens and (o.recall > s.recall or o.tokens < s.tokens)
            for o in screened
        )
        if not dominated and not any(o.recall == s.recall and o.tokens == s.tokens for o in out):
            out.append(s)
    return sorted(out, key=lambda s: (s.tokens, -s.recall))


def _recall_scores(s: Screened) -> dict[str, dict[str, float]]:
    return {str(r["id"]): {"recall_at_k": r["recall_at_k"]} for r in s.rows}


def steps(points: Sequence[Screened], confidence: float, samples: int, seed: int) -> list[Screened]:
    """The statistically distinct steps of a front (cheapest first): each kept point's recall is significantly
    above the previous kept point's on the same questions."""
    kept: list[Screened] = []
    for s in points:
        if not kept:
            kept.append(s)
            continue
        d = paired_difference(
            _recall_scores(s), _recall_scores(kept[-1]), {"recall_at_k": 1.0}, confidence, samples, seed
        )
        if d.verdict == "better":
            kept.append(s)
    return kept


def thin(points: list[Screened], n: int, confidence: float, samples: int, seed: int) -> list[Screened]:
    """At most ``n`` points of a front: its distinct steps (:func:`steps`), each represented by the step's
    highest-recall point; if still more than ``n``, ``n`` of them spread evenly from the cheapest to the dearest."""
    kept = steps(points, confidence, samples, seed)
    reps = []
    for i, start in enumerate(kept):  # a step runs from its first point to the next step's first point
        lo = points.index(start)
        hi = points.index(kept[i + 1]) if i + 1 < len(kept) else len(points)
        reps.append(max(points[lo:hi], key=lambda s: (s.recall, -s.tokens)))
    if len(reps) > n:
        reps = [reps[round(i * (len(reps) - 1) / (n - 1))] for i in range(n)] if n > 1 else [reps[-1]]
    return reps


def candidates(
    screened: Sequence[Screened],
    baseline: dict[str, Any] | None,
    confidence: float,
    samples: int,
    seed: int,
    max_candidates: int | None = None,
) -> list[Screened]:
    """What the LLM stage tries: the front (thinned to its statistically distinct steps only when it has more than
    ``max_candidates`` points), and the baseline's configuration (the reference every margin is measured against)
    when it is not one of them."""
    chosen = front(screened)
    if max_candidates is not None and len(chosen) > max_candidates:
        chosen = thin(chosen, max_candidates, confidence, samples, seed)
    base = {k: v for k, v in (baseline or {}).items() if k in RETRIEVAL_KEYS}
    if base and all(s.point != base for s in chosen):
        chosen += [s for s in screened if s.point == base]
    return chosen


def point_params(point: dict[str, Any], rest: dict[str, Any]) -> TrialParams:
    """A retrieval point completed by the generation keys ``rest`` into a trial's params (validated)."""
    return TrialParams.from_sampled({**rest, **point})
