"""The judge contract (ragsweep.judges.base.LLMJudge) for every built-in judge and a custom one, on each backend.

Schema-valid replies (scripted) must give a value in [0, 1] in exactly the calls the judge declares; the real
model may fail to give one, but then the verdict is NaN with a reason; a reply that never parses is repaired
once and then NaN with the reason and the raw reply.
"""

from __future__ import annotations

import math
import re

import pytest

from ragsweep.judges.base import JudgeItem, LLMJudge, run_judges
from ragsweep.judges.builtin import JUDGES
from ragsweep.judges.custom import CustomJudge, CustomJudgeSpec
from ragsweep.pipelines.llm_client.client import LLMClient
from tests.contracts.conftest import ChatBackend

OPTIONS = type("Options", (), {"reason_chars": 40, "context_chars": 300, "faithfulness_calls": 2})()
CUSTOM = CustomJudgeSpec(
    name="concise",
    definition="The answer gives what was asked and nothing else.",
    grading_prompt="1: padded. 2: some extra words. 3: just the answer.",
    scale={"min": 1, "max": 3},
    reads=["question", "answer"],
)  # type: ignore[arg-type]
NAMES = [*JUDGES.names(), "custom"]
ITEM = JudgeItem(
    "Who won Super Bowl 50?",
    "The Denver Broncos.",
    ("Denver Broncos",),
    (
        "The Denver Broncos defeated the Carolina Panthers 24-10 to win Super Bowl 50.",
        "Levi's Stadium is in Santa Clara.",
    ),
)


def _judge(name: str) -> LLMJudge:
    return CustomJudge(CUSTOM, 40, 300) if name == "custom" else JUDGES.get(name)(OPTIONS)


@pytest.mark.parametrize("name", NAMES)
def test_identity(name: str) -> None:
    judge = _judge(name)
    assert judge.name.startswith("judge_") and "." not in judge.name
    assert re.fullmatch(r"[0-9a-f]{8,}", judge.prompt_version) and judge.prompt_version == _judge(name).prompt_version
    assert judge.calls_per_item >= 1 and set(judge.reads) <= {"question", "answer", "gold", "contexts"}


@pytest.mark.parametrize("name", NAMES)
def test_a_verdict_is_in_range_or_nan_with_a_reason(name: str, chat_backend: ChatBackend) -> None:
    judge = _judge(name)
    [result] = run_judges(LLMClient(chat_backend.base_url, chat_backend.model), [judge], [ITEM])[judge.name]
    if chat_backend.echoes:  # schema-valid replies: a value, in exactly the calls declared
        assert 0.0 <= result.value <= 1.0 and result.calls == judge.calls_per_item and not result.repaired
    else:
        assert (0.0 <= result.value <= 1.0) or (math.isnan(result.value) and result.reason)
    assert result.calls <= 2 * judge.calls_per_item and result.prompt_tokens > 0


@pytest.mark.parametrize("name", NAMES)
def test_an_unusable_reply_is_repaired_once_then_nan(name: str, garbage) -> None:  # type: ignore[no-untyped-def]
    judge = _judge(name)
    [result] = run_judges(LLMClient(garbage.url, "scripted"), [judge], [ITEM])[judge.name]
    assert math.isnan(result.value) and result.failed and result.repaired and result.reason
    assert result.raw == "I cannot answer in JSON, sorry." and result.calls == 2
