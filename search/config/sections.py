"""The ``search``, ``mlflow``, ``promotion`` and ``dataset`` sections."""

from __future__ import annotations

import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BeforeValidator,
    Field,
    field_validator,
    model_validator,
)

from ragsweep.judges.scoring import JUDGE_PREFIX, OBJECTIVE_METRICS
from ragsweep.search.config.fields import (
    ExistingFile,
    ExistingPath,
    ExperimentName,
    ModelName,
    SamplerName,
    SchedulerName,
    SelectionRule,
    StorageUri,
    TrackingUri,
)
from ragsweep.search.registries import SAMPLERS, SCHEDULERS, SELECTION_RULES
from ragsweep.search.schema import (
    Strict as _Strict,
)


class SearchSettings(_Strict):
    num_samples: int = Field(6, ge=1, description="trials to run")
    max_concurrent_trials: int = Field(2, ge=1)
    questions_per_trial: int | None = Field(24, ge=1, description="unset = all questions")
    shard_size: int = Field(8, ge=1, description="questions per report to Tune")
    seed: int = 0
    strategy: Literal["two_stage", "joint"] = Field(
        "two_stage",
        description="two_stage: the retrieval keys are screened first on every search question with no "
        "LLM call, and trials (LLM answers) try only the screen's recall-versus-context-tokens Pareto front, crossed "
        "with the generation keys; joint: trials sample every key together (retrieval is still measured on every "
        "search question, per trial)",
    )
    screen_configs: int = Field(
        256,
        ge=1,
        description="two_stage: most retrieval configurations the screen scores "
        "(a seeded sample when the space has more; the baseline's always)",
    )
    screen_indexes: int = Field(
        12,
        ge=1,
        description="two_stage: most distinct indexes (chunker x chunk_size x "
        "overlap x embedder) the screen builds; each is built once and reused by trials",
    )
    max_candidates: int = Field(
        8,
        ge=1,
        description="two_stage: most retrieval configurations of the screen's front "
        "the LLM trials try (a larger front is thinned to its statistically distinct steps)",
    )
    screen_questions: int | None = Field(
        None, ge=2, description="search questions retrieval is scored on, free of LLM calls (unset = all of them)"
    )
    scheduler: SchedulerName = Field(
        "paired", description=f"{SCHEDULERS.describe()}. The baseline trial is never stopped"
    )
    grace_questions: int = Field(
        8, ge=1, description="asha, paired: questions every trial answers before it may be stopped"
    )
    reduction_factor: float = Field(2.0, gt=1, description="asha: keep the best 1/reduction_factor at each rung")
    p_threshold: float = Field(
        0.1,
        gt=0,
        lt=1,
        description="paired: stop when the one-sided Wilcoxon p-value that "
        "the trial is worse than the best is below this",
    )
    finalists: int = Field(
        3,
        ge=1,
        description="best full-fidelity trials (by search objective) that answer the "
        "held-out questions; the promoted trial is one of them",
    )
    holdout_questions: int | None = Field(
        None,
        ge=2,
        description="held-out questions each finalist answers (unset = questions_per_trial, at most "
        "the held-out split)",
    )
    selection: SelectionRule = Field("cheapest_tied", description=SELECTION_RULES.describe())
    min_saving: float = Field(
        0.2,
        ge=0,
        le=1,
        description="cheapest_tied: a tied finalist cheaper than the best "
        "wins only if it saves at least this share of the best's tokens per question or p95 "
        "latency (0 = any saving)",
    )
    race_batch: int | None = Field(
        8,
        ge=1,
        description="held-out questions per racing round: after each, a finalist "
        "significantly worse than the best drops out, until one is left or the held-out "
        "questions are spent; null = every finalist answers them all",
    )
    oracle: bool = Field(
        True,
        description="answer the search questions once per finalists' generator and prompt with "
        "the gold passage as the only context: the ceiling better retrieval could reach",
    )
    confidence: float = Field(
        0.95, gt=0.5, lt=1, description="confidence level of every interval in the report and of the ties in selection"
    )
    bootstrap_samples: int = Field(2000, ge=100, description="bootstrap resamples of the questions per interval")
    cpus_per_trial: float = Field(1.0, gt=0)
    ray_address: str | None = Field(
        None,
        description="unset = join RAY_ADDRESS if set (ray job submit, KubeRay), else start a local Ray; 'auto' = "
        "join the cluster this machine belongs to; host:port = that cluster's head",
    )
    storage_path: StorageUri | None = Field(
        None,
        description="Ray Tune results: on a multi-node cluster a URI every node reaches (s3://bucket/prefix, "
        "gs://..., or a path on NFS); unset = <storage_dir>/ray",
    )
    max_failures: int | None = Field(
        None,
        ge=0,
        description="times Tune retries a failed trial (a lost node, a killed worker) on another node; "
        "unset = 0 on a local Ray, 2 on a cluster",
    )
    sampler: SamplerName = Field("tpe", description=SAMPLERS.describe())
    startup_trials: int | None = Field(
        None, ge=1, description="tpe: random trials before TPE models the space (unset = num_samples // 3, 2..10)"
    )
    baseline: dict[str, Any] | None = Field(
        {},
        description="trial run first, the reference for the margin in the report: missing keys take the first "
        "choice (or low end) of the space; null = no baseline",
    )
    max_llm_calls: int | None = Field(
        None, ge=1, description="stop the search once trials have sent this many LLM requests (cache hits are free)"
    )
    time_budget_s: float | None = Field(None, gt=0, description="stop the search after this many seconds of trials")

    @property
    def n_startup_trials(self) -> int:
        return self.startup_trials or max(2, min(10, self.num_samples // 3))

    @model_validator(mode="after")
    def _grace(self) -> SearchSettings:
        if (
            self.scheduler != "fifo"
            and self.questions_per_trial is not None
            and self.grace_questions > self.questions_per_trial
        ):
            raise ValueError(
                f"grace_questions ({self.grace_questions}) exceeds questions_per_trial "
                f"({self.questions_per_trial}): lower grace_questions or set scheduler: fifo"
            )
        return self

    @field_validator("storage_path")
    @classmethod
    def _absolute_storage_path(cls, v: str | None) -> str | None:
        # a plain path becomes absolute: Tune runs every trial in a folder of its own
        return v if v is None or "://" in v else str(Path(v).expanduser().resolve())


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regular expression {value!r}: {e}") from e
    return value


class RedactSettings(_Strict):
    """Masks applied to every text ragsweep logs (traces, answers, answers tables, prompts, judge reasons)."""

    emails: bool = Field(True, description="mask e-mail addresses")
    phones: bool = Field(True, description="mask phone numbers (7+ digits, with optional +, spaces, dots, dashes)")
    patterns: list[Annotated[str, AfterValidator(_regex)]] = Field(
        default_factory=list, description="further regular expressions (Python syntax) whose matches are masked"
    )


def _redact_switch(value: Any) -> Any:
    """``redact: true`` = the default masks; ``false``/null = off; a mapping = settings."""
    if value is True:
        return {}
    return None if value is False else value


class MLflowSettings(_Strict):
    tracking_uri: TrackingUri | None = Field(None, description="unset = sqlite file in storage_dir")
    wait_s: float = Field(
        0.0,
        ge=0,
        le=3600,
        description="seconds to wait for a tracking server that is still "
        "starting (refused connections, HTTP 5xx) before the search gives up; 0 = ask once",
    )
    experiment: ExperimentName = "ragsweep"
    model_name: ModelName = Field("ragsweep-rag", description="registered model name; winner gets alias 'champion'")
    trace_sample_rate: float = Field(
        1.0, ge=0, le=1, description="fraction of questions traced (the same questions in every trial); 0 = off"
    )
    redact: Annotated[RedactSettings | None, BeforeValidator(_redact_switch)] = Field(
        None, description="mask personal data in logged texts: true, or {emails, phones, patterns}; unset = off"
    )


class PromotionSettings(_Strict):
    """Gates the search's best trial must pass to become ``champion``; otherwise it is registered as
    ``challenger`` and the reason is logged."""

    min_objective: float | None = Field(None, description="floor on the winner's objective")
    min_metrics: dict[str, float] = Field(
        default_factory=dict, description="floors on quality metrics, e.g. {token_f1: 0.3, recall_at_k: 0.5}"
    )
    max_latency_p95_s: float | None = Field(None, gt=0, description="limit on the p95 seconds per question")
    compare_to_champion: bool = Field(
        True, description="require a paired bootstrap win over the current champion on the questions both answered"
    )
    confidence: float = Field(0.95, gt=0.5, lt=1, description="confidence level of the paired bootstrap interval")
    bootstrap_samples: int = Field(2000, ge=100, description="bootstrap resamples")

    @model_validator(mode="after")
    def _known(self) -> PromotionSettings:
        for name in self.min_metrics:
            if name not in OBJECTIVE_METRICS and not name.startswith(JUDGE_PREFIX):
                hint = difflib.get_close_matches(name, OBJECTIVE_METRICS, n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ValueError(f"min_metrics: unknown metric {name!r}{extra}")
        return self


class DatasetSettings(_Strict):
    corpus: ExistingPath = Field(
        description="corpus.jsonl, or a folder of documents (.txt, .md, .html, .pdf, "
        ".jsonl), parsed as `ragsweep ingest` does, once per content "
        "(storage_dir/ingest-cache)"
    )
    questions: ExistingFile
    name: str | None = None
    holdout: float = Field(
        0.25,
        ge=0,
        lt=1,
        description="fraction of the questions kept out of the search (seeded; answerable and "
        "unanswerable in proportion); the finalists answer them after the search to confirm the pick; 0 = off",
    )
    holdout_file: ExistingFile | None = Field(
        None,
        description="a separate held-out questions file (same layout as questions) instead of a split; "
        "its ids must not appear in questions",
    )

    @model_validator(mode="after")
    def _one_holdout(self) -> DatasetSettings:
        if self.holdout_file is not None and "holdout" in self.model_fields_set and self.holdout > 0:
            raise ValueError("set either holdout (a fraction split off questions) or holdout_file, not both")
        return self

    @property
    def holdout_on(self) -> bool:
        return self.holdout_file is not None or self.holdout > 0
