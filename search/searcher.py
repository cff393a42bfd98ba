"""How trials are chosen and when the search stops: Optuna sampler, ASHA scheduler and budget stoppers.

Contract: :func:`build_searcher` returns Ray Tune's ``OptunaSearch`` for ``config.search.sampler`` (single- or
multi-objective per ``config.objective.cost``) with the baseline enqueued first, and the number of trials to
run; :func:`build_scheduler` the ASHA scheduler on questions answered (or None for fifo); :class:`LLMCallBudget`
a Tune stopper ending the whole search once trials have sent ``max_llm_calls`` requests.
"""

from __future__ import annotations

import warnings
from typing import Any

import optuna
from ray import tune
from ray.tune.search.optuna import OptunaSearch

from search.config import ExperimentConfig
from search.space import DefineByRun, baseline_point, grid_points, grid_search_space

OBJECTIVE = "objective"


def metrics_and_modes(cfg: ExperimentConfig) -> tuple[str | list[str], str | list[str]]:
    """What the searcher optimises: the weighted quality, plus the cost metric (minimised) if set."""
    if cfg.objective.cost is None:
        return OBJECTIVE, "max"
    return [OBJECTIVE, cfg.objective.cost], ["max", "min"]


def _sampler(cfg: ExperimentConfig) -> Any:
    from optuna.samplers import GridSampler, NSGAIISampler, RandomSampler, TPESampler

    s, seed = cfg.search, cfg.search.seed
    if s.sampler == "random":
        return RandomSampler(seed=seed)
    if s.sampler == "grid":
        return GridSampler(grid_search_space(cfg.space), seed=seed)
    if s.sampler == "nsga2":
        return NSGAIISampler(seed=seed, population_size=max(4, min(50, s.num_samples // 4)))
    # Optuna 5 TPE defaults, reviewed: multivariate=None means joint modelling for one objective only, so we set
    # it for both; group=True splits the space by which keys a trial sampled (conditional rerank_candidates);
    # constant_liar (the 5.0 default) keeps concurrent trials apart. n_startup_trials is scaled to small searches:
    # Optuna's 10 random trials would be a whole default search.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return TPESampler(seed=seed, n_startup_trials=s.n_startup_trials, multivariate=True, group=True,
                          constant_liar=True)


def n_trials(cfg: ExperimentConfig) -> int:
    """num_samples, capped at the grid size for the grid sampler."""
    if cfg.search.sampler == "grid":
        return min(cfg.search.num_samples, len(grid_points(cfg.space)))
    return cfg.search.num_samples


def baseline(cfg: ExperimentConfig) -> dict[str, Any] | None:
    if cfg.search.baseline is None:
        return None
    return baseline_point(cfg.space, cfg.search.baseline)


def build_searcher(cfg: ExperimentConfig, max_questions: int) -> Any:
    metric, mode = metrics_and_modes(cfg)
    first = baseline(cfg)
    # The grid sampler walks its own grid; an enqueued baseline would be one extra, repeated point.
    points = [first] if first is not None and cfg.search.sampler != "grid" else None
    return FidelityAwareOptunaSearch(space=DefineByRun(cfg.space), metric=metric, mode=mode, sampler=_sampler(cfg),
                                     seed=cfg.search.seed, points_to_evaluate=points, max_questions=max_questions)


class FidelityAwareOptunaSearch(OptunaSearch):
    """Ray's ``OptunaSearch``, except that a trial the scheduler stopped early is told to Optuna as PRUNED.

    Ray tells Optuna every stopped trial as COMPLETE with its last (partial) objective, so TPE would model
    a 4-question mean as if it were a full evaluation. As PRUNED, TPE ranks it by its intermediate values
    (reported per shard) below the complete trials, which is how Optuna treats its own pruned trials.
    """

    def __init__(self, *args: Any, max_questions: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_questions = max_questions

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        partial = result is not None and float(result.get("n_questions", self.max_questions)) < self.max_questions
        if error or not partial or trial_id in self._completed_trials or trial_id not in self._ot_trials:
            super().on_trial_complete(trial_id, result, error)
            return
        self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
        self._completed_trials.add(trial_id)


def build_scheduler(cfg: ExperimentConfig, max_questions: int) -> Any:
    if cfg.search.scheduler != "asha":
        return None
    from ray.tune.schedulers import ASHAScheduler

    # Fidelity = questions answered: every trial answers the same questions in the same order, so trials
    # compared at a rung are compared on the same questions. With a cost objective too, ASHA ranks by quality.
    return ASHAScheduler(time_attr="n_questions", metric=OBJECTIVE, mode="max", max_t=max_questions,
                         grace_period=cfg.search.grace_questions, reduction_factor=cfg.search.reduction_factor)


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
        self.calls[trial_id] = float(result.get("generator_requests", 0.0)) + float(result.get("judge_requests", 0.0))
        if not self.tripped and self.spent >= self.limit:
            self.tripped = True
            print(f"[ragsweep] LLM-call budget reached ({self.spent:.0f} >= {self.limit}): stopping the search",
                  flush=True)
        return False

    @property
    def spent(self) -> float:
        return sum(self.calls.values())

    def stop_all(self) -> bool:
        return self.tripped
