"""The built-in LLM judges: correctness, faithfulness, answer relevance and context precision.

Each asks for a JSON verdict at temperature 0 (schema-constrained where the server supports it) and maps it
to [0, 1], higher is better. Calls per judged item by design: correctness 1, answer relevance 1, context
precision 1 for all k chunks, faithfulness 1 (statements and verdicts in one reply) or 2 (statements, then
verdicts). With the default suite that is 4 requests per question whatever k is.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any

from ragsweep.judges.base import (
    NO_CLAIMS,
    NO_CONTEXTS,
    NO_GOLD,
    JudgeItem,
    JudgeResult,
    LLMJudge,
    Step,
    VerdictError,
    budget,
    field,
    int_score,
    object_schema,
    reason_of,
    skip,
)
from ragsweep.judges.lexical import declined
from ragsweep.pipelines.base.registry import Registry
from ragsweep.pipelines.llm_client.client import ChatRequest

MAX_STATEMENTS = 6
_STATEMENT_CHARS = 200


def _request(system: str, user: str, schema: dict[str, Any], max_tokens: int) -> ChatRequest:
    return ChatRequest(
        messages=(("system", system), ("user", user)), temperature=0.0, max_tokens=max_tokens, json_schema=schema
    )


def _passages(contexts: Sequence[str], chars: int) -> str:
    return "\n".join(f"[{n}] {' '.join(c.split())[:chars]}" for n, c in enumerate(contexts, start=1))


def _bools(obj: Any, key: str, n: int | None) -> list[bool]:
    values = field(obj, key, list, f"a list of {n or 'some'} true/false values")
    if not values or not all(isinstance(v, bool) for v in values):
        raise VerdictError(f"{key!r} must be a non-empty list of true/false values")
    if n is not None and len(values) != n:
        raise VerdictError(f"{key!r} has {len(values)} values for {n} items")
    return values


class _SingleVerdictJudge(LLMJudge):
    """A judge asking one fixed system prompt for one JSON verdict (``_VERDICT`` properties) plus a rationale."""

    _SYSTEM: str
    _USER: str
    _VERDICT: dict[str, Any]

    def __init__(self, reason_chars: int = 0) -> None:
        self.reason_chars = reason_chars
        self.schema = object_schema(self._VERDICT, reason_chars)

    def prompt_parts(self) -> Sequence[str]:
        return (self._SYSTEM, self._USER, json.dumps(self.schema))

    def _step(self, user: str, verdict_tokens: int, shape: str, read: Any, finish: Any) -> Step:
        reason = ', "reason": "..."}' if self.reason_chars else "}"
        return Step(
            _request(self._SYSTEM, user, self.schema, budget(verdict_tokens, self.reason_chars)),
            "{" + shape + reason,
            read=read,
            finish=finish,
        )


class CorrectnessJudge(_SingleVerdictJudge):
    """Does the answer mean the same as a gold answer? 1 or 0. Items without gold are skipped."""

    name = "judge_correctness"
    reads = ("question", "answer", "gold")
    _SYSTEM = (
        "You grade answers to questions. Compare the candidate answer with the reference answers. The "
        "candidate is correct if it gives the same answer as one of the references; extra words are fine if "
        "they do not contradict it. Reply in JSON."
    )
    _USER = "Question: {question}\nReference answers: {gold}\nCandidate answer: {answer}"
    _VERDICT = {"correct": {"type": "boolean"}}

    def start(self, item: JudgeItem) -> Step | JudgeResult:
        if not item.gold:
            return skip(NO_GOLD)
        if not item.answer.strip():
            return JudgeResult(value=0.0, reason="empty answer")
        user = self._USER.format(question=item.question, gold=" | ".join(item.gold), answer=item.answer)
        return self._step(
            user,
            12,
            '"correct": true or false',
            read=lambda o: (field(o, "correct", bool, "true or false"), reason_of(o)),
            finish=lambda p: (float(p[0]), p[1]),
        )


class AnswerRelevanceJudge(_SingleVerdictJudge):
    """Does the answer address the question (whatever its correctness)? Score 1..5 mapped to [0, 1]."""

    name = "judge_answer_relevance"
    reads = ("question", "answer")
    _SYSTEM = (
        "You rate how well an answer addresses a question, not whether it is true. Score 5: it answers "
        "exactly what was asked. 4: it answers it with unneeded extra text. 3: it answers part of it. "
        "2: it is on the topic but does not answer. 1: it is unrelated, empty or evasive. Reply in JSON."
    )
    _USER = "Question: {question}\nAnswer: {answer}"
    _VERDICT = {"score": {"type": "integer", "enum": [1, 2, 3, 4, 5]}}

    def start(self, item: JudgeItem) -> Step | JudgeResult:
        if not item.answer.strip():
            return JudgeResult(value=0.0, reason="empty answer")
        return self._step(
            self._USER.format(question=item.question, answer=item.answer),
            10,
            '"score": 1 to 5',
            read=lambda o: (int_score(o, 1, 5), reason_of(o)),
            finish=lambda p: ((p[0] - 1) / 4, p[1]),
        )


class ContextPrecisionJudge(LLMJudge):
    """Are the retrieved chunks useful, and are the useful ones ranked first? One call for all k chunks.

    The judge marks each chunk useful or not for answering the question (given the gold answer when there is
    one); the value is average precision over the ranks of the useful chunks (0 when none is useful).
    """

    name = "judge_context_precision"
    reads = ("question", "contexts", "gold")
    _SYSTEM = (
        "You check retrieved passages for a question. For each passage, in order, say whether it contains "
        "information needed to answer the question{with_ref}. Reply in JSON with one true/false per passage."
    )
    _USER = "Question: {question}\n{ref}Passages:\n{passages}"

    def __init__(self, reason_chars: int = 0, context_chars: int = 1200) -> None:
        self.reason_chars = reason_chars
        self.context_chars = context_chars

    def _schema(self, k: int) -> dict[str, Any]:
        return object_schema(
            {"relevant": {"type": "array", "items": {"type": "boolean"}, "minItems": k, "maxItems": k}},
            self.reason_chars,
        )

    def prompt_parts(self) -> Sequence[str]:
        return (self._SYSTEM, self._USER, json.dumps(self._schema(0)), str(self.context_chars))

    def start(self, item: JudgeItem) -> Step | JudgeResult:
        if not item.contexts:
            return skip(NO_CONTEXTS)
        k = len(item.contexts)
        system = self._SYSTEM.format(with_ref=" (the reference answer shows what is needed)" if item.gold else "")
        ref = f"Reference answer: {' | '.join(item.gold)}\n" if item.gold else ""
        user = self._USER.format(question=item.question, ref=ref, passages=_passages(item.contexts, self.context_chars))
        return Step(
            _request(system, user, self._schema(k), budget(4 + 3 * k, self.reason_chars)),
            '{"relevant": ['
            + ", ".join(["true or false"] * k)
            + "]"
            + (', "reason": "..."}' if self.reason_chars else "}"),
            read=lambda o: (_bools(o, "relevant", k), reason_of(o)),
            finish=lambda p: (average_precision(p[0]), p[1] or _marks(p[0])),
        )


def average_precision(relevant: Sequence[bool]) -> float:
    """Mean of precision@i over the ranks i of relevant items; 0 when none is relevant."""
    hits, total = 0, 0.0
    for i, rel in enumerate(relevant, start=1):
        if rel:
            hits += 1
            total += hits / i
    return total / hits if hits else 0.0


def _marks(relevant: Sequence[bool]) -> str:
    return "useful chunks: " + (", ".join(str(i) for i, r in enumerate(relevant, start=1) if r) or "none")


class FaithfulnessJudge(LLMJudge):
    """Is every claim of the answer supported by the retrieved contexts? Fraction of supported statements.

    ``calls=1``: one reply lists the answer's statements, each with its verdict. ``calls=2``: first the
    statements, then a verdict per statement (the Ragas way, without one call per statement).
    """

    name = "judge_faithfulness"
    reads = ("answer", "contexts")
    _SYSTEM_ONE = (
        "You check whether an answer is supported by passages. Split the answer into short standalone "
        f"statements (at most {MAX_STATEMENTS}). For each, say whether the passages support it. "
        "Reply in JSON."
    )
    _SYSTEM_SPLIT = (
        f"Split the answer into short standalone statements (at most {MAX_STATEMENTS}), each one "
        "claim, keeping names and numbers. Reply in JSON."
    )
    _SYSTEM_VERIFY = (
        "You check statements against passages. For each statement, in order, say whether the "
        "passages support it. Reply in JSON with one true/false per statement."
    )
    _USER = "Question: {question}\nPassages:\n{passages}\nAnswer: {answer}"
    _USER_SPLIT = "Question: {question}\nAnswer: {answer}"
    _USER_VERIFY = "Passages:\n{passages}\nStatements:\n{statements}"

    def __init__(self, calls: int = 1, context_chars: int = 1200) -> None:
        if calls not in (1, 2):
            raise ValueError("faithfulness takes 1 or 2 calls")
        self.calls_per_item = calls
        self.context_chars = context_chars
        text = {"type": "string", "maxLength": _STATEMENT_CHARS}
        self.schema_one = {
            "type": "object",
            "required": ["statements"],
            "properties": {
                "statements": {
                    "type": "array",
                    "minItems": 1,
                    "maxItems": MAX_STATEMENTS,
                    "items": {
                        "type": "object",
                        "required": ["statement", "supported"],
                        "properties": {"statement": text, "supported": {"type": "boolean"}},
                    },
                }
            },
        }
        self.schema_split = {
            "type": "object",
            "required": ["statements"],
            "properties": {"statements": {"type": "array", "minItems": 1, "maxItems": MAX_STATEMENTS, "items": text}},
        }

    def _verify_schema(self, n: int) -> dict[str, Any]:
        return {
            "type": "object",
            "required": ["supported"],
            "properties": {"supported": {"type": "array", "items": {"type": "boolean"}, "minItems": n, "maxItems": n}},
        }

    def prompt_parts(self) -> Sequence[str]:
        if self.calls_per_item == 1:
            return (self._SYSTEM_ONE, self._USER, json.dumps(self.schema_one), str(self.context_chars))
        return (
            self._SYSTEM_SPLIT,
            self._USER_SPLIT,
            json.dumps(self.schema_split),
            self._SYSTEM_VERIFY,
            self._USER_VERIFY,
            json.dumps(self._verify_schema(0)),
            str(self.context_chars),
        )

    def start(self, item: JudgeItem) -> Step | JudgeResult:
        if declined(item.answer):
            return skip(NO_CLAIMS)
        if not item.contexts:
            return skip(NO_CONTEXTS)
        passages = _passages(item.contexts, self.context_chars)
        per_statement = _STATEMENT_CHARS // 2 + 12
        if self.calls_per_item == 1:
            user = self._USER.format(question=item.question, passages=passages, answer=item.answer)
            return Step(
                _request(self._SYSTEM_ONE, user, self.schema_one, 8 + MAX_STATEMENTS * per_statement),
                '{"statements": [{"statement": "...", "supported": true or false}, ...]}',
                read=_statement_verdicts,
                finish=_supported_fraction,
            )
        user = self._USER_SPLIT.format(question=item.question, answer=item.answer)
        return Step(
            _request(self._SYSTEM_SPLIT, user, self.schema_split, 8 + MAX_STATEMENTS * per_statement),
            '{"statements": ["...", ...]}',
            read=_statements,
            finish=lambda statements: self._verify(statements, passages),
        )

    def _verify(self, statements: list[str], passages: str) -> Step:
        n = len(statements)
        user = self._USER_VERIFY.format(
            passages=passages, statements="\n".join(f"{i}. {s}" for i, s in enumerate(statements, 1))
        )
        return Step(
            _request(self._SYSTEM_VERIFY, user, self._verify_schema(n), 8 + 3 * n),
            '{"supported": [' + ", ".join(["true or false"] * n) + "]}",
            read=lambda o: list(zip(statements, _bools(o, "supported", n), strict=True)),
            finish=_supported_fraction,
        )


def _statements(obj: Any) -> list[str]:
    items = field(obj, "statements", list, "a list of statements")
    out = [s.strip() for s in items if isinstance(s, str) and s.strip()]
    if not out or len(out) != len(items):
        raise VerdictError("'statements' must be a non-empty list of non-empty strings")
    return out[:MAX_STATEMENTS]


def _statement_verdicts(obj: Any) -> list[tuple[str, bool]]:
    items = field(obj, "statements", list, "a list of {statement, supported} objects")
    if not items:
        raise VerdictError("'statements' is empty")
    out = [(field(it, "statement", str, "a string"), field(it, "supported", bool, "true or false")) for it in items]
    return out[:MAX_STATEMENTS]


def _supported_fraction(verdicts: list[tuple[str, bool]]) -> tuple[float, str]:
    unsupported = [s for s, ok in verdicts if not ok]
    n = len(verdicts)
    reason = f"{n - len(unsupported)} of {n} statements supported" + (
        f"; unsupported: {'; '.join(unsupported)}" if unsupported else ""
    )
    return (n - len(unsupported)) / n, reason


def _doc(cls: type) -> str:
    return " ".join((cls.__doc__ or "").split("\n\n")[0].split())


# The built-in judges by config name (judges.suite); each builds from the judges settings (reason_chars, ...).
JUDGES: Registry[Callable[[Any], LLMJudge]] = Registry("built-in judge")
JUDGES.add(
    "correctness", _doc(CorrectnessJudge), lambda c: CorrectnessJudge(c.reason_chars), metric=CorrectnessJudge.name
)
JUDGES.add(
    "faithfulness",
    _doc(FaithfulnessJudge),
    lambda c: FaithfulnessJudge(c.faithfulness_calls, c.context_chars),
    metric=FaithfulnessJudge.name,
)
JUDGES.add(
    "answer_relevance",
    _doc(AnswerRelevanceJudge),
    lambda c: AnswerRelevanceJudge(c.reason_chars),
    metric=AnswerRelevanceJudge.name,
)
JUDGES.add(
    "context_precision",
    _doc(ContextPrecisionJudge),
    lambda c: ContextPrecisionJudge(c.reason_chars, c.context_chars),
    metric=ContextPrecisionJudge.name,
)
