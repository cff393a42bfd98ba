"""A winner you can trust: held-out split, bootstrap intervals, cheapest-tied selection, the baseline-sparing
schedulers, the paired stopper and the de-duplicating searcher (pure parts; the search itself is in
tests/integration/test_search_e2e.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import optuna
import pytest
from ray.tune.schedulers import TrialScheduler
from ray.tune.search import Searcher

from ragsweep.judges.intervals import intervals, paired_difference
from ragsweep.pipelines.data import DatasetError, Question, load_dataset, split_holdout
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.confirm import plan_questions
from ragsweep.search.promotion.selection import Evidence, TrialRecord, finalists, select
from ragsweep.search.schedulers import PER_QUESTION, BaselineKeepingASHA, PairedStopper, wilcoxon_worse_p
from ragsweep.search.searcher import BaselineMatcher, build_searcher, n_trials
from tests.conftest import SAMPLE, write_jsonl


def _questions(n_yes: int, n_no: int) -> list[Question]:
    return [
        Question(id=f"a{i}", question="?", answers=("x",), answerable=True, gold_doc_ids=()) for i in range(n_yes)
    ] + [Question(id=f"u{i}", question="?", answers=(), answerable=False, gold_doc_ids=()) for i in range(n_no)]


def _cfg(tmp_path: Path, **sections: Any) -> ExperimentConfig:
    data = {
        "dataset": {"corpus": SAMPLE / "corpus.jsonl", "questions": SAMPLE / "questions.jsonl"},
        "storage_dir": tmp_path,
    }
    for k, v in sections.items():
        data[k] = {**data.get(k, {}), **v}
    return ExperimentConfig.model_validate(data)


# ---- held-out split -------------------------------------------------------------------------------------


def test_split_is_seeded_disjoint_and_keeps_answerable_in_proportion() -> None:
    qs = _questions(80, 20)
    search, held = split_holdout(qs, 0.25, seed=3)
    assert len(held) == 25 and len(search) == 75
    assert {q.id for q in search}.isdisjoint({q.id for q in held})
    assert sum(not q.answerable for q in held) == 5  # 25% of each kind
    assert split_holdout(qs, 0.25, seed=3) == (search, held)  # same seed, same split
    assert split_holdout(qs, 0.25, seed=4)[1] != held
    assert split_holdout(qs, 0.0, seed=3) == (qs, [])


def test_split_gives_each_side_at_least_one_of_a_rare_kind() -> None:
    search, held = split_holdout(_questions(40, 2), 0.1, seed=0)
    assert sum(not q.answerable for q in held) == 1 and sum(not q.answerable for q in search) == 1
    with pytest.raises(ValueError, match="holdout fraction"):
        split_holdout(_questions(4, 0), 1.0, seed=0)


def test_plan_holds_questions_out_of_the_search_and_caps_both_parts(tmp_path: Path) -> None:
    cfg = _cfg(tmp_path, search={"questions_per_trial": 24, "holdout_questions": 30})
    dataset = load_dataset(cfg.dataset.corpus, cfg.dataset.questions)
    plan = plan_questions(cfg, dataset)
    assert len(plan.search_ids) == 24 and len(plan.holdout_ids) == 30 and plan.on
    assert set(plan.search_ids).isdisjoint(q.id for q in plan.held_out)
    assert len(plan.held_out) == round(0.25 * len(dataset.questions))
    off = plan_questions(_cfg(tmp_path, dataset={"holdout": 0}), dataset)
    assert not off.on and off.holdout_ids == () and "off" in off.source


def test_plan_with_a_holdout_file_rejects_shared_ids_and_too_few(tmp_path: Path, tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    corpus, questions = tiny_dataset
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    clash = write_jsonl(tmp_path / "held.jsonl", rows[:1])
    cfg = ExperimentConfig.model_validate(
        {"dataset": {"corpus": corpus, "questions": questions, "holdout_file": clash}, "storage_dir": tmp_path}
    )
    dataset = load_dataset(corpus, questions)
    with pytest.raises(DatasetError, match=r"held\.jsonl: question id 'q1' is also in"):
        plan_questions(cfg, dataset)
    tiny = ExperimentConfig.model_validate(
        {"dataset": {"corpus": corpus, "questions": questions}, "storage_dir": tmp_path}
    )
    with pytest.raises(DatasetError, match="at least 2 held-out questions.*dataset.holdout: 0"):
        plan_questions(tiny, dataset)  # 3 questions: 25% is 1


def test_holdout_fraction_and_file_together_are_a_config_error(tmp_path: Path, tiny_dataset) -> None:  # type: ignore[no-untyped-def]
    corpus, questions = tiny_dataset
    with pytest.raises(ValueError, match="either holdout .* or holdout_file"):
        ExperimentConfig.model_validate(
            {
                "dataset": {"corpus": corpus, "questions": questions, "holdout": 0.2, "holdout_file": questions},
                "storage_dir": tmp_path,
            }
        )


# ---- intervals ------------------------------------------------------------------------------------------


def test_interval_brackets_the_reported_objective_and_is_seeded() -> None:
    rng = np.random.default_rng(0)
    rows = [
        {"token_f1": float(f), "recall_at_k": float(r)}
        for f, r in zip(rng.uniform(0, 1, 60), rng.integers(0, 2, 60), strict=True)
    ]
    weights = {"token_f1": 0.7, "recall_at_k": 0.3}
    cis = intervals(rows, ["token_f1"], weights, 0.95, 2000, seed=1)
    point = 0.7 * np.mean([r["token_f1"] for r in rows]) + 0.3 * np.mean([r["recall_at_k"] for r in rows])
    lo, hi = cis["objective"]
    assert lo < point < hi and hi - lo < 0.3
    assert cis == intervals(rows, ["token_f1"], weights, 0.95, 2000, seed=1)
    narrow = intervals(rows, ["token_f1"], weights, 0.80, 2000, seed=1)["objective"]
    assert lo < narrow[0] < narrow[1] < hi


def test_interval_skips_undefined_scores_like_the_trial_mean() -> None:
    rows = [
        {"abstain_correct": None, "token_f1": 0.5},
        {"abstain_correct": 1.0, "token_f1": 0.5},
        {"abstain_correct": 1.0, "token_f1": 0.5},
    ]
    cis = intervals(rows, [], {"abstain_correct": 1.0}, 0.95, 500)
    assert cis["abstain_correct"] == (1.0, 1.0)  # the None never counts as 0 in a mean
    assert math.isnan(intervals(rows[:1], [], {"token_f1": 1.0})["objective"][0])  # one question: no spread


def test_paired_difference_verdicts_on_shared_questions_only() -> None:
    w = {"token_f1": 1.0}
    a = {f"q{i}": {"token_f1": 0.8} for i in range(30)}
    b = {f"q{i}": {"token_f1": 0.2 + 0.01 * (i % 3)} for i in range(30)}
    b["only_b"] = {"token_f1": 1.0}
    d = paired_difference(a, b, w)
    assert d.n == 30 and d.verdict == "better" and d.low > 0.5
    assert paired_difference(b, a, w).verdict == "worse"
    noisy = {f"q{i}": {"token_f1": 0.8 if i % 2 else 0.0} for i in range(30)}
    flipped = {f"q{i}": {"token_f1": 0.0 if i % 2 else 0.8} for i in range(30)}
    t = paired_difference(noisy, flipped, w)
    assert t.verdict == "tied" and t.low < 0 < t.high and "tied" in t.describe()
    assert paired_difference(a, {"x": {"token_f1": 1.0}}, w).verdict == "tied"  # nothing shared: no claim


# ---- selection ------------------------------------------------------------------------------------------


def _ev(name: str, per_q: list[float], tokens: float, p95: float = 1.0) -> Evidence:
    t = TrialRecord(
        name=name,
        run_id=f"run-{name}",
        params={},
        status="completed",
        objective=float(np.mean(per_q)),
        n_questions=len(per_q),
    )
    return Evidence(t, {f"q{i}": {"objective": v} for i, v in enumerate(per_q)}, float(np.mean(per_q)), tokens, p95)


def test_cheapest_tied_promotes_the_cheaper_of_two_statistically_tied_finalists() -> None:
    rng = np.random.default_rng(0)
    base = rng.uniform(0, 1, 40)
    swing = np.array([0.2, -0.2] * 20)  # per question it wins some, loses some: +0.01 on average
    stuffed = _ev("stuffed", list(base + 0.01 + swing), tokens=1090)  # best by a hair, at 4.7x the tokens
    lean = _ev("lean", list(base), tokens=231)
    weak = _ev("weak", list(base * 0.2), tokens=100)  # cheapest, but clearly worse
    sel = select([stuffed, lean, weak], {"objective": 1.0}, "cheapest_tied", 0.95, 2000)
    assert sel.best.name == "stuffed" and sel.pick.name == "lean"
    assert set(sel.tied) == {"run-stuffed", "run-lean"}
    assert sel.versus_best["run-weak"].verdict == "better"  # the best beats "weak" beyond the interval
    assert "cheapest of the 2 finalists tied" in sel.reason and "231 vs 1090" in sel.reason
    best = select([stuffed, lean, weak], {"objective": 1.0}, "best", 0.95, 2000)
    assert best.pick.name == "stuffed" and best.reason.startswith("highest held-out objective")


def test_cheapest_tied_keeps_a_best_that_nothing_ties_and_breaks_token_ties_by_latency() -> None:
    good = _ev("good", [0.9] * 20, tokens=500)
    bad = _ev("bad", [0.1] * 20, tokens=50)
    sel = select([good, bad], {"objective": 1.0}, "cheapest_tied", 0.95, 1000)
    assert sel.pick.name == "good" and "no other finalist" in sel.reason
    a, b = _ev("a", [0.5, 0.6] * 10, tokens=300, p95=2.0), _ev("b", [0.6, 0.5] * 10, tokens=300, p95=1.0)
    assert select([a, b], {"objective": 1.0}, "cheapest_tied", 0.95, 1000).pick.name == "b"


def test_finalists_are_the_best_completed_trials() -> None:
    ts = [
        TrialRecord(name="a", run_id="1", params={}, status="completed", objective=0.3, n_questions=24),
        TrialRecord(name="b", run_id="2", params={}, status="stopped_early", objective=0.9, n_questions=8),
        TrialRecord(name="c", run_id="3", params={}, status="completed", objective=0.5, n_questions=24),
        TrialRecord(name="d", run_id="4", params={}, status="completed", objective=0.1, n_questions=24),
    ]
    assert [t.name for t in finalists(ts, 2)] == ["c", "a"]


# ---- schedulers -----------------------------------------------------------------------------------------


def _trial(tid: str, config: dict[str, Any]) -> Any:
    return SimpleNamespace(trial_id=tid, config=config)


def _result(n: int, scores: list[float]) -> dict[str, Any]:
    return {
        "n_questions": float(n),
        "objective": float(np.mean(scores)),
        PER_QUESTION: json.dumps(scores),
        "training_iteration": n // 4,
    }


def test_paired_stopper_stops_a_significantly_worse_trial_but_never_the_baseline() -> None:
    protected = BaselineMatcher({"top_k": 2})
    s = PairedStopper(max_questions=24, grace=8, p_threshold=0.1, protected=protected)
    good = [0.6 + 0.01 * i for i in range(24)]
    assert s.on_trial_result(None, _trial("best", {"top_k": 5}), _result(24, good)) == TrialScheduler.CONTINUE
    bad = [0.1] * 8
    assert s.on_trial_result(None, _trial("early", {"top_k": 3}), _result(4, bad[:4])) == TrialScheduler.CONTINUE
    assert s.on_trial_result(None, _trial("bad", {"top_k": 3}), _result(8, bad)) == TrialScheduler.STOP
    assert s.on_trial_result(None, _trial("base", {"top_k": 2}), _result(8, bad)) == TrialScheduler.CONTINUE
    close = [v - 0.01 if i % 2 else v + 0.01 for i, v in enumerate(good[:8])]
    assert s.on_trial_result(None, _trial("close", {"top_k": 3}), _result(8, close)) == TrialScheduler.CONTINUE
    assert wilcoxon_worse_p(good[:8], good[:8]) == 1.0


def test_paired_stopper_without_a_completed_trial_stops_nothing() -> None:
    s = PairedStopper(max_questions=24, grace=4, p_threshold=0.5, protected=BaselineMatcher(None))
    assert s.on_trial_result(None, _trial("a", {}), _result(8, [0.0] * 8)) == TrialScheduler.CONTINUE


def test_asha_never_stops_the_baseline_before_it_answered_everything() -> None:
    asha = BaselineKeepingASHA(
        time_attr="n_questions",
        metric="objective",
        mode="max",
        max_t=16,
        grace_period=4,
        reduction_factor=2,
        protected=BaselineMatcher({"top_k": 2}),
    )
    strong = _trial("strong", {"top_k": 5})
    for t in (strong, _trial("base", {"top_k": 2}), _trial("weak", {"top_k": 3})):
        asha.on_trial_add(None, t)
    assert asha.on_trial_result(None, strong, _result(4, [0.9] * 4)) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, strong, _result(8, [0.9] * 8)) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, _trial("weak", {"top_k": 3}), _result(4, [0.0] * 4)) == TrialScheduler.STOP
    base = _trial("base", {"top_k": 2})
    assert asha.on_trial_result(None, base, _result(4, [0.0] * 4)) == TrialScheduler.CONTINUE
    assert asha.on_trial_result(None, base, _result(8, [0.0] * 8)) == TrialScheduler.CONTINUE


# ---- the searcher never spends a trial on a configuration already tried ---------------------------------


def test_repeats_are_answered_from_the_earlier_trial_and_a_finite_space_runs_out(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        space={
            "chunk_size": [400, 800],
            "chunk_overlap": [0],
            "retriever": ["dense"],
            "top_k": [2],
            "prompt": ["concise"],
            "temperature": [0.0],
        },
        search={"sampler": "random", "num_samples": 10},
    )
    assert n_trials(cfg) == 2  # capped at the size of the space
    searcher = build_searcher(cfg, max_questions=8)
    searcher.MAX_REPEATS = 5
    first = searcher.suggest("a")
    second = searcher.suggest("b")
    assert first is not None and second is not None and first != second
    searcher.on_trial_complete("a", {"objective": 0.4, "n_questions": 8})
    searcher.on_trial_complete("b", {"objective": 0.6, "n_questions": 8})
    assert searcher.suggest("c") is Searcher.FINISHED  # both points tried: no third trial
    values = sorted(t.value for t in searcher._ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE)
    assert searcher.repeats >= 1 and set(values) == {0.4, 0.6} and len(values) == 2 + searcher.repeats


def test_a_repeat_of_a_running_trial_is_told_when_that_trial_ends(tmp_path: Path) -> None:
    cfg = _cfg(
        tmp_path,
        space={
            "chunk_size": [400],
            "chunk_overlap": [0],
            "retriever": ["dense"],
            "top_k": [2, 3],
            "prompt": ["concise"],
            "temperature": [0.0],
        },
        search={"sampler": "random", "num_samples": 2, "baseline": None},
    )
    searcher = build_searcher(cfg, max_questions=8)
    searcher.MAX_REPEATS = 3
    first, second = searcher.suggest("a"), searcher.suggest("b")
    assert {first["top_k"], second["top_k"]} == {2, 3}
    assert searcher.suggest("c") is Searcher.FINISHED
    pending = [t for t in searcher._ot_study.trials if t.state == optuna.trial.TrialState.RUNNING]
    assert len(pending) == 2 + searcher.repeats  # the repeats wait for the trials they repeat
    searcher.on_trial_result("a", {"objective": 0.1, "training_iteration": 1, "n_questions": 4})
    searcher.on_trial_complete("a", {"objective": 0.1, "training_iteration": 1, "n_questions": 4})  # stopped early
    searcher.on_trial_complete("b", {"objective": 0.7, "n_questions": 8})
    states = {t.state for t in searcher._ot_study.trials}
    assert optuna.trial.TrialState.RUNNING not in states
    assert all(t.value == 0.7 for t in searcher._ot_study.trials if t.state == optuna.trial.TrialState.COMPLETE)


# ---- the console summary ---------------------------------------------------------------------------------


def test_summary_shows_held_out_scores_with_intervals_and_says_tied(tmp_path: Path) -> None:
    from ragsweep.judges.intervals import PairedDifference
    from ragsweep.search.confirm import QuestionPlan
    from ragsweep.search.report import Summary, summary_lines

    def rec(name: str, obj: float, held: float, base: bool = False) -> TrialRecord:
        m = {
            "objective": obj,
            "objective_ci_low": obj - 0.1,
            "objective_ci_high": obj + 0.1,
            "holdout.objective": held,
            "holdout.objective_ci_low": held - 0.1,
            "holdout.objective_ci_high": held + 0.1,
        }
        return TrialRecord(
            name=name,
            run_id=f"run-{name}",
            params={"top_k": 2},
            status="completed",
            objective=obj,
            n_questions=24,
            metrics=m,
            baseline=base,
        )

    lean, stuffed, base = rec("lean", 0.30, 0.29), rec("stuffed", 0.33, 0.31), rec("base", 0.2, 0.22, True)
    ev = [
        Evidence(
            stuffed, {f"q{i}": {"objective": 0.31 + (0.2 if i % 2 else -0.2)} for i in range(24)}, 0.31, 1090, 2.0
        ),
        Evidence(lean, {f"q{i}": {"objective": 0.29} for i in range(24)}, 0.29, 231, 1.0),
    ]
    sel = select(ev, {"objective": 1.0}, "cheapest_tied", 0.95, 1000)
    margin = PairedDifference(
        n=24, mean=0.07, low=-0.01, high=0.15, confidence=0.95, a_objective=0.29, b_objective=0.22
    )
    plan = QuestionPlan(tuple(f"s{i}" for i in range(24)), (), tuple(f"q{i}" for i in range(24)), "25%")
    lines = summary_lines(
        Summary(
            winner=lean,
            reason=sel.reason,
            baseline=base,
            front=[],
            tracking_link="link",
            finalists=ev,
            selection=sel,
            evidence_on="held-out",
            margin=(margin, "held-out"),
            holdout=plan,
        ),
        _cfg(tmp_path),
    )
    text = "\n".join(lines)
    assert "winner lean: search objective 0.3000 [0.2000, 0.4000]; held-out 0.2900 [0.1900, 0.3900]" in text
    assert "margin over baseline base: +0.0700 on 24 held-out questions, 95% CI [-0.0100, +0.1500]: tied" in text
    assert "held-out objective on 24 questions the search never saw (95% CI)" in text
    assert " * lean: 0.3000 [0.2000, 0.4000] -> 0.2900 [0.1900, 0.3900]; 231 tokens/q" in text
    assert "   stuffed: 0.3300 [0.2300, 0.4300] -> 0.3100 [0.2100, 0.4100]; 1090 tokens/q, p95 2.00 s; best" in text
    assert "lean: 0.3000" in text and "; vs best -0.0200 [" in text and "] tied" in text


def test_evaluate_calls_a_drop_only_when_the_new_interval_lies_below_the_promoted_one() -> None:
    from ragsweep.search.promotion.evaluate import Evaluation, has_dropped

    promoted = (0.5, 0.4, 0.6)
    assert has_dropped((0.1, 0.39), promoted)
    assert not has_dropped((0.1, 0.45), promoted)  # overlapping: not evidence of a drop
    assert not has_dropped((math.nan, math.nan), promoted) and not has_dropped((0.0, 0.1), None)
    ev = Evaluation(
        run_id="r1",
        model="m@champion (v2)",
        n=12,
        metrics={"objective": 0.2, "token_f1": 0.2},
        ci={"objective": (0.1, 0.3)},
        promoted=promoted,
        promoted_on="held-out",
        dropped=True,
        ignored_weights=("judge_x",),
    )
    text = "\n".join(ev.lines())
    assert "dropped below the interval of its held-out score" in text and "held-out score: 0.5000" in text
    assert "weight ignored: judge_x" in text
