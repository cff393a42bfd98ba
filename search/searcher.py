"""How trials are chosen and when the search stops: Optuna sampler, ASHA scheduler and budget stoppers.

Contract: :func:`build_searcher` returns Ray Tune's ``OptunaSearch`` for ``config.search.sampler`` (single- or
multi-objective per ``config.objective.cost``) with the baseline enqueued first, and the number of trials to
run (distinct configurations: a configuration proposed again is answered from the earlier result without a
trial); :class:`LLMCallBudget` a Tune stopper ending the whole search once trials have sent ``max_llm_calls`` requests.
"""

from __future__ import annotations

import json
import warnings
from typing import Any

import optuna
from ray import tune
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ragsweep.pipelines.llm_client.client import usage_prefix
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.console import logger
from ragsweep.search.registries import SAMPLERS
from ragsweep.search.space import (
    RETRIEVAL_KEYS,
    STAGED,
    DefineByRun,
    baseline_point,
    grid_points,
    grid_search_space,
    staged_points,
)

OBJECTIVE = "objective"


def metrics_and_modes(cfg: ExperimentConfig) -> tuple[str | list[str], str | list[str]]:
    """What the searcher optimises: the weighted quality, plus the cost metric (minimised) if set."""
    if cfg.objective.cost is None:
        return OBJECTIVE, "max"
    return [OBJECTIVE, cfg.objective.cost], ["max", "min"]


