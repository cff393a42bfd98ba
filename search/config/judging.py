"""The ``judges`` and ``objective`` sections."""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BeforeValidator,
    Field,
    ValidationInfo,
    model_validator,
)

from ragsweep.judges.custom import CustomJudgeSpec, load_spec
from ragsweep.judges.scoring import COST_METRICS, JUDGE_PREFIX, OBJECTIVE_METRICS
from ragsweep.judges.suite import DEFAULTS as JUDGE_DEFAULTS
from ragsweep.judges.suite import metric_names
from ragsweep.search.config.fields import (
    JudgeName,
)
from ragsweep.search.schema import (
    Strict as _Strict,
)


def _custom_judge(value: Any, info: ValidationInfo) -> Any:
    """A string is a YAML file (relative to the config's folder) holding one judge definition."""
    if isinstance(value, (str, Path)):
        base = Path((info.context or {}).get("base_dir", "."))
        path = Path(value).expanduser()
        return load_spec(path if path.is_absolute() else (base / path).resolve())
    return value


class JudgeSettings(_Strict):
    """The LLM judges run on every answer (metrics ``judge_<name>``, each in [0, 1], higher is better)."""

    suite: list[JudgeName] = Field(
        list(JUDGE_DEFAULTS.suite), description="built-in judges to run; [] = none (deterministic metrics only)"
    )
    faithfulness_calls: Literal[1, 2] = Field(
        JUDGE_DEFAULTS.faithfulness_calls,  # type: ignore[arg-type]
        description="1 = statements and verdicts in one reply; 2 = statements, then verdicts",
    )
    reason_chars: int = Field(
        JUDGE_DEFAULTS.reason_chars,
        ge=0,
        le=1000,
        description="ask correctness, answer relevance, context "
        "precision and custom judges for a rationale of at most this many characters (0 = verdict only)",
    )
    context_chars: int = Field(
        JUDGE_DEFAULTS.context_chars, ge=50, description="each retrieved chunk shown to a judge is cut to this length"
    )
    custom: list[Annotated[CustomJudgeSpec, BeforeValidator(_custom_judge)]] = Field(
        default_factory=list, description="judges defined in YAML: a file path or an inline mapping each"
    )
    max_error_rate: float | None = Field(
        None,
        ge=0,
        le=1,
        description="fail a trial when more than this fraction of its judge verdicts are unusable "
        "after one repair (unset = never; failed verdicts are NaN either way)",
    )

    @model_validator(mode="after")
    def _unique(self) -> JudgeSettings:
        if len(set(self.suite)) != len(self.suite):
            raise ValueError(f"suite lists a judge twice: {self.suite}")
        names = [c.name for c in self.custom]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise ValueError(f"custom: two judges are named {dup!r}")
        return self

    @property
    def metrics(self) -> tuple[str, ...]:
        return metric_names(self)


class Objective(_Strict):
    """Maximise the weighted sum of named per-trial metrics (NaN counts as 0).

    Quality metrics are means in [0, 1]; cost metrics (latency in seconds, generator tokens per question) take
    negative weights to trade quality for cost, e.g. ``{token_f1: 1.0, latency_p95_s: -0.05}``.
    """

    # Answer quality only: retrieval recall rises with context size whatever the answers are, so weighting it made
    # the most context win (docs/config.md, "Choosing the winner").
    weights: dict[str, float] = {"token_f1": 1.0}
    cost: str | None = Field(
        None,
        description="a cost metric to minimise together with the weighted quality: the search becomes "
        "multi-objective and reports the Pareto front (e.g. latency_p95_s, tokens_per_question, gpu_s_per_question)",
    )
    max_cost: float | None = Field(
        None, description="promotion rule with cost: the best-quality Pareto point whose cost is at most this"
    )

    @model_validator(mode="after")
    def _known(self) -> Objective:
        if not self.weights:
            raise ValueError("objective.weights needs at least one metric")
        for name, w in self.weights.items():
            # judge_<name> of a custom judge is checked against the judges section (ExperimentConfig).
            if name not in OBJECTIVE_METRICS and not name.startswith(JUDGE_PREFIX):
                hint = difflib.get_close_matches(name, OBJECTIVE_METRICS, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ValueError(f"unknown metric {name!r}{extra}; known: {', '.join(sorted(OBJECTIVE_METRICS))}")
            if not math.isfinite(w):
                raise ValueError(f"weight of {name!r} must be finite")
        if self.cost is not None and self.cost not in COST_METRICS:
            hint = difflib.get_close_matches(self.cost, COST_METRICS, n=1)
            extra = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ValueError(f"cost: unknown cost metric {self.cost!r}{extra}; known: {', '.join(COST_METRICS)}")
        if self.max_cost is not None and self.cost is None:
            raise ValueError("max_cost needs cost: the metric it limits")
        return self
