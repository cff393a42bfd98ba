"""Judges defined in YAML, in the spirit of MLflow's ``make_genai_metric``: a definition, a grading rubric on an
integer scale, few-shot examples and the item fields the judge reads.

Contract: :class:`CustomJudgeSpec` validates a definition (bad input raises ``ValueError`` naming the field);
:func:`load_spec` reads one from a YAML file and names the file and line on error; :class:`CustomJudge`
scores with one call per item, the integer score mapped linearly from the scale to [0, 1].
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ragsweep.judges.base import (
    NO_CONTEXTS,
    NO_GOLD,
    ItemField,
    JudgeItem,
    JudgeResult,
    LLMJudge,
    Step,
    budget,
    int_score,
    object_schema,
    reason_of,
    skip,
)
from ragsweep.judges.builtin import JUDGES
from ragsweep.judges.scoring import DERIVED_SUFFIXES
from ragsweep.pipelines.base.files import read_text_file
from ragsweep.pipelines.base.yaml_lines import key_lines, load_yaml, yaml_error_line
from ragsweep.pipelines.llm_client.client import ChatRequest

BUILTIN_NAMES = frozenset(JUDGES.names())


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Scale(_Strict):
    min: int = 1
    max: int = 5

    @model_validator(mode="after")
    def _order(self) -> Scale:
        if not self.min < self.max <= self.min + 10:
            raise ValueError(f"scale: need min < max <= min + 10, got {self.min}..{self.max}")
        return self


class Example(_Strict):
    """A graded example shown to the judge: the fields it reads, the score and why."""

    question: str | None = None
    answer: str | None = None
    contexts: list[str] | None = None
    gold: list[str] | None = None
    score: int
    justification: str = Field(min_length=1)


class CustomJudgeSpec(_Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]{0,40}$", description="metric judge_<name>; lower case, digits, _")
    definition: str = Field(min_length=1, description="what the metric measures")
    grading_prompt: str = Field(min_length=1, description="the rubric: what each score means")
    scale: Scale = Scale()
    reads: list[ItemField] = Field(min_length=1, description="item fields shown to the judge")
    higher_is_better: bool = True
    examples: list[Example] = Field(default_factory=list)

    @model_validator(mode="after")
    def _checks(self) -> CustomJudgeSpec:
        if self.name in BUILTIN_NAMES:
            raise ValueError(f"name {self.name!r} is a built-in judge; pick another name")
        clash = next((s for s in DERIVED_SUFFIXES if self.metric.endswith(s)), None)
        if clash:  # judge_x_nan / _ci_low / _ci_high are written for every score: a judge may not take one
            raise ValueError(f"name {self.name!r} ends in {clash!r}, which ragsweep adds to every score's name")
        if len(set(self.reads)) != len(self.reads):
            raise ValueError(f"reads lists a field twice: {self.reads}")
        for n, ex in enumerate(self.examples):
            if not self.scale.min <= ex.score <= self.scale.max:
                raise ValueError(
                    f"examples.{n}.score {ex.score} is outside the scale {self.scale.min}..{self.scale.max}"
                )
            missing = [f for f in self.reads if getattr(ex, f) is None]
            if missing:
                raise ValueError(f"examples.{n} lacks {', '.join(missing)} (the judge reads {', '.join(self.reads)})")
        return self

    @property
    def metric(self) -> str:
        return f"judge_{self.name}"


def load_spec(path: Path) -> CustomJudgeSpec:
    """Read and validate a judge definition; errors name the file and, where known, the line."""
    text = read_text_file(path, "judge file", ValueError)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        line = yaml_error_line(e)
        raise ValueError(
            f"{path}: {f'line {line}: ' if line else ''}invalid YAML: {getattr(e, 'problem', None) or e}"
        ) from None
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a mapping (name, definition, grading_prompt, ...)")
    try:
        return CustomJudgeSpec.model_validate(data)
    except ValidationError as e:
        lines = key_lines(text)
        problems = []
        for err in e.errors():
            loc = tuple(str(p) for p in err["loc"])
            line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
            where = (f"line {line}, " if line else "") + (".".join(loc) or "(top level)")
            problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        raise ValueError(f"{path}: invalid judge: " + "; ".join(problems)) from None


_FIELD_LABELS = {
    "question": "Question",
    "answer": "Answer",
    "contexts": "Retrieved passages",
    "gold": "Reference answers",
}


def _show(name: str, value: Any) -> str:
    if name == "contexts":
        return "\n".join(f"[{i}] {' '.join(c.split())}" for i, c in enumerate(value, start=1)) or "(none)"
    if name == "gold":
        return " | ".join(value) or "(none)"
    return str(value) or "(empty)"


class CustomJudge(LLMJudge):
    """A judge from a :class:`CustomJudgeSpec`: one call per item, score on the spec's scale."""

    def __init__(self, spec: CustomJudgeSpec, reason_chars: int = 0, context_chars: int = 1200) -> None:
        self.spec = spec
        self.name = spec.metric
        self.higher_is_better = spec.higher_is_better
        self.reads = tuple(spec.reads)
        self.reason_chars = reason_chars
        self.context_chars = context_chars
        lo, hi = spec.scale.min, spec.scale.max
        self.schema = object_schema({"score": {"type": "integer", "enum": list(range(lo, hi + 1))}}, reason_chars)
        examples = "".join(
            f"\n\nExample {n}:\n"
            + self._fields({f: getattr(ex, f) for f in self.reads})
            + f"\nScore: {ex.score}\nJustification: {ex.justification}"
            for n, ex in enumerate(spec.examples, start=1)
        )
        self.system = (
            f"You are an impartial judge. You grade the metric {spec.name!r}.\nDefinition: "
            f"{spec.definition.strip()}\nGrading rubric (integer score from {lo} to {hi}):\n"
            f"{spec.grading_prompt.strip()}{examples}\n\nReply in JSON with the score."
        )

    def _fields(self, values: dict[str, Any]) -> str:
        return "\n".join(f"{_FIELD_LABELS[f]}: {_show(f, values[f])}" for f in self.reads)

    def prompt_parts(self) -> Sequence[str]:
        return (self.system, json.dumps(self.schema), str(self.context_chars))

    def start(self, item: JudgeItem) -> Step | JudgeResult:
        if "gold" in self.reads and not item.gold:
            return skip(NO_GOLD)
        if "contexts" in self.reads and not item.contexts:
            return skip(NO_CONTEXTS)
        values = {
            "question": item.question,
            "answer": item.answer,
            "gold": item.gold,
            "contexts": [c[: self.context_chars] for c in item.contexts],
        }
        lo, hi = self.spec.scale.min, self.spec.scale.max
        req = ChatRequest(
            messages=(("system", self.system), ("user", self._fields(values))),
            temperature=0.0,
            max_tokens=budget(10, self.reason_chars),
            json_schema=self.schema,
        )
        return Step(
            req,
            f'{{"score": {lo} to {hi}' + (', "reason": "..."}' if self.reason_chars else "}"),
            read=lambda o: (int_score(o, lo, hi), reason_of(o)),
            finish=lambda p: ((p[0] - lo) / (hi - lo), p[1]),
        )
