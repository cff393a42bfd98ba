"""Promotion gates, the paired bootstrap, redaction, trace sampling and the tracking-server check."""

from __future__ import annotations

import math

import numpy as np
import pytest

from ragsweep.search.config import PromotionSettings, RedactSettings
from ragsweep.search.promotion.gates import Candidate, evaluate
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.tracking.runs import TrackingUnreachable, check_tracking
from ragsweep.search.tracking.traces import sampled
from tests.integration.local_cluster import free_port

WEIGHTS = {"token_f1": 1.0}
SIG = {"inputs": "[question]", "outputs": "[answer, sources]"}


def _cand(label: str, per_q: list[float], sig: dict | None = SIG, **metrics: float) -> Candidate:
    scores = {f"q{i}": {"token_f1": v} for i, v in enumerate(per_q)}
    mean = float(np.mean(per_q))
    return Candidate(label, {"objective": mean, "token_f1": mean, "latency_p95_s": 1.0, **metrics}, scores, sig)


def _gate(decision, name: str):  # type: ignore[no-untyped-def]
    return next(g for g in decision.gates if g.name == name)


def test_no_champion_and_no_floors_promotes() -> None:
    d = evaluate(PromotionSettings(), WEIGHTS, _cand("new", [0.1, 0.2]), None)
    assert d.promoted and d.gates == ()


def test_floors_and_latency_gate_name_value_and_limit() -> None:
    s = PromotionSettings(min_objective=0.5, min_metrics={"token_f1": 0.1}, max_latency_p95_s=0.5)
    d = evaluate(s, WEIGHTS, _cand("new", [0.2, 0.4]), None)
    assert not d.promoted
    assert not _gate(d, "min_objective").passed and "0.3000 < floor 0.5" in _gate(d, "min_objective").detail
    assert _gate(d, "min_token_f1").passed
    lat = _gate(d, "max_latency_p95_s")
    assert not lat.passed and lat.numbers == {"value": 1.0, "limit": 0.5}
    assert "min_objective" in d.reason and "max_latency_p95_s" in d.reason and "min_token_f1" not in d.reason


def test_a_missing_metric_fails_its_floor() -> None:
    d = evaluate(PromotionSettings(min_metrics={"recall_at_k": 0.1}), WEIGHTS, _cand("new", [0.5, 0.5]), None)
    assert not d.promoted and "nan" in _gate(d, "min_recall_at_k").detail


def test_clearly_better_beats_the_champion() -> None:
    champ = _cand("champion v1", [0.1] * 10)
    new = _cand("new", [0.5, 0.6, 0.4, 0.5, 0.7, 0.5, 0.3, 0.6, 0.5, 0.4])
    d = evaluate(PromotionSettings(), WEIGHTS, new, champ)
    g = _gate(d, "beats_champion")
    assert d.promoted and g.passed and g.numbers["ci_low"] > 0 and g.numbers["n"] == 10
    assert math.isclose(g.numbers["mean_diff"], 0.4, abs_tol=1e-9)


def test_identical_and_worse_stay_challenger_with_the_reason() -> None:
    champ = _cand("champion v1", [0.3, 0.5, 0.2, 0.6])
    same = evaluate(PromotionSettings(), WEIGHTS, _cand("new", [0.3, 0.5, 0.2, 0.6]), champ)
    assert not same.promoted and "not distinguishable from champion v1" in same.reason and "includes 0" in same.reason
    worse = evaluate(PromotionSettings(), WEIGHTS, _cand("new", [0.0, 0.1, 0.0, 0.2]), champ)
    assert not worse.promoted and "worse than champion v1" in worse.reason


def test_noisy_small_gain_is_not_enough() -> None:
    champ = _cand("champion v1", [0.5, 0.5, 0.5, 0.5, 0.5, 0.5])
    new = _cand("new", [0.9, 0.1, 0.9, 0.1, 0.9, 0.2])  # mean +0.02, swinging both ways
    assert not evaluate(PromotionSettings(), WEIGHTS, new, champ).promoted


