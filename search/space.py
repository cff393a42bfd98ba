"""The search space as an Optuna define-by-run function, and the validated params of one trial.

Contract: :class:`DefineByRun` turns ``config.space`` into ``fn(optuna.Trial) -> None`` for Ray's
``OptunaSearch``, with two conditional rules: ``rerank_candidates`` is sampled only when the reranker is on,
and an overlap *range* is clipped to the trial's ``chunk_size - 1``. :meth:`TrialParams.from_sampled`
validates what was sampled (a bad value raises at once, before any model work). :func:`baseline_point`,
:func:`grid_points` and :func:`distributions` derive the baseline trial, the full grid and Optuna
distributions from the same space; each raises ``ValueError`` naming the key when the space does not allow it.
"""

from __future__ import annotations

import itertools
from typing import Any

import optuna
from pydantic import Field, model_validator

from search.config import FloatRange, IntRange, Reranker, Retriever, SearchSpace, _Strict

# Sampled in this order (conditional keys after the keys they depend on).
PARAM_NAMES = ("chunk_size", "chunk_overlap", "retriever", "top_k", "reranker", "prompt", "temperature",
               "rerank_candidates")
CONDITIONAL = {"rerank_candidates": ("reranker", "cross_encoder")}  # key -> (parent key, parent value)


class TrialParams(_Strict):
    chunk_size: int = Field(ge=50)
    chunk_overlap: int = Field(ge=0)
    retriever: Retriever
    top_k: int = Field(ge=1)
    reranker: Reranker
    prompt: str
    temperature: float = Field(ge=0.0, le=2.0)
    rerank_candidates: int | None = Field(None, ge=1, description="only with a reranker")

    @model_validator(mode="after")
    def _overlap(self) -> TrialParams:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be < chunk_size ({self.chunk_size})")
        return self

    @classmethod
    def from_sampled(cls, sampled: dict[str, Any]) -> TrialParams:
        return cls.model_validate({k: sampled[k] for k in PARAM_NAMES if k in sampled})


def _active(name: str, values: dict[str, Any]) -> bool:
    parent = CONDITIONAL.get(name)
    return parent is None or values.get(parent[0]) == parent[1]


def _suggest(trial: optuna.Trial, name: str, spec: Any, values: dict[str, Any]) -> Any:
    if isinstance(spec, IntRange):
        high = spec.high
        if name == "chunk_overlap":
            # Bounded by this trial's chunk size; keep the step grid aligned with low.
            high = min(high, values["chunk_size"] - 1)
            high -= (high - spec.low) % spec.step
        return trial.suggest_int(name, spec.low, high, step=spec.step, log=spec.log)
    if isinstance(spec, FloatRange):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return trial.suggest_categorical(name, list(spec))


class DefineByRun:
    """``fn(optuna.Trial)`` sampling every active key of the space; a class, not a closure, so Tune can pickle it."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> None:
        values: dict[str, Any] = {}
        for name in PARAM_NAMES:
            if _active(name, values):
                values[name] = _suggest(trial, name, getattr(self.space, name), values)


def _first(spec: Any) -> Any:
    return spec.low if isinstance(spec, (IntRange, FloatRange)) else spec[0]


def _contains(spec: Any, value: Any) -> bool:
    if isinstance(spec, (IntRange, FloatRange)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and spec.low <= value <= spec.high
        return ok and (not isinstance(spec, IntRange) or (value - spec.low) % spec.step == 0)
    return value in spec


def baseline_point(space: SearchSpace, given: dict[str, Any]) -> dict[str, Any]:
    """The baseline trial's params: ``given`` completed with the first choice (low end) of each other key."""
    unknown = sorted(set(given) - set(PARAM_NAMES))
    if unknown:
        raise ValueError(f"search.baseline: unknown key {unknown[0]!r}; keys: {', '.join(PARAM_NAMES)}")
    point: dict[str, Any] = {}
    for name in PARAM_NAMES:
        if not _active(name, point):
            continue
        spec = getattr(space, name)
        value = given.get(name, _first(spec))
        if not _contains(spec, value):
            raise ValueError(f"search.baseline.{name}: {value!r} is not in space.{name} ({_describe(spec)})")
        point[name] = value
    TrialParams.from_sampled(point)  # e.g. overlap >= chunk size
    return point


def _describe(spec: Any) -> str:
    if isinstance(spec, (IntRange, FloatRange)):
        return f"range {spec.low}..{spec.high}"
    return f"choices {list(spec)}"


def grid_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Every combination of the space (int ranges expanded by step); float ranges cannot be a grid."""
    axes: dict[str, list[Any]] = {}
    for name in PARAM_NAMES:
        spec = getattr(space, name)
        if isinstance(spec, FloatRange):
            raise ValueError(f"search.sampler 'grid' needs choices, but space.{name} is a float range")
        axes[name] = list(range(spec.low, spec.high + 1, spec.step)) if isinstance(spec, IntRange) else list(spec)
    if max(axes["chunk_overlap"]) >= min(axes["chunk_size"]):
        raise ValueError("search.sampler 'grid' needs every chunk_overlap value below the smallest chunk_size "
                         f"({min(axes['chunk_size'])}), got {max(axes['chunk_overlap'])}")
    points = []
    for combo in itertools.product(*axes.values()):
        p = dict(zip(axes, combo, strict=True))
        if not _active("rerank_candidates", p):
            if p["rerank_candidates"] != axes["rerank_candidates"][0]:
                continue  # inactive key: one point, not one per unused value
            del p["rerank_candidates"]
        points.append(p)
    return points


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    """The value lists Optuna's ``GridSampler`` walks (the grid of :func:`grid_points`).

    ``rerank_candidates`` is left out when no trial can use it; with rerankers on and off in one grid, the
    reranker-off points repeat once per candidates value (Optuna's grid is a plain product).
    """
    axes: dict[str, list[Any]] = {}
    for p in grid_points(space):
        for k, v in p.items():
            if v not in axes.setdefault(k, []):
                axes[k].append(v)
    return axes


def distributions(space: SearchSpace) -> dict[str, optuna.distributions.BaseDistribution]:
    """Optuna distributions of every key (overlap over its full range), to rebuild a study for reports."""
    out: dict[str, optuna.distributions.BaseDistribution] = {}
    for name in PARAM_NAMES:
        spec = getattr(space, name)
        if isinstance(spec, IntRange):
            out[name] = optuna.distributions.IntDistribution(spec.low, spec.high, step=spec.step, log=spec.log)
        elif isinstance(spec, FloatRange):
            out[name] = optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log)
        else:
            out[name] = optuna.distributions.CategoricalDistribution(list(spec))
    return out
