"""How judges read verdicts, repair them once and record failures, against a scripted endpoint (how replies
are turned into scores, not what a judge thinks); custom judge definitions; the per-trial error budget."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest

from ragsweep.judges.base import JudgeItem, JudgeResult, LLMJudge, run_judges
from ragsweep.judges.builtin import (
    AnswerRelevanceJudge,
    ContextPrecisionJudge,
    CorrectnessJudge,
    FaithfulnessJudge,
    average_precision,
)
from ragsweep.judges.custom import CustomJudge, CustomJudgeSpec, load_spec
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.search.answering import JudgeBudgetError, _check_judge_budget
from tests.unit.test_llm_errors import OK_BODY, Script, scripted  # noqa: F401 - the fixture

ITEM = JudgeItem("Who won?", "Denver", ("Denver Broncos",), ("Denver beat Carolina.", "Snow fell in Denver."))


def _reply(text: str) -> tuple[int, dict[str, str], bytes]:
    body = copy.deepcopy(OK_BODY)
    body["choices"][0]["message"]["content"] = text
    return 200, {}, json.dumps(body).encode()


def _one(url: str, judge: LLMJudge, item: JudgeItem = ITEM) -> JudgeResult:
    # One request at a time, so scripted replies arrive in request order.
    [res] = run_judges(LLMClient(url, "m", max_retries=0, max_concurrency=1), [judge], [item])[judge.name]
    return res


@pytest.mark.parametrize(
    ("first", "second", "value", "reason"),
    [
        ('{"correct": true}', None, 1.0, ""),  # fine at once: one call
        ("yes it is", '{"correct": false}', 0.0, ""),  # malformed, repaired
        ("", '{"correct": true}', 1.0, ""),  # empty, repaired
        ('```json\n{"correct": true}\n```', None, 1.0, ""),  # fenced JSON is still JSON
        ('{"correct": "maybe"}', '{"verdict": 1}', math.nan, "missing or wrong 'correct'"),  # wrong type, then missing
        ('{"correct": tru', "still not json", math.nan, "not JSON"),  # truncated, then garbage
    ],
)
def test_repair_once_then_nan_with_reason(
    scripted: tuple[str, Script],  # noqa: F811 - the fixture imported above
    first: str,
    second: str | None,
    value: float,
    reason: str,
) -> None:
    url, script = scripted
    script.steps = [_reply(first)] + ([_reply(second)] if second is not None else [])
    res = _one(url, CorrectnessJudge())
    assert script.count == (1 if second is None else 2)  # at most one repair request
    assert res.calls == script.count
    if math.isnan(value):
        assert math.isnan(res.value) and res.failed and res.repaired
        assert res.reason.startswith("after one repair") and reason in res.reason and res.raw == second
    else:
        assert res.value == value and not res.failed and res.repaired == (second is not None)
    assert res.prompt_tokens == script.count  # the repair's tokens are counted too


def test_nothing_to_judge_is_not_asked(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    no_gold = _one(url, CorrectnessJudge(), JudgeItem("q", "a", ()))
    assert math.isnan(no_gold.value) and no_gold.skipped and not no_gold.failed
    assert _one(url, CorrectnessJudge(), JudgeItem("q", " ", ("x",))).value == 0.0  # empty answer: wrong
    assert _one(url, AnswerRelevanceJudge(), JudgeItem("q", "", ("x",))).value == 0.0
    declines = _one(url, FaithfulnessJudge(), JudgeItem("q", "I don't know.", (), ("ctx",)))
    assert declines.skipped and "no claims" in declines.reason
    assert _one(url, ContextPrecisionJudge(), JudgeItem("q", "a", ("a",), ())).skipped
    assert script.count == 0


def test_relevance_scale_and_out_of_range_repair(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    script.steps = [_reply('{"score": 9, "reason": "x"}'), _reply('{"score": 4, "reason": "mostly"}')]
    res = _one(url, AnswerRelevanceJudge(reason_chars=40))
    assert res.value == 0.75 and res.reason == "mostly" and res.repaired
    script.steps, script.count = [_reply('{"score": true}')], 0  # a boolean is not an integer score
    res = _one(url, AnswerRelevanceJudge())
    assert math.isnan(res.value) and "score" in res.reason and script.count == 2


def test_context_precision_is_rank_aware_in_one_call(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    script.steps = [_reply('{"relevant": [false, true]}')]
    res = _one(url, ContextPrecisionJudge())
    assert script.count == 1 and res.value == 0.5 and res.reason == "useful chunks: 2"
    script.steps, script.count = [_reply('{"relevant": [true]}'), _reply('{"relevant": [true, false]}')], 0
    res = _one(url, ContextPrecisionJudge())  # one value for two chunks: repaired
    assert res.value == 1.0 and res.repaired and script.count == 2


def test_average_precision_by_hand() -> None:
    assert average_precision([True, False, True]) == pytest.approx((1 + 2 / 3) / 2)
    assert average_precision([False, False]) == 0.0
    assert average_precision([False, True, True]) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_faithfulness_one_and_two_calls(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    script.steps = [
        _reply(
            '{"statements": [{"statement": "Denver won", "supported": true}, '
            '{"statement": "it snowed", "supported": false}]}'
        )
    ]
    res = _one(url, FaithfulnessJudge(calls=1))
    assert script.count == 1 and res.value == 0.5 and "unsupported: it snowed" in res.reason
    script.steps, script.count = (
        [_reply('{"statements": ["Denver won", "by 14"]}'), _reply('{"supported": [true, true]}')],
        0,
    )
    res = _one(url, FaithfulnessJudge(calls=2))
    assert script.count == 2 and res.calls == 2 and res.value == 1.0
    script.steps, script.count = [_reply('{"statements": []}'), _reply('{"statements": 3}')], 0
    res = _one(url, FaithfulnessJudge(calls=2))  # the first step fails after its repair: no second step
    assert math.isnan(res.value) and res.failed and script.count == 2


def test_all_judges_share_one_batch(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    script.steps = [
        _reply(
            '{"correct": true, "score": 5, "relevant": [true, true], '
            '"statements": [{"statement": "s", "supported": true}]}'
        )
    ]
    judges = [CorrectnessJudge(), AnswerRelevanceJudge(), ContextPrecisionJudge(), FaithfulnessJudge()]
    out = run_judges(LLMClient(url, "m", max_retries=0), judges, [ITEM, ITEM])
    assert script.count == 8 and all(r.value == 1.0 for rs in out.values() for r in rs)
    versions = {j.prompt_version for j in judges}
    assert len(versions) == 4 and all(len(v) == 12 for v in versions)
    assert FaithfulnessJudge(calls=2).prompt_version != FaithfulnessJudge(calls=1).prompt_version
    assert CorrectnessJudge(40).prompt_version != CorrectnessJudge(0).prompt_version


SPEC = {
    "name": "conciseness",
    "definition": "Says only what was asked.",
    "reads": ["question", "answer"],
    "grading_prompt": "1: rambling. 2: some padding. 3: just the answer.",
    "scale": {"min": 1, "max": 3},
    "examples": [{"question": "Capital of France?", "answer": "Paris", "score": 3, "justification": "bare"}],
}


def test_custom_judge_scores_on_its_scale(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    judge = CustomJudge(CustomJudgeSpec.model_validate(SPEC))
    assert judge.name == "judge_conciseness" and "Example 1:" in judge.system and "Score: 3" in judge.system
    script.steps = [_reply('{"score": 2}')]
    assert _one(url, judge).value == 0.5
    other = CustomJudge(CustomJudgeSpec.model_validate({**SPEC, "grading_prompt": "different"}))
    assert other.prompt_version != judge.prompt_version


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"name": "Bad Name"}, "should match pattern"),
        ({"name": "faithfulness"}, "built-in judge"),
        ({"scale": {"min": 3, "max": 3}}, "min < max"),
        ({"reads": []}, "at least 1 item"),
        ({"reads": ["question", "answers"]}, "'question', 'answer', 'contexts' or 'gold'"),
        ({"examples": [{"question": "q", "answer": "a", "score": 7, "justification": "j"}]}, "outside the scale 1..3"),
        ({"examples": [{"question": "q", "score": 1, "justification": "j"}]}, "examples.0 lacks answer"),
        ({"rubric": "x"}, "Extra inputs are not permitted"),
    ],
)
def test_custom_judge_bad_definitions(change: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CustomJudgeSpec.model_validate({**SPEC, **change})


def test_custom_judge_file_errors_name_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "j.yaml"
    path.write_text(
        "name: conciseness\ndefinition: d\ngrading_prompt: g\nreads: [question]\nscale:\n  min: 1\n  max: x\n"
    )
    with pytest.raises(ValueError, match=r"j\.yaml: invalid judge: line 7, scale\.max: .*integer"):
        load_spec(path)
    with pytest.raises(ValueError, match="cannot read the judge file: file not found"):
        load_spec(tmp_path / "missing.yaml")


def test_judge_error_budget() -> None:
    bad = [JudgeResult(value=math.nan, reason="after one repair, reply is not JSON: 'x'")]
    _check_judge_budget(1, 4, 0.25, bad)  # at the limit: fine
    _check_judge_budget(4, 4, None, bad)  # no budget set
    with pytest.raises(JudgeBudgetError, match=r"2 of 4 judge verdicts unusable .* above judges.max_error_rate 25%"):
        _check_judge_budget(2, 4, 0.25, bad)


def test_mlflow_rows_map_to_judge_items() -> None:
    from ragsweep.judges.mlflow_scorers import to_item

    item = to_item(
        {"question": "Who won?"},
        {"response": "Denver", "sources": [{"text": "a"}, {"page_content": "b"}]},
        {"expected_response": "Denver Broncos"},
    )
    assert item == JudgeItem("Who won?", "Denver", ("Denver Broncos",), ("a", "b"))
    assert to_item("q", "a", {"gold": ["x", "y"]}) == JudgeItem("q", "a", ("x", "y"), ())
    assert to_item({"query": "q"}, {"answer": "a", "contexts": "c"}, None) == JudgeItem("q", "a", (), ("c",))


def test_raw_newlines_inside_a_reason_still_parse(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    script.steps = [_reply('{ "score": 2, "reason" : "first line\nsecond line" }')]
    res = _one(url, AnswerRelevanceJudge(reason_chars=40))
    assert res.value == 0.25 and res.reason == "first line\nsecond line" and script.count == 1
