"""Early stopping on questions answered: ASHA and a paired (Wilcoxon) stopper, both sparing the baseline.

Contract: :func:`build_scheduler` returns the Ray Tune scheduler for ``search.scheduler`` (None for fifo). Both
schedulers read ``n_questions`` from each result and never stop a *protected* trial (the baseline), so the
margin over the baseline is always measured on every question.

- ``asha``: Ray's ``ASHAScheduler`` on ``n_questions``: at each rung a trial continues only if its running
  objective is in the top ``1/reduction_factor`` of the trials that reached that rung.
- ``paired``: :class:`PairedStopper` compares like with like. A trial that has answered ``n >= grace_questions``
  questions is stopped when its per-question objectives on those ``n`` questions are significantly worse than
  the best completed trial's on the *same* ``n`` questions: a one-sided Wilcoxon signed-rank test, p below
  ``p_threshold`` (the test of Optuna's ``WilcoxonPruner``, as a Tune scheduler, since Optuna's pruners do not
  run under Ray). Per-question objectives come from the result key ``question_objectives`` (a JSON list in the
  shared question order).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from ragsweep.search.config import ExperimentConfig
from ragsweep.search.registries import SCHEDULERS

OBJECTIVE = "objective"
PER_QUESTION = "question_objectives"  # result key: JSON list of per-question objectives, in question order
Protected = Callable[[dict[str, Any]], bool]  # trial config -> never stop it


class BaselineKeepingASHA(ASHAScheduler):
    """``ASHAScheduler`` that lets protected trials (the baseline) run to ``max_t``; they still fill the rungs
    the other trials are compared at."""

    def __init__(self, *args: Any, protected: Protected, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._protected = protected

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        action = super().on_trial_result(tune_controller, trial, result)
        if (
            action == TrialScheduler.STOP
            and self._protected(dict(trial.config))
            and float(result.get(self._time_attr, 0)) < self._max_t
        ):
            return TrialScheduler.CONTINUE
        return action


def wilcoxon_worse_p(mine: list[float], best: list[float]) -> float:
    """One-sided p-value that ``mine`` is below ``best`` (paired, same questions); 1.0 when they never differ."""
    from scipy.stats import wilcoxon

    diffs = [a - b for a, b in zip(mine, best, strict=True)]
    if not any(d != 0 for d in diffs):
        return 1.0
    # zsplit keeps ties (questions both answered equally well) in the ranking, as Optuna's WilcoxonPruner does.
    return float(wilcoxon(diffs, alternative="less", zero_method="zsplit").pvalue)


class PairedStopper(FIFOScheduler):
    """Stops a trial whose per-question objectives are significantly worse than the best completed trial's."""

    def __init__(self, max_questions: int, grace: int, p_threshold: float, protected: Protected) -> None:
        import scipy.stats  # noqa: F401 - imported here, not on the first result: Tune warns about a slow callback

        super().__init__()
        self.max_questions = max_questions
        self.grace = grace
        self.p_threshold = p_threshold
        self._protected = protected
        self.completed: dict[str, list[float]] = {}  # trial id -> per-question objectives of all questions
        self.decisions: list[tuple[str, int, float]] = []  # (trial id, questions, p) of every stop

    def set_search_properties(self, metric: str | None, mode: str | None, **spec: Any) -> bool:
        return True  # the objective is always maximised; Tune's metric/mode do not apply

    def best(self) -> list[float] | None:
        if not self.completed:
            return None
        return max(self.completed.values(), key=lambda s: sum(s) / len(s))

    def on_trial_result(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> str:
        scores = [float(x) for x in json.loads(result.get(PER_QUESTION) or "[]")]
        n = len(scores)
        if n >= self.max_questions:
            self.completed[trial.trial_id] = scores
            return TrialScheduler.CONTINUE
        best = self.best()
        if n < self.grace or best is None or len(best) < n or self._protected(dict(trial.config)):
            return TrialScheduler.CONTINUE
        p = wilcoxon_worse_p(scores, best[:n])
        if math.isfinite(p) and p < self.p_threshold:
            self.decisions.append((trial.trial_id, n, p))
            return TrialScheduler.STOP
        return TrialScheduler.CONTINUE

    def on_trial_complete(self, tune_controller: Any, trial: Any, result: dict[str, Any]) -> None:
        scores = [float(x) for x in json.loads((result or {}).get(PER_QUESTION) or "[]")]
        if len(scores) >= self.max_questions:
            self.completed[trial.trial_id] = scores

    def debug_string(self) -> str:
        return f"PairedStopper: {len(self.decisions)} trial(s) stopped (Wilcoxon p < {self.p_threshold})"


def fifo(cfg: ExperimentConfig, max_questions: int, protected: Protected) -> None:
    return None


def paired(cfg: ExperimentConfig, max_questions: int, protected: Protected) -> PairedStopper:
    grace = min(cfg.search.grace_questions, max_questions)
    return PairedStopper(max_questions, grace, cfg.search.p_threshold, protected)


def asha(cfg: ExperimentConfig, max_questions: int, protected: Protected) -> BaselineKeepingASHA:
    # Fidelity = questions answered: every trial answers the same questions in the same order, so trials
    # compared at a rung are compared on the same questions. With a cost objective too, ASHA ranks by quality.
    grace = min(cfg.search.grace_questions, max_questions)
    return BaselineKeepingASHA(
        time_attr="n_questions",
        metric=OBJECTIVE,
        mode="max",
        max_t=max_questions,
        grace_period=grace,
        reduction_factor=cfg.search.reduction_factor,
        protected=protected,
    )


def build_scheduler(cfg: ExperimentConfig, max_questions: int, protected: Protected) -> Any:
    """The scheduler named by ``search.scheduler`` (see :data:`~ragsweep.search.registries.SCHEDULERS`)."""
    return SCHEDULERS.get(cfg.search.scheduler)(cfg, max_questions, protected)
