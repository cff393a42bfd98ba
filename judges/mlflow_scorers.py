"""ragsweep judges as MLflow GenAI scorers, to evaluate any pipeline with ``mlflow.genai.evaluate``.

Contract: :func:`as_scorer` wraps one judge and an LLM client into an ``mlflow.genai.scorers.Scorer`` named after
the judge's metric. It reads the question from ``inputs`` (a string, or the key ``question``/``query``/
``input``), the answer and contexts from ``outputs`` (a string, or keys ``answer``/``response`` and
``contexts``/``sources``, each a string or a dict with ``text``/``page_content``) and gold answers from
``expectations`` (``expected_response``, ``gold`` or ``answers``). It returns a ``Feedback`` whose value is
in [0, 1], with the judge's reason as rationale and its prompt version in the metadata; an unusable verdict
or nothing to judge is a ``Feedback`` with an error and no value, never 0.

Example::

    from ragsweep.judges.mlflow_scorers import judge_scorers
    from ragsweep.judges.suite import DEFAULTS
    settings = dataclasses.replace(DEFAULTS, suite=("faithfulness", "correctness"))
    mlflow.genai.evaluate(data=rows, scorers=judge_scorers(LLMClient(url, model), settings))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from mlflow.entities import Feedback
from mlflow.genai.scorers import Scorer, scorer

from ragsweep.judges.base import JudgeItem, LLMJudge, run_judges
from ragsweep.judges.suite import DEFAULTS, JudgeConfig, build_judges
from ragsweep.pipelines.llm_client.client import LLMClient


def _text(value: Any, keys: Sequence[str]) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        for k in keys:
            if isinstance(value.get(k), str):
                return value[k]
    return ""


def _contexts(outputs: Any) -> tuple[str, ...]:
    raw: Any = []
    if isinstance(outputs, dict):
        raw = next((outputs[k] for k in ("contexts", "sources") if k in outputs), [])
    out = []
    for c in raw if isinstance(raw, list) else [raw]:
        text = _text(c, ("text", "page_content", "content"))
        if text:
            out.append(text)
    return tuple(out)


def _gold(expectations: Any) -> tuple[str, ...]:
    if not isinstance(expectations, dict):
        return ()
    for k in ("expected_response", "gold", "answers"):
        v = expectations.get(k)
        if isinstance(v, str):
            return (v,)
        if isinstance(v, list):
            return tuple(x for x in v if isinstance(x, str))
    return ()


def to_item(inputs: Any, outputs: Any, expectations: Any = None) -> JudgeItem:
    """An MLflow evaluation row as a judge item (see the module docstring for the keys read)."""
    return JudgeItem(
        question=_text(inputs, ("question", "query", "input")),
        answer=_text(outputs, ("answer", "response")),
        gold=_gold(expectations),
        contexts=_contexts(outputs),
    )


def as_scorer(judge: LLMJudge, client: LLMClient) -> Scorer:
    def evaluate(inputs: Any = None, outputs: Any = None, expectations: Any = None) -> Feedback:
        [res] = run_judges(client, [judge], [to_item(inputs, outputs, expectations)])[judge.name]
        meta = {
            "prompt_version": judge.prompt_version,
            "calls": str(res.calls),
            "higher_is_better": str(judge.higher_is_better).lower(),
        }
        if math.isnan(res.value):
            return Feedback(name=judge.name, error=res.reason or "no verdict", metadata=meta)
        return Feedback(name=judge.name, value=res.value, rationale=res.reason or None, metadata=meta)

    return scorer(evaluate, name=judge.name)


def judge_scorers(client: LLMClient, settings: JudgeConfig | None = None) -> list[Scorer]:
    """Scorers for the judges of a ``judges`` config section (default: the default suite), all asking ``client``."""
    return [as_scorer(j, client) for j in build_judges(settings if settings is not None else DEFAULTS)]
