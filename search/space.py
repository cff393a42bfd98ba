"""The search space as an Optuna define-by-run function, and the validated params of one trial.

Contract: :class:`DefineByRun` turns ``config.space`` into ``fn(optuna.Trial) -> None`` for Ray's
``OptunaSearch``, with conditional rules (:data:`CONDITIONAL`): a key is sampled only in trials where it acts
(``rerank_candidates`` with a reranker, ``hybrid_weight`` with hybrid retrieval, ``rrf_k`` wherever lists are
fused), and an overlap *range* is clipped to the trial's ``chunk_size - 1``. :meth:`TrialParams.from_sampled`
validates what was sampled (a bad value raises at once, before any model work). :func:`baseline_point`,
:func:`grid_points` and :func:`distributions` derive the baseline trial, the full grid and Optuna
distributions from the same space; each raises ``ValueError`` naming the key when the space does not allow it.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING, Annotated, Any, TypeAlias

import optuna
from pydantic import Field, model_validator

from ragsweep.pipelines.chunking import CHUNKERS
from ragsweep.pipelines.context import ORDERS
from ragsweep.pipelines.rerank import RERANKERS
from ragsweep.pipelines.retrieve import RETRIEVERS
from ragsweep.pipelines.transforms import TRANSFORMS
from ragsweep.search.schema import Strict as _Strict


class _Range(_Strict):
    low: Any
    high: Any
    log: bool = False

    @model_validator(mode="after")
    def _ordered(self) -> _Range:
        if self.low > self.high:
            raise ValueError(f"low ({self.low}) must be <= high ({self.high})")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        if self.log and getattr(self, "step", 1) != 1:
            raise ValueError("a log range cannot have a step (Optuna)")
        return self

    def values_bounds(self) -> tuple[Any, Any]:
        return self.low, self.high


class IntRange(_Range):
    low: int
    high: int
    step: int = Field(1, ge=1, description="a positive integer: values low, low + step, ... up to high")


class FloatRange(_Range):
    low: float
    high: float


if TYPE_CHECKING:  # mypy sees plain names; pydantic validates them against the registries
    Retriever: TypeAlias = str
    Reranker: TypeAlias = str
    Transform: TypeAlias = str
    Chunker: TypeAlias = str
    ContextOrder: TypeAlias = str
else:
    Retriever, Reranker, Transform = RETRIEVERS.field(), RERANKERS.field(), TRANSFORMS.field()
    Chunker, ContextOrder = CHUNKERS.field(), ORDERS.field()


def _bounds(p: list[Any] | IntRange | FloatRange) -> tuple[Any, Any]:
    return (min(p), max(p)) if isinstance(p, list) else p.values_bounds()


def chunk_bounds(space: SearchSpace) -> tuple[int, int]:
    """The smallest chunk_size and the largest overlap a trial with it can get (the most chunks one index has)."""
    size = int(_bounds(space.chunk_size)[0])
    return size, min(int(_bounds(space.chunk_overlap)[1]), size - 1)


# key -> (parent key, parent values): sampled only when one of them is the trial's value of the parent. rrf_k
# acts wherever several lists are fused: hybrid retrieval, or a transform that searches with several texts.
CONDITIONAL: dict[str, tuple[tuple[str, tuple[Any, ...]], ...]] = {
    "rerank_candidates": (("reranker", ("cross_encoder",)),),
    "hybrid_weight": (("retriever", ("hybrid",)),),
    "rrf_k": (("retriever", ("hybrid",)), ("query_transform", ("hyde", "multi_query"))),
}


class SearchSpace(_Strict):
    """Each key is a list of choices (categorical) or a range ``{low, high[, step][, log]}``."""

    chunk_size: Annotated[list[int], Field(min_length=1)] | IntRange = [400, 800, 1200]
    chunk_overlap: Annotated[list[int], Field(min_length=1)] | IntRange = [0, 100]
    retriever: Annotated[list[Retriever], Field(min_length=1)] = ["dense", "bm25", "hybrid"]
    top_k: Annotated[list[int], Field(min_length=1)] | IntRange = [2, 3, 5]
    reranker: Annotated[list[Reranker], Field(min_length=1)] = ["none"]
    prompt: Annotated[list[str], Field(min_length=1)] = ["concise", "extractive"]
    temperature: Annotated[list[float], Field(min_length=1)] | FloatRange = [0.0]
    # Conditional: sampled only in trials whose reranker is cross_encoder.
    rerank_candidates: Annotated[list[int], Field(min_length=1)] | IntRange = [20]
    chunker: Annotated[list[Chunker], Field(min_length=1)] = ["chars"]
    # 'default', a local model folder or a name from pipeline.embedders; unset = not searched (pipeline.embedder)
    embedder: Annotated[list[str], Field(min_length=1)] | None = None
    # names from llm.generators; unset = not searched (llm.generator)
    generator: Annotated[list[str], Field(min_length=1)] | None = None
    query_transform: Annotated[list[Transform], Field(min_length=1)] = ["none"]
    # Conditional: sampled only with hybrid retrieval (the dense legs' share of the fused score).
    hybrid_weight: Annotated[list[float], Field(min_length=1)] | FloatRange = [0.5]
    # Conditional: sampled only where lists are fused (hybrid, hyde, multi_query).
    rrf_k: Annotated[list[int], Field(min_length=1)] | IntRange = [2]
    context_order: Annotated[list[ContextOrder], Field(min_length=1)] = ["retrieved"]
    context_budget: Annotated[list[int], Field(min_length=1)] | IntRange = [0]

    @model_validator(mode="after")
    def _consistent(self) -> SearchSpace:
        cs_low, _ = _bounds(self.chunk_size)
        ov_low, ov_high = _bounds(self.chunk_overlap)
        k_low, _ = _bounds(self.top_k)
        if cs_low < 50:
            raise ValueError(f"chunk_size must be >= 50 characters, got {cs_low}")
        if ov_low < 0 or ov_low >= cs_low:
            raise ValueError(f"chunk_overlap must start in [0, smallest chunk_size) = [0, {cs_low}), got {ov_low}")
        # A range's upper end is clipped per trial to chunk_size - 1 (conditional); a list is fixed, so every
        # choice must fit every chunk size.
        if isinstance(self.chunk_overlap, list) and ov_high >= cs_low:
            raise ValueError(
                f"chunk_overlap choices must lie in [0, smallest chunk_size) = [0, {cs_low}), got {ov_high}; "
                "use a range {low, high} to bound overlap by each trial's chunk_size instead"
            )
        if _bounds(self.rerank_candidates)[0] < 1:
            raise ValueError("rerank_candidates must be >= 1")
        if k_low < 1:
            raise ValueError(f"top_k must be >= 1, got {k_low}")
        t_low, t_high = _bounds(self.temperature)
        if t_low < 0 or t_high > 2:
            raise ValueError("temperature must lie in [0, 2]")
        w_low, w_high = _bounds(self.hybrid_weight)
        if w_low < 0 or w_high > 1:
            raise ValueError("hybrid_weight (the dense share of hybrid fusion) must lie in [0, 1]")
        if _bounds(self.rrf_k)[0] < 1:
            raise ValueError("rrf_k must be >= 1")
        if _bounds(self.context_budget)[0] < 0:
            raise ValueError("context_budget must be >= 0 (0: no budget)")
        for key, rules in CONDITIONAL.items():  # a conditional key set where no trial can use it: a mistake
            if key in self.model_fields_set and not any(
                set(getattr(self, parent)) & set(allowed) for parent, allowed in rules
            ):
                where = " or ".join(
                    f"space.{parent} includes {' or '.join(map(repr, allowed))}" for parent, allowed in rules
                )
                raise ValueError(f"{key} is set but no trial would use it: it acts only when {where}")
        return self


# Sampled in this order (conditional keys after the keys they depend on).
PARAM_NAMES = (
    "chunk_size",
    "chunk_overlap",
    "retriever",
    "top_k",
    "reranker",
    "prompt",
    "temperature",
    "rerank_candidates",
    "chunker",
    "embedder",
    "generator",
    "query_transform",
    "hybrid_weight",
    "rrf_k",
    "context_order",
    "context_budget",
)
# The keys that decide which chunks reach the prompt: judged for free by the retrieval screen (search/screen). The
# context order changes no chunk and a query transformation costs LLM calls: both are generation keys.
RETRIEVAL_KEYS = (
    "chunker",
    "chunk_size",
    "chunk_overlap",
    "embedder",
    "retriever",
    "hybrid_weight",
    "rrf_k",
    "top_k",
    "reranker",
    "rerank_candidates",
    "context_budget",
)
INDEX_KEYS = ("chunker", "chunk_size", "chunk_overlap", "embedder")  # what one index is built from
STAGED = "retrieval"  # the LLM stage's choice among screened retrieval configurations (a label -> their values)
# The value a trial uses for a key it did not sample (the pipeline's behaviour when the key does not act).
INACTIVE_DEFAULTS = {"hybrid_weight": 0.5, "rrf_k": 2}


class TrialParams(_Strict):
    chunk_size: int = Field(ge=50)
    chunk_overlap: int = Field(ge=0)
    retriever: Retriever
    top_k: int = Field(ge=1)
    reranker: Reranker
    prompt: str
    temperature: float = Field(ge=0.0, le=2.0)
    rerank_candidates: int | None = Field(None, ge=1, description="only with a reranker")
    # Defaults: what a trial of a search from before these keys existed did.
    chunker: Chunker = "chars"
    embedder: str | None = Field(None, description="unset: pipeline.embedder (trials of searches before the key)")
    generator: str | None = Field(None, description="a name from llm.generators; unset: llm.generator")
    query_transform: Transform = "none"
    hybrid_weight: float | None = Field(None, ge=0.0, le=1.0, description="only with hybrid retrieval")
    rrf_k: int | None = Field(None, ge=1, description="only where lists are fused")
    context_order: ContextOrder = "retrieved"
    context_budget: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _overlap(self) -> TrialParams:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be < chunk_size ({self.chunk_size})")
        return self

    @classmethod
    def from_sampled(cls, sampled: dict[str, Any]) -> TrialParams:
        return cls.model_validate({k: sampled[k] for k in PARAM_NAMES if k in sampled})


def _active(name: str, values: dict[str, Any]) -> bool:
    rules = CONDITIONAL.get(name)
    return rules is None or any(values.get(parent) in allowed for parent, allowed in rules)


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
    """``fn(optuna.Trial)`` sampling every active key of the space; a class, not a closure, so Tune can pickle it.

    With ``candidates`` (label -> retrieval keys' values: the LLM stage of a two-stage search) it samples the
    categorical :data:`STAGED` among the labels and the generation keys only, and returns the chosen candidate's
    values as constants (Ray's ``OptunaSearch`` merges them into the trial's config)."""

    def __init__(self, space: SearchSpace, candidates: dict[str, dict[str, Any]] | None = None) -> None:
        self.space = space
        self.candidates = candidates

    def __call__(self, trial: optuna.Trial) -> dict[str, Any] | None:
        values: dict[str, Any] = {}
        fixed: dict[str, Any] | None = None
        if self.candidates is not None:
            fixed = dict(self.candidates[trial.suggest_categorical(STAGED, list(self.candidates))])
            values.update(fixed)
        for name in searched(self.space):
            if fixed is not None and name in RETRIEVAL_KEYS:
                continue
            if _active(name, values):
                values[name] = _suggest(trial, name, getattr(self.space, name), values)
        return fixed


def searched(space: SearchSpace) -> tuple[str, ...]:
    """The keys this space searches, in sampling order (an unset optional key such as ``embedder`` is not)."""
    return tuple(name for name in PARAM_NAMES if getattr(space, name) is not None)


def _first(spec: Any) -> Any:
    return spec.low if isinstance(spec, (IntRange, FloatRange)) else spec[0]


def _contains(spec: Any, value: Any) -> bool:
    if isinstance(spec, (IntRange, FloatRange)):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and spec.low <= value <= spec.high
        return ok and (not isinstance(spec, IntRange) or (value - spec.low) % spec.step == 0)
    return value in spec


def baseline_point(space: SearchSpace, given: dict[str, Any]) -> dict[str, Any]:
    """The baseline trial's params: ``given`` completed with the first choice (low end) of each other key."""
    keys = searched(space)
    unknown = sorted(set(given) - set(keys))
    if unknown:
        raise ValueError(f"search.baseline: unknown key {unknown[0]!r}; keys: {', '.join(keys)}")
    point: dict[str, Any] = {}
    for name in keys:
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


def describe_space(space: SearchSpace) -> str:
    """One line of what a search varies: each searched key with its choices or range (single choices last)."""
    keys = searched(space)
    varied = [k for k in keys if not isinstance(getattr(space, k), list) or len(getattr(space, k)) > 1]
    fixed = [f"{k}={getattr(space, k)[0]}" for k in keys if k not in varied and k not in CONDITIONAL]
    parts = [f"{k} {_describe(getattr(space, k))}" + (" (conditional)" if k in CONDITIONAL else "") for k in varied]
    return "; ".join(parts) + (f"; fixed: {', '.join(fixed)}" if fixed else "")


def grid_points(space: SearchSpace) -> list[dict[str, Any]]:
    """Every combination of the space (int ranges expanded by step); float ranges cannot be a grid."""
    axes: dict[str, list[Any]] = {}
    for name in searched(space):
        spec = getattr(space, name)
        if isinstance(spec, FloatRange):
            raise ValueError(f"search.sampler 'grid' needs choices, but space.{name} is a float range")
        axes[name] = list(range(spec.low, spec.high + 1, spec.step)) if isinstance(spec, IntRange) else list(spec)
    if max(axes["chunk_overlap"]) >= min(axes["chunk_size"]):
        raise ValueError(
            "search.sampler 'grid' needs every chunk_overlap value below the smallest chunk_size "
            f"({min(axes['chunk_size'])}), got {max(axes['chunk_overlap'])}"
        )
    points = []
    for combo in itertools.product(*axes.values()):
        p = dict(zip(axes, combo, strict=True))
        inactive = [k for k in CONDITIONAL if not _active(k, p)]
        if any(p[k] != axes[k][0] for k in inactive):
            continue  # an inactive key: one point, not one per unused value
        for k in inactive:
            del p[k]
        points.append(p)
    return points


def generation_keys(space: SearchSpace) -> tuple[str, ...]:
    """The keys the LLM stage of a two-stage search samples (every searched key but the retrieval keys)."""
    return tuple(k for k in searched(space) if k not in RETRIEVAL_KEYS)


def staged_points(space: SearchSpace, candidates: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Every configuration of a two-stage search's LLM stage: each candidate label x the generation keys' grid
    (float ranges cannot be a grid: ``ValueError`` naming the key)."""
    axes: dict[str, list[Any]] = {STAGED: list(candidates)}
    for name in generation_keys(space):
        spec = getattr(space, name)
        if isinstance(spec, FloatRange):
            raise ValueError(f"search.sampler 'grid' needs choices, but space.{name} is a float range")
        axes[name] = list(range(spec.low, spec.high + 1, spec.step)) if isinstance(spec, IntRange) else list(spec)
    points = []
    for combo in itertools.product(*axes.values()):
        p = dict(zip(axes, combo, strict=True))
        values = {**candidates[p[STAGED]], **p}
        inactive = [k for k in generation_keys(space) if not _active(k, values)]
        if any(p[k] != axes[k][0] for k in inactive):
            continue
        points.append({k: v for k, v in p.items() if k not in inactive})
    return points


def grid_search_space(space: SearchSpace) -> dict[str, list[Any]]:
    """The value lists Optuna's ``GridSampler`` walks (the grid of :func:`grid_points`).

    A conditional key is left out when no trial can use it; where it acts in some trials only, the others
    repeat once per value of it (Optuna's grid is a plain product).
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
    for name in searched(space):
        spec = getattr(space, name)
        if isinstance(spec, IntRange):
            out[name] = optuna.distributions.IntDistribution(spec.low, spec.high, step=spec.step, log=spec.log)
        elif isinstance(spec, FloatRange):
            out[name] = optuna.distributions.FloatDistribution(spec.low, spec.high, log=spec.log)
        else:
            out[name] = optuna.distributions.CategoricalDistribution(list(spec))
    return out
