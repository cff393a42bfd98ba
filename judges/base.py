"""What every LLM judge shares: the item it reads, the result it gives, and the engine that asks the endpoint.

Contract of a judge (:class:`LLMJudge`): a metric ``name``, ``higher_is_better``, the item fields it
``reads``, a ``prompt_version`` (hash of all its prompt text and schemas) and ``start(item)``, which returns
either a final :class:`JudgeResult` (nothing to ask, e.g. no gold answer) or a :class:`Step`: one request
and what to do with its parsed JSON (a final value in [0, 1] with a reason, or a next step).

:func:`run_judges` runs every judge on every item with the requests of all judges in one batch per round
(so a judge endpoint with spare concurrency is kept busy). A reply that does not parse or has the wrong
shape gets one repair request (the reply shown back with what was wrong); after that the value is NaN with
the reason and the raw reply, never 0.
"""

from __future__ import annotations

import hashlib
import json
import math
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal

from ragsweep.pipelines.llm_client.client import ChatRequest, ChatResponse, LLMClient

ItemField = Literal["question", "answer", "contexts", "gold"]
FIELDS: tuple[ItemField, ...] = ("question", "answer", "contexts", "gold")

NO_GOLD = "no gold answer"
NO_CONTEXTS = "no retrieved contexts"
NO_CLAIMS = "the answer is empty or declines: no claims to check"

_REPAIR = "That reply was not usable: {error}. Reply with only the JSON, shaped like {shape}."


@dataclass(frozen=True)
class JudgeItem:
    question: str
    answer: str
    gold: tuple[str, ...] = ()  # empty for unanswerable questions
    contexts: tuple[str, ...] = ()  # retrieved chunk texts, best first


@dataclass(kw_only=True, frozen=True)
class JudgeResult:
    value: float  # in [0, 1], or NaN
    reason: str = ""  # the judge's rationale, or why there is no value
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0
    calls: int = 0  # requests made for this verdict, repairs included (cache hits count: they were asked)
    repaired: bool = False  # a repair request was needed
    raw: str = ""  # the judge's last reply when it did not parse
    skipped: bool = False  # nothing to judge (e.g. no gold answer): NaN, but not a failure
    # Every request made for this verdict with its response, in order (for traces).
    exchanges: tuple[tuple[ChatRequest, ChatResponse], ...] = ()

    @property
    def failed(self) -> bool:
        """The judge was asked but gave no usable verdict."""
        return math.isnan(self.value) and not self.skipped


def skip(reason: str) -> JudgeResult:
    return JudgeResult(value=math.nan, reason=reason, skipped=True)


class VerdictError(ValueError):
    """A reply parsed as JSON but does not have the shape the step asked for; the message says how."""


@dataclass(frozen=True)
class Step:
    """One request of a judge, with how to read its reply.

    ``read`` turns the decoded JSON into what ``finish`` needs, raising :class:`VerdictError` on a wrong shape;
    ``finish`` returns ``(value, reason)`` or the next step. ``shape`` is shown to the model in a repair.
    """

    request: ChatRequest
    shape: str
    read: Callable[[Any], Any]
    finish: Callable[[Any], Step | tuple[float, str]]


class LLMJudge(ABC):
    name: str  # the metric name, e.g. judge_faithfulness
    higher_is_better: bool = True
    reads: tuple[ItemField, ...] = ()
    calls_per_item: int = 1  # requests per judged item by design, before any repair

    @abstractmethod
    def prompt_parts(self) -> Sequence[str]:
        """Every prompt text and schema this judge may send: its version is their hash."""

    @abstractmethod
    def start(self, item: JudgeItem) -> Step | JudgeResult:
        """The first request for ``item``, or the final result when there is nothing to ask."""

    @property
    def prompt_version(self) -> str:
        text = "\x00".join([*self.prompt_parts(), _REPAIR])
        return hashlib.sha256(text.encode()).hexdigest()[:12]


def decode(text: str) -> Any:
    """The JSON object in a reply; tolerates a code fence or prose around it, and raw newlines inside strings
    (grammar-constrained servers let them through). Raises VerdictError."""
    try:
        return json.loads(text, strict=False)
    except json.JSONDecodeError:
        pass
    lo, hi = text.find("{"), text.rfind("}")
    if 0 <= lo < hi:
        try:
            return json.loads(text[lo : hi + 1], strict=False)
        except json.JSONDecodeError:
            pass
    raise VerdictError(f"reply is not JSON: {text[:200]!r}" if text.strip() else "empty reply")


def field(obj: Any, key: str, kind: type | tuple[type, ...], what: str) -> Any:
    """``obj[key]`` when obj is a JSON object and the value has the right type; else VerdictError."""
    if not isinstance(obj, dict):
        raise VerdictError(f"expected a JSON object, got {type(obj).__name__}")
    value = obj.get(key)
    # bool is an int in Python: an int field must not accept true/false.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise VerdictError(f"missing or wrong {key!r}: expected {what}, got {json.dumps(value)[:80]}")
    return value


def int_score(obj: Any, lo: int, hi: int) -> int:
    """The integer ``score`` of a verdict, checked against the scale lo..hi; else VerdictError."""
    s = field(obj, "score", int, f"an integer from {lo} to {hi}")
    if not lo <= s <= hi:
        raise VerdictError(f"score {s} is outside {lo}..{hi}")
    return int(s)


