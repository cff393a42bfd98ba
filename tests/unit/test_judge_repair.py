"""Judge verdict parsing and the repair round, against a scripted endpoint (how failures are recorded, not
what a judge thinks), and the per-trial judge error budget."""

from __future__ import annotations

import copy
import json
import math

import pytest

from judges.llm_judge import CorrectnessJudge, JudgeItem, JudgeResult
from pipelines.llm import LLMClient
from search.trial import JudgeBudgetError, _check_judge_budget
from tests.unit.test_llm_errors import OK_BODY, Script, scripted  # noqa: F401 - the fixture

ITEM = JudgeItem("Who won?", "Denver", ("Denver Broncos",))


def _reply(text: str) -> tuple[int, dict[str, str], bytes]:
    body = copy.deepcopy(OK_BODY)
    body["choices"][0]["message"]["content"] = text
    return 200, {}, json.dumps(body).encode()


@pytest.mark.parametrize(("first", "second", "value", "reason"), [
    ('{"correct": true}', None, 1.0, ""),                                   # fine at once: one call
    ("yes it is", '{"correct": false}', 0.0, ""),                           # malformed, repaired
    ("", '{"correct": true}', 1.0, ""),                                     # empty, repaired
    ('{"correct": "maybe"}', '{"verdict": 1}', math.nan, "lacks a boolean"),  # wrong type, then missing field
    ('{"correct": tru', "still not json", math.nan, "not JSON"),           # truncated, then garbage
])
def test_repair_once_then_nan_with_reason(scripted: tuple[str, Script], first: str, second: str | None,  # noqa: F811
                                          value: float, reason: str) -> None:
    url, script = scripted
    script.steps = [_reply(first)] + ([_reply(second)] if second is not None else [])
    [res] = CorrectnessJudge(LLMClient(url, "m", max_retries=0)).score([ITEM])
    assert script.count == (1 if second is None else 2)  # at most one repair request
    if math.isnan(value):
        assert math.isnan(res.value) and res.failed and res.repaired
        assert res.reason.startswith("after one repair") and reason in res.reason and res.raw == second
    else:
        assert res.value == value and not res.failed and res.repaired == (second is not None)
    assert res.prompt_tokens == script.count  # the repair's tokens are counted too


def test_no_gold_is_not_asked_and_not_a_failure(scripted: tuple[str, Script]) -> None:  # noqa: F811
    url, script = scripted
    [res] = CorrectnessJudge(LLMClient(url, "m")).score([JudgeItem("q", "a", ())])
    assert script.count == 0 and math.isnan(res.value) and not res.failed


def test_judge_error_budget() -> None:
    bad = [JudgeResult(math.nan, "after one repair, verdict is not JSON: 'x'")]
    _check_judge_budget(1, 4, 0.25, bad)  # at the limit: fine
    _check_judge_budget(4, 4, None, bad)  # no budget set
    with pytest.raises(JudgeBudgetError, match=r"2 of 4 judge verdicts unusable .* above llm.max_judge_error_rate 25%"):
        _check_judge_budget(2, 4, 0.25, bad)
