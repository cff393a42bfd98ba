"""LLM judges: a JSON verdict from the judge endpoint, temperature 0.

Contract (shared by every judge): ``name``, ``higher_is_better``, ``prompt_version`` and
``score(items) -> list[JudgeResult]`` with values in [0, 1], or NaN plus a reason when the verdict could
not be had. An unparsable verdict is retried once with a repair instruction, then recorded as NaN with the
reason and the raw reply; it is never scored 0.
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
    repaired: bool = False  # a repair request was needed (and counted in the tokens)
    raw: str = ""  # the judge's reply when it did not parse

    @property
    def failed(self) -> bool:
        """The judge was asked but gave no usable verdict (not: there was nothing to judge)."""
        return math.isnan(self.value) and self.reason != NO_GOLD


_SYSTEM = (
    "You grade answers to questions. Compare the candidate answer with the reference answer. "
    'Reply with JSON {"correct": true} if the candidate means the same as the reference, else {"correct": false}.'
)
_USER = "Question: {question}\nReference answer: {gold}\nCandidate answer: {answer}\nJSON verdict:"
_REPAIR = 'That reply was not the JSON verdict. Reply with only {"correct": true} or {"correct": false}.'
NO_GOLD = "no gold answer"
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
    prompt_version = hashlib.sha256(
        f"{_SYSTEM}\x00{_USER}\x00{_REPAIR}\x00{json.dumps(_SCHEMA)}".encode()).hexdigest()[:12]

    def __init__(self, client: LLMClient, max_tokens: int = 24) -> None:
        self.client = client
        self.max_tokens = max_tokens

    def score(self, items: Sequence[JudgeItem]) -> list[JudgeResult]:
        todo = [i for i, it in enumerate(items) if it.gold]
        results = [JudgeResult(math.nan, NO_GOLD) for _ in items]
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
            results[i] = JudgeResult(value, reason, resp.prompt_tokens, resp.completion_tokens, resp.latency_s,
                                     raw=resp.text if reason else "")
        # One repair round for verdicts that did not parse: show the judge its reply and ask for the JSON alone.
        bad = [(i, req) for i, req in zip(todo, requests, strict=True) if math.isnan(results[i].value)]
        if bad:
            repairs = [ChatRequest(messages=(*req.messages, ("assistant", results[i].raw or "(empty)"),
                                             ("user", _REPAIR)),
                                   temperature=0.0, max_tokens=self.max_tokens, json_schema=_SCHEMA)
                       for i, req in bad]
            for (i, _), resp in zip(bad, self.client.complete(repairs), strict=True):
                first = results[i]
                value, reason = parse_verdict(resp.text)
                results[i] = JudgeResult(value, f"after one repair, {reason}" if reason else "",
                                         first.prompt_tokens + resp.prompt_tokens,
                                         first.completion_tokens + resp.completion_tokens,
                                         first.latency_s + resp.latency_s, repaired=True,
                                         raw=resp.text if reason else "")
        return results