def reason_of(obj: Any) -> str:
    r = obj.get("reason", "") if isinstance(obj, dict) else ""
    return r.strip() if isinstance(r, str) else ""


def run_judges(
    client: LLMClient, judges: Sequence[LLMJudge], items: Sequence[JudgeItem]
) -> dict[str, list[JudgeResult]]:
    """Every judge's result for every item, in item order. Raises LLMError only if the endpoint fails for good."""
    return run_judge_sets(client, [(j, items) for j in judges])


def run_judge_sets(
    client: LLMClient, sets: Sequence[tuple[LLMJudge, Sequence[JudgeItem]]]
) -> dict[str, list[JudgeResult]]:
    """Like :func:`run_judges`, each judge on its own items; all requests of a round still go out together."""
    results: dict[str, list[JudgeResult | None]] = {j.name: [None] * len(items) for j, items in sets}
    spent: dict[tuple[str, int], JudgeResult] = {}  # tokens, calls and repair flag so far, per (judge, item)
    pending: list[tuple[str, int, Step]] = []
    for j, items in sets:
        for i, item in enumerate(items):
            first = j.start(item)
            if isinstance(first, JudgeResult):
                results[j.name][i] = first
            else:
                pending.append((j.name, i, first))
                spent[(j.name, i)] = JudgeResult(value=math.nan)
    while pending:
        outcomes = _ask(client, [s for _, _, s in pending])
        following: list[tuple[str, int, Step]] = []
        for (name, i, step), (parsed, error, raw, usage) in zip(pending, outcomes, strict=True):
            acc = spent[(name, i)]
            acc = replace(
                acc,
                prompt_tokens=acc.prompt_tokens + usage.prompt_tokens,
                completion_tokens=acc.completion_tokens + usage.completion_tokens,
                latency_s=acc.latency_s + usage.latency_s,
                calls=acc.calls + usage.calls,
                repaired=acc.repaired or usage.repaired,
                exchanges=acc.exchanges + usage.exchanges,
            )
            spent[(name, i)] = acc
            if error:
                results[name][i] = replace(acc, reason=error, raw=raw)
                continue
            nxt = step.finish(parsed)
            if isinstance(nxt, Step):
                following.append((name, i, nxt))
            else:
                value, reason = nxt
                results[name][i] = replace(acc, value=value, reason=reason)
        pending = following
    return {name: [r for r in rs if r is not None] for name, rs in results.items()}


def _ask(client: LLMClient, steps: Sequence[Step]) -> list[tuple[Any, str, str, JudgeResult]]:
    """``(parsed, error, raw, usage)`` per step, after at most one repair request each."""
    responses = client.complete([s.request for s in steps])
    out: list[tuple[Any, str, str, JudgeResult]] = []
    bad: list[int] = []
    for k, (step, resp) in enumerate(zip(steps, responses, strict=True)):
        usage = JudgeResult(
            value=math.nan,
            prompt_tokens=resp.prompt_tokens,
            completion_tokens=resp.completion_tokens,
            latency_s=resp.latency_s,
            calls=1,
            exchanges=((step.request, resp),),
        )
        try:
            out.append((step.read(decode(resp.text)), "", "", usage))
        except VerdictError as e:
            out.append((None, str(e), resp.text, usage))
            bad.append(k)
    if not bad:
        return out
    # One repair round: show the judge its reply and what was wrong with it, ask for the JSON alone.
    repairs = []
    for k in bad:
        req, (_, error, raw, _) = steps[k].request, out[k]
        repairs.append(
            replace(
                req,
                messages=(
                    *req.messages,
                    ("assistant", raw or "(empty)"),
                    ("user", _REPAIR.format(error=error, shape=steps[k].shape)),
                ),
            )
        )
    for k, req, resp in zip(bad, repairs, client.complete(repairs), strict=True):
        first = out[k][3]
        usage = replace(
            first,
            prompt_tokens=first.prompt_tokens + resp.prompt_tokens,
            completion_tokens=first.completion_tokens + resp.completion_tokens,
            latency_s=first.latency_s + resp.latency_s,
            calls=2,
            repaired=True,
            exchanges=first.exchanges + ((req, resp),),
        )
        try:
            out[k] = (steps[k].read(decode(resp.text)), "", "", usage)
        except VerdictError as e:
            out[k] = (None, f"after one repair, {e}", resp.text, usage)
    return out


def reason_schema(chars: int) -> dict[str, Any]:
    """JSON-schema properties for an optional short rationale (none when ``chars`` is 0)."""
    return {"reason": {"type": "string", "maxLength": chars}} if chars else {}


def object_schema(props: dict[str, Any], reason_chars: int) -> dict[str, Any]:
    props = {**props, **reason_schema(reason_chars)}
    return {"type": "object", "properties": props, "required": list(props)}


def budget(verdict_tokens: int, reason_chars: int) -> int:
    """max_tokens for a reply: the verdict plus a rationale of at most ``reason_chars`` (≥1 char per token)."""
    return verdict_tokens + reason_chars + 8
