"""The installed Ray still has the OptunaSearch internals the searcher reads (a Ray upgrade must fail here first)."""

from __future__ import annotations

import optuna
import pytest

from ragsweep.search.searcher import FidelityAwareOptunaSearch


def test_ray_optuna_search_internals_are_where_the_searcher_reads_them() -> None:
    search = FidelityAwareOptunaSearch(
        space={"x": optuna.distributions.CategoricalDistribution([1, 2])},
        metric="objective",
        mode="max",
        sampler=optuna.samplers.RandomSampler(seed=0),
        max_questions=4,
    )
    for name in FidelityAwareOptunaSearch.RAY_INTERNALS:
        assert hasattr(search, name), name
    first = search.suggest("t1")
    assert isinstance(first, dict) and isinstance(search.study, optuna.Study) and "t1" in search.optuna_trials
    search.on_trial_complete("t1", {"objective": 0.5, "n_questions": 4})
    assert "t1" in search.finished
    assert search.study.trials[0].state == optuna.trial.TrialState.COMPLETE


def test_a_missing_internal_is_a_clear_error() -> None:
    search = FidelityAwareOptunaSearch(
        space={"x": optuna.distributions.CategoricalDistribution([1, 2])},
        metric="objective",
        mode="max",
        max_questions=4,
    )
    del search._ot_trials
    with pytest.raises(RuntimeError, match="no longer has '_ot_trials'"):
        _ = search.optuna_trials
