"""Bootstrap intervals over questions: one configuration's metrics, and paired differences between two.

Contract: every function resamples *questions* (rows), never answers within a question, with a seeded
``numpy`` generator, so the same inputs give the same interval. A resample's metric is the mean of its finite
values (NaN skipped, as :func:`judges.scoring.aggregate` does) and its objective the weighted sum of those means
with an undefined mean counting 0 (as :func:`judges.scoring.objective`), so an interval brackets exactly the
number a trial reports. Intervals are percentile intervals at ``confidence``.

:func:`intervals` gives one configuration's interval per metric and for the objective; :func:`paired_difference`
the interval of ``objective(a) - objective(b)`` on the questions both answered, resampled together (paired),
with a verdict: ``better``, ``worse`` or ``tied`` (the interval includes 0).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from ragsweep.judges.scoring import objective as weighted_objective

Scores = Mapping[str, float | None]  # one question's metric -> value (None or NaN when undefined)
OBJECTIVE = "objective"


def _matrix(rows: Sequence[Scores], names: Sequence[str]) -> np.ndarray:
    """rows x names, None as NaN."""
    return np.array(
        [[math.nan if (v := r.get(n)) is None else float(v) for n in names] for r in rows], dtype=float
    ).reshape(len(rows), len(names))


def _resampled_means(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Means over the questions of each resample: (samples, metrics), NaN where a resample has no finite value."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN resample: its mean is NaN, counted 0 below
        return np.nanmean(values[idx], axis=1)


def _objective(means: np.ndarray, names: Sequence[str], weights: Mapping[str, float]) -> np.ndarray:
    w = np.array([weights.get(n, 0.0) for n in names])
    return np.nan_to_num(means, nan=0.0) @ w


def _percentiles(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    finite = samples[np.isfinite(samples)]
    if finite.size == 0:
        return math.nan, math.nan
    alpha = (1 - confidence) / 2
    return float(np.quantile(finite, alpha)), float(np.quantile(finite, 1 - alpha))


def _indices(n: int, samples: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, n, size=(samples, n))


def intervals(
    rows: Sequence[Scores],
    names: Sequence[str],
    weights: Mapping[str, float],
    confidence: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """``{metric: (low, high)}`` for each of ``names`` and for ``"objective"`` (the weighted sum of ``weights``);
    NaN bounds with fewer than two questions (no spread to resample)."""
    names = list(dict.fromkeys([*names, *weights]))
    if len(rows) < 2:
        return {n: (math.nan, math.nan) for n in [*names, OBJECTIVE]}
    means = _resampled_means(_matrix(rows, names), _indices(len(rows), samples, seed))
    out = {n: _percentiles(means[:, i], confidence) for i, n in enumerate(names)}
    out[OBJECTIVE] = _percentiles(_objective(means, names, weights), confidence)
    return out


@dataclass(kw_only=True, frozen=True)
class PairedDifference:
    """``objective(a) - objective(b)`` on the ``n`` questions both answered, with its interval."""

    n: int
    mean: float  # the difference of the two objectives on the shared questions
    low: float
    high: float
    confidence: float
    a_objective: float
    b_objective: float

    @property
    def verdict(self) -> str:
        """``better`` (a above b: the interval is above 0), ``worse`` (below 0), or ``tied`` (includes 0)."""
        if self.n < 2 or not (math.isfinite(self.low) and math.isfinite(self.high)):
            return "tied"
        return "better" if self.low > 0 else "worse" if self.high < 0 else "tied"

    def describe(self) -> str:
        return (
            f"{self.mean:+.4f} on {self.n} shared questions, {self.confidence:.0%} CI "
            f"[{self.low:+.4f}, {self.high:+.4f}]: {self.verdict}"
        )


def paired_difference(
    a: Mapping[str, Scores],
    b: Mapping[str, Scores],
    weights: Mapping[str, float],
    confidence: float = 0.95,
    samples: int = 2000,
    seed: int = 0,
) -> PairedDifference:
    """Paired bootstrap of ``objective(a) - objective(b)`` over the question ids in both ``a`` and ``b``
    (question id -> scores); each resample draws the same questions for both."""
    shared = sorted(set(a) & set(b))
    names = list(weights)
    if not shared:
        return PairedDifference(
            n=0,
            mean=math.nan,
            low=math.nan,
            high=math.nan,
            confidence=confidence,
            a_objective=math.nan,
            b_objective=math.nan,
        )
    ma, mb = _matrix([a[q] for q in shared], names), _matrix([b[q] for q in shared], names)
    point_a = weighted_objective(
        dict(zip(names, _resampled_means(ma, np.arange(len(shared))[None, :])[0], strict=True)), weights
    )
    point_b = weighted_objective(
        dict(zip(names, _resampled_means(mb, np.arange(len(shared))[None, :])[0], strict=True)), weights
    )
    if len(shared) < 2:
        return PairedDifference(
            n=len(shared),
            mean=float(point_a - point_b),
            low=math.nan,
            high=math.nan,
            confidence=confidence,
            a_objective=float(point_a),
            b_objective=float(point_b),
        )
    idx = _indices(len(shared), samples, seed)
    diffs = _objective(_resampled_means(ma, idx), names, weights) - _objective(
        _resampled_means(mb, idx), names, weights
    )
    lo, hi = _percentiles(diffs, confidence)
    return PairedDifference(
        n=len(shared),
        mean=float(point_a - point_b),
        low=lo,
        high=hi,
        confidence=confidence,
        a_objective=float(point_a),
        b_objective=float(point_b),
    )
