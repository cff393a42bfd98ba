"""LLM judges: a JSON verdict from the judge endpoint, temperature 0.

Contract (shared by every judge): ``name``, ``higher_is_better``, ``prompt_version`` and
``score(items) -> list[JudgeResult]`` with values in [0, 1], or NaN plus a reason when the verdict could
not be had. An unparsable verdict is never scored 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

from pipelines.llm import ChatRequest, LLMClient


@dataclass(frozen=True)
class JudgeItem:
    question: str
    answer: str
    gold: tuple[str, ...]


@dataclass(frozen=True)
class JudgeResult:
    value: float  # in [0, 1], or NaN
    reason: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0


_SYSTEM = (
    "You grade answers to questions. Compare the candidate answer with the reference answer. "
    'Reply with JSON {"correct": true} if the candidate means the same as the reference, else {"correct": false}.'
)
_USER = "Question: {question}\nReference answer: {gold}\nCandidate answer: {answer}\nJSON verdict:"
_SCHEMA = {
    "type": "object",
    "properties": {"correct": {"type": "boolean"}},
    "required": ["correct"],
}


def parse_verdict(text: str) -> tuple[float, str]:
    """``(1.0|0.0, "")`` for a well-formed verdict, else ``(nan, reason)``."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError:
        return math.nan, f"verdict is not JSON: {text[:200]!r}"
    value = obj.get("correct") if isinstance(obj, dict) else None
    if not isinstance(value, bool):
        return math.nan, f"verdict lacks a boolean 'correct': {text[:200]!r}"
    return float(value), ""


class CorrectnessJudge:
    """Is the answer correct given the gold answer(s)? One call per answer, batched."""

    name = "judge_correctness"
    higher_is_better = True
    prompt_version = hashlib.sha256(f"{_SYSTEM}\x00{_USER}\x00{json.dumps(_SCHEMA)}".encode()).hexdigest()[:12]

    def __init__(self, client: LLMClient, max_tokens: int = 24) -> None:
        self.client = client
        self.max_tokens = max_tokens

    def score(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        todo = [i for i, it in enumerate(items) if it.gold]
        results = [JudgeResult(math.nan, "no gold answer") for _ in items]
        requests = [
            ChatRequest(
                messages=(
                    ("system", _SYSTEM),
                    ("user", _USER.format(question=items[i].question, gold=" | ".join(items[i].gold),
                                          answer=items[i].answer or "(empty)")),
                ),
                temperature=0.0,
                max_tokens=self.max_tokens,
                json_schema=_SCHEMA,
            )
            for i in todo
        ]
        for i, resp in zip(todo, self.client.complete(requests), strict=True):
            value, reason = parse_verdict(resp.text)
            results[i] = JudgeResult(value, reason, resp.prompt_tokens, resp.completion_tokens, resp.latency_s)
        return results
