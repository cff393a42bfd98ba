"""The search space as an Optuna define-by-run function, and the validated params of one trial.

Contract: :func:`define_by_run` turns ``config.space`` into ``fn(optuna.Trial) -> None`` for Ray's
``OptunaSearch``; :meth:`TrialParams.from_sampled` validates what was sampled (a bad value raises at once,
before any model work).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import optuna
from pydantic import Field, model_validator

from search.config import FloatRange, IntRange, Reranker, Retriever, SearchSpace, _Strict

PARAM_NAMES = ("chunk_size", "chunk_overlap", "retriever", "top_k", "reranker", "prompt", "temperature")


class TrialParams(_Strict):
    chunk_size: int = Field(ge=50)
    chunk_overlap: int = Field(ge=0)
    retriever: Retriever
    top_k: int = Field(ge=1)
    reranker: Reranker
    prompt: str
    temperature: float = Field(ge=0.0, le=2.0)

    @model_validator(mode="after")
    def _overlap(self) -> TrialParams:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(f"chunk_overlap ({self.chunk_overlap}) must be < chunk_size ({self.chunk_size})")
        return self

    @classmethod
    def from_sampled(cls, sampled: dict[str, Any]) -> TrialParams:
        return cls.model_validate({k: sampled[k] for k in PARAM_NAMES})


def _suggest(trial: optuna.Trial, name: str, spec: Any) -> Any:
    if isinstance(spec, IntRange):
        return trial.suggest_int(name, spec.low, spec.high, step=spec.step, log=spec.log)
    if isinstance(spec, FloatRange):
        return trial.suggest_float(name, spec.low, spec.high, log=spec.log)
    return trial.suggest_categorical(name, list(spec))


class DefineByRun:
    """``fn(optuna.Trial)`` sampling every key of the space; a class, not a closure, so Tune can pickle it."""

    def __init__(self, space: SearchSpace) -> None:
        self.space = space

    def __call__(self, trial: optuna.Trial) -> None:
        for name in PARAM_NAMES:
            _suggest(trial, name, getattr(self.space, name))


def define_by_run(space: SearchSpace) -> Callable[[optuna.Trial], None]:
    return DefineByRun(space)