def random_sampler(cfg: ExperimentConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.RandomSampler(seed=cfg.search.seed)


def grid_sampler(cfg: ExperimentConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.GridSampler(grid_search_space(cfg.space), seed=cfg.search.seed)


def nsga2_sampler(cfg: ExperimentConfig) -> optuna.samplers.BaseSampler:
    return optuna.samplers.NSGAIISampler(
        seed=cfg.search.seed, population_size=max(4, min(50, cfg.search.num_samples // 4))
    )


def tpe_sampler(cfg: ExperimentConfig) -> optuna.samplers.BaseSampler:
    # Optuna 5 TPE defaults, reviewed: multivariate=None means joint modelling for one objective only, so we set
    # it for both; group=True splits the space by which keys a trial sampled (conditional rerank_candidates);
    # constant_liar (the 5.0 default) keeps concurrent trials apart. n_startup_trials is scaled to small searches:
    # Optuna's 10 random trials would be a whole default search.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return optuna.samplers.TPESampler(
            seed=cfg.search.seed,
            n_startup_trials=cfg.search.n_startup_trials,
            multivariate=True,
            group=True,
            constant_liar=True,
        )


Candidates = dict[str, dict[str, Any]]  # the LLM stage of a two-stage search: label -> retrieval keys' values


def _sampler(cfg: ExperimentConfig, candidates: Candidates | None = None) -> optuna.samplers.BaseSampler:
    if candidates is not None and cfg.search.sampler == "grid":
        axes: dict[str, list[Any]] = {}
        for p in staged_points(cfg.space, candidates):
            for k, v in p.items():
                if v not in axes.setdefault(k, []):
                    axes[k].append(v)
        return optuna.samplers.GridSampler(axes, seed=cfg.search.seed)
    return SAMPLERS.get(cfg.search.sampler)(cfg)


def finite_points(cfg: ExperimentConfig, candidates: Candidates | None = None) -> list[dict[str, Any]] | None:
    """Every configuration of the space (of the LLM stage, with ``candidates``), or None when it is infinite (a
    float range) or not a plain grid."""
    try:
        return grid_points(cfg.space) if candidates is None else staged_points(cfg.space, candidates)
    except ValueError:
        return None


def n_trials(cfg: ExperimentConfig, candidates: Candidates | None = None) -> int:
    """Distinct configurations to try: num_samples, capped at the size of a finite space."""
    points = finite_points(cfg, candidates)
    return cfg.search.num_samples if points is None else min(cfg.search.num_samples, len(points))


def baseline(cfg: ExperimentConfig) -> dict[str, Any] | None:
    if cfg.search.baseline is None:
        return None
    return baseline_point(cfg.space, cfg.search.baseline)


class BaselineMatcher:
    """Picklable predicate: the trial config has every baseline param's value (False without a baseline)."""

    def __init__(self, point: dict[str, Any] | None) -> None:
        self.point = point

    def __call__(self, config: dict[str, Any]) -> bool:
        return self.point is not None and all(config.get(k) == v for k, v in self.point.items())


def staged_baseline(cfg: ExperimentConfig, candidates: Candidates) -> dict[str, Any] | None:
    """The baseline as the LLM stage samples it: its retrieval candidate's label and its generation keys."""
    first = baseline(cfg)
    if first is None:
        return None
    mine = {k: v for k, v in first.items() if k in RETRIEVAL_KEYS}
    labels = [name for name, point in candidates.items() if point == mine]
    if not labels:
        return None
    return {STAGED: labels[0], **{k: v for k, v in first.items() if k not in RETRIEVAL_KEYS}}


def build_searcher(cfg: ExperimentConfig, max_questions: int, candidates: Candidates | None = None) -> Any:
    """The searcher of the joint space, or of a two-stage search's LLM stage over ``candidates``."""
    metric, mode = metrics_and_modes(cfg)
    first = baseline(cfg) if candidates is None else staged_baseline(cfg, candidates)
    # The grid sampler walks its own grid; an enqueued baseline would be one extra, repeated point.
    points = [first] if first is not None and cfg.search.sampler != "grid" else None
    return FidelityAwareOptunaSearch(
        space=DefineByRun(cfg.space, candidates),
        metric=metric,
        mode=mode,
        sampler=_sampler(cfg, candidates),
        seed=cfg.search.seed,
        points_to_evaluate=points,
        max_questions=max_questions,
        finite=finite_points(cfg, candidates),
    )


class FidelityAwareOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch`` that never runs a configuration twice, and tells Optuna stopped trials as PRUNED.

    - A configuration the sampler proposes again is not returned to Tune (no trial slot, no LLM call): its Optuna
      trial is told the earlier trial's outcome (value, or PRUNED with its intermediate values), at once if that
      trial has finished or when it does, and the sampler is asked again. After ``MAX_REPEATS`` repeats in a row
      an untried point of a finite space is enqueued; when none is left the searcher says FINISHED.
    - Ray tells Optuna every stopped trial as COMPLETE with its last (partial) objective, so TPE would model
      a 4-question mean as if it were a full evaluation. As PRUNED, TPE ranks it by its intermediate values
      (reported per shard) below the complete trials, which is how Optuna treats its own pruned trials.
    """

    MAX_REPEATS = 20
    # Ray's OptunaSearch keeps its study, its Optuna trials and the finished trial ids in private attributes and
    # has no public way to tell one trial's outcome to another. They are read only through the properties below,
    # which fail with a clear message (not an AttributeError deep in a search) if a Ray release renames them;
    # tests/unit/test_searcher_internals.py checks them against the installed Ray.
    RAY_INTERNALS = ("_ot_study", "_ot_trials", "_completed_trials")

    def __init__(
        self, *args: Any, max_questions: int, finite: list[dict[str, Any]] | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.max_questions = max_questions
        self.finite = finite  # every point of a finite space (None: infinite), for enqueueing untried ones
        self.seen: dict[str, str] = {}  # configuration key -> trial id that runs it
        self.waiting: dict[str, list[Any]] = {}  # trial id -> Optuna trials of its repeats, told when it ends
        self.repeats = 0  # proposals answered from an earlier trial

    def _internal(self, name: str) -> Any:
        try:
            return getattr(self, name)
        except AttributeError:
            import ray

            raise RuntimeError(
                f"ray {ray.__version__}: OptunaSearch no longer has {name!r}, which ragsweep's "
                "searcher reads; use the Ray version in constraints.txt"
            ) from None

    @property
    def study(self) -> optuna.Study:
        return self._internal("_ot_study")

    @property
    def optuna_trials(self) -> dict[str, optuna.Trial]:
        return self._internal("_ot_trials")

    @property
    def finished(self) -> set[str]:
        return self._internal("_completed_trials")

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:  # type: ignore[override]
        in_a_row = 0
        while True:
            config = super().suggest(trial_id)
            if not isinstance(config, dict):
                return config
            key = config_key(config)
            first = self.seen.get(key)
            if first is None:
                self.seen[key] = trial_id
                return config
            self.repeats += 1
            in_a_row += 1
            repeat = self.optuna_trials.pop(trial_id)
            if first in self.finished:
                self._tell_like(repeat, self.optuna_trials[first])
            else:
                self.waiting.setdefault(first, []).append(repeat)
            if in_a_row >= self.MAX_REPEATS:
                untried = [p for p in (self.finite or []) if config_key(p) not in self.seen]
                if not untried:
                    logger("search").info(
                        f"the sampler keeps proposing tried configurations ({in_a_row} in a row)"
                        + (" and every point of the space is tried" if self.finite is not None else "")
                        + f": no more trials ({len(self.seen)} distinct)"
                    )
                    return Searcher.FINISHED
                self.study.enqueue_trial(untried[self.repeats % len(untried)])
                in_a_row = 0

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        partial = result is not None and float(result.get("n_questions", self.max_questions)) < self.max_questions
        if error or not partial or trial_id in self.finished or trial_id not in self.optuna_trials:
            super().on_trial_complete(trial_id, result, error)
        else:
            self.study.tell(self.optuna_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self.finished.add(trial_id)
        for repeat in self.waiting.pop(trial_id, []):
            if trial_id in self.optuna_trials:
                self._tell_like(repeat, self.optuna_trials[trial_id])

    def _tell_like(self, repeat: Any, first: Any) -> None:
        """Tell ``repeat`` what ``first`` (a finished Optuna trial) was told."""
        done = next(t for t in self.study.get_trials(deepcopy=False) if t.number == first.number)
        for step, value in done.intermediate_values.items():
            repeat.report(value, step)
        if done.state == optuna.trial.TrialState.COMPLETE:
            self.study.tell(repeat, done.values if len(done.values or []) > 1 else done.value)
        else:
            self.study.tell(repeat, state=done.state)


def config_key(config: dict[str, Any]) -> str:
    """A configuration's identity: its non-null params, order-free."""
    return json.dumps({k: v for k, v in config.items() if v is not None}, sort_keys=True, default=str)


class LLMCallBudget(tune.Stopper):
    """Stops every trial once the trials' LLM requests (generator + judge, cache hits excluded) reach ``limit``.

    Counts come from the trials' cumulative ``*_requests`` in each report, so a trial stopped or finished earlier
    still counts. The search then ranks what finished.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.calls: dict[str, float] = {}
        self.tripped = False

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.calls[trial_id] = sum(
            float(result.get(f"{usage_prefix(role)}requests", 0.0)) for role in ("generator", "judge")
        )
        if not self.tripped and self.spent >= self.limit:
            self.tripped = True
            logger("search").info(f"LLM-call budget reached ({self.spent:.0f} >= {self.limit}): stopping the search")
        return False

    @property
    def spent(self) -> float:
        return sum(self.calls.values())

    def stop_all(self) -> bool:
        return self.tripped