def test_comparison_needs_shared_questions_and_can_be_switched_off() -> None:
    champ = Candidate("champion v1", {"objective": 0.1}, {"other": {"token_f1": 0.1}}, SIG)
    d = evaluate(PromotionSettings(), WEIGHTS, _cand("new", [0.9, 0.9]), champ)
    assert not d.promoted and "only 0 question(s)" in d.reason
    assert evaluate(PromotionSettings(compare_to_champion=False), WEIGHTS, _cand("new", [0.9, 0.9]), champ).promoted


def test_signature_change_blocks_promotion() -> None:
    champ = _cand("champion v1", [0.0] * 5, sig={"inputs": "[query]", "outputs": "[answer]"})
    d = evaluate(PromotionSettings(), WEIGHTS, _cand("new", [1.0] * 5), champ)
    assert not d.promoted and not _gate(d, "signature").passed and _gate(d, "beats_champion").passed


def test_undefined_scores_count_zero_per_question() -> None:
    champ = _cand("champion v1", [0.5] * 4)
    new = Candidate("new", {"objective": 0.5}, {f"q{i}": {"token_f1": math.nan} for i in range(4)}, SIG)
    assert "worse than" in evaluate(PromotionSettings(), WEIGHTS, new, champ).reason


def test_promotion_settings_reject_unknown_metrics() -> None:
    with pytest.raises(ValueError, match="did you mean 'token_f1'"):
        PromotionSettings(min_metrics={"token_f2": 0.1})


# ---- redaction -----------------------------------------------------------------------------------------


def test_redactor_masks_emails_phones_and_patterns_but_not_dates_or_figures() -> None:
    r = Redactor(RedactSettings(patterns=[r"ACC-\d+"]))
    text = (
        "Mail jane.doe@example.org or J.Smith+x@mail.co.uk, call +44 20 7946 0958 or (555) 123-4567; "
        "account ACC-991. Founded 2019-05-04, 1,234 staff, 3.5% growth, in 1998."
    )
    out = r(text)
    assert "jane" not in out and "Smith" not in out and "7946" not in out and "123-4567" not in out
    assert out.count("[EMAIL]") == 2 and out.count("[PHONE]") == 2 and "[REDACTED]" in out
    assert "2019-05-04" in out and "1,234" in out and "1998" in out and "3.5%" in out


def test_redactor_deep_and_off() -> None:
    r = Redactor(RedactSettings(phones=False))
    assert r.deep({"a": ["x@y.io", ("z@w.org",)], "n": 3, "p": "+44 20 7946 0958"}) == {
        "a": ["[EMAIL]", ("[EMAIL]",)],
        "n": 3,
        "p": "+44 20 7946 0958",
    }
    off = Redactor(None)
    assert off("x@y.io") == "x@y.io" and not off.enabled


def test_config_redact_switch_and_bad_pattern(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ragsweep.search.config import ConfigError, MLflowSettings, load_config
    from tests.conftest import SAMPLE

    assert MLflowSettings.model_validate({"redact": True}).redact == RedactSettings()
    assert MLflowSettings.model_validate({"redact": False}).redact is None
    cfg = tmp_path / "c.yaml"
    cfg.write_text(
        f"dataset: {{corpus: {SAMPLE / 'corpus.jsonl'}, questions: {SAMPLE / 'questions.jsonl'}}}\n"
        "mlflow:\n  redact: {patterns: ['(unclosed']}\n"
    )
    with pytest.raises(ConfigError, match=r"(?s)c.yaml.*line 3, mlflow.redact.patterns.0: not a valid regular"):
        load_config(cfg)


# ---- trace sampling and the tracking check -----------------------------------------------------------------


def test_sampling_is_deterministic_and_close_to_the_rate() -> None:
    ids = [f"q{i}" for i in range(2000)]
    picked = [i for i in ids if sampled(i, 0.25)]
    assert picked == [i for i in ids if sampled(i, 0.25)]
    assert 0.2 < len(picked) / len(ids) < 0.3
    assert all(sampled(i, 1.0) for i in ids[:10]) and not any(sampled(i, 0.0) for i in ids[:10])


def test_unreachable_tracking_server_is_named() -> None:
    uri = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TrackingUnreachable, match=rf"MLflow tracking server {uri} is unreachable"):
        check_tracking(uri, timeout_s=2)
    check_tracking("sqlite:///tmp/x.db")  # local stores need no server
