"""Build a runnable :class:`RagPipeline` from a trial's params; shared by trials and the champion model."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragsweep.pipelines.data import Document
from ragsweep.pipelines.embedders.http import AnyEmbedder, index_embedder_key, make_embedder
from ragsweep.pipelines.embedders.local import Embedder
from ragsweep.pipelines.embedders.query_vectors import StoredQueries, query_vectors_file
from ragsweep.pipelines.graph import GenerationParams, RagPipeline
from ragsweep.pipelines.index import IndexArtifacts, IndexCache, IndexHandle, IndexSpec, open_index
from ragsweep.pipelines.llm_client.client import LLMClient
from ragsweep.pipelines.prompts import PromptTemplate, load_templates
from ragsweep.pipelines.rerank import RERANKERS
from ragsweep.pipelines.retrieve import RETRIEVERS, Fusion, Retriever
from ragsweep.search.config import ModelEndpoint, PipelineSettings, loggable
from ragsweep.search.space import INACTIVE_DEFAULTS, TrialParams


def trial_embedder(params: TrialParams, settings: PipelineSettings, cache_root: Path | None = None) -> AnyEmbedder:
    """The trial's embedder (not loaded): its ``embedder`` param, else the search's ``pipeline.embedder``."""
    return make_embedder(
        params.embedder or settings.embedder,
        settings.endpoints(),
        settings.embed_batch_size,
        settings.embed_backend,
        cache_root / "onnx" if cache_root else None,
    )


def index_spec(params: TrialParams, settings: PipelineSettings, corpus_digest: str) -> IndexSpec:
    return IndexSpec(
        corpus_digest,
        params.chunk_size,
        params.chunk_overlap,
        index_embedder_key(trial_embedder(params, settings)),
        params.chunker,
    )


def prompt_for(params: TrialParams, settings: PipelineSettings) -> PromptTemplate:
    return load_templates(settings.prompts_file)[params.prompt]


def pipeline_spec(
    params: TrialParams, settings: PipelineSettings, generator: ModelEndpoint, seed: int, prompt: PromptTemplate
) -> dict[str, Any]:
    """Everything needed to rebuild a trial's pipeline (its config.json, and the champion's config)."""
    return {
        "params": params.model_dump(),
        "pipeline": settings.model_dump(mode="json"),
        "generator": loggable(generator),
        "seed": seed,
        "prompt": {"name": prompt.name, "version": prompt.version, "system": prompt.system, "user": prompt.user},
    }


@dataclass
class Assembled:
    pipeline: RagPipeline
    index: IndexArtifacts
    prompt: PromptTemplate
    timings: dict[str, float]  # seconds: embedder_load_s, index_s (build or read), qdrant_load_s (open in the store)


@dataclass
class RetrievalParts:
    """What retrieval needs of a configuration, with no LLM: its loaded embedder, index (opened) and reranker."""

    embedder: AnyEmbedder | StoredQueries  # StoredQueries when the retriever embeds queries
    index: IndexArtifacts
    handle: IndexHandle
    reranker: Any  # CrossEncoderReranker or None
    timings: dict[str, float]  # seconds: embedder_load_s, index_s (build or read), qdrant_load_s (open in the store)


def open_retrieval(
    params: TrialParams,
    settings: PipelineSettings,
    corpus: dict[str, Document],
    corpus_digest: str,
    cache: IndexCache,
    index: IndexArtifacts | None = None,
) -> RetrievalParts:
    """The embedder, the index (from the cache, or ``index`` when the caller has it built) opened in the vector
    store, and the reranker. Importing and loading sentence-transformers is the largest start-up cost of a trial
    process, so the embedder is loaded only when something needs it: a retriever that embeds queries gets the
    search's stored query vectors (:mod:`.query_vectors`, written by the retrieval screen) and loads the model now
    (once per process, so its cost is not hidden in the first query) only when none are stored; a sparse-only
    retriever over a cached index never loads it; a build loads it."""
    t0 = time.perf_counter()
    raw = trial_embedder(params, settings, cache.root)
    embedder: AnyEmbedder | StoredQueries = raw
    if RETRIEVERS.entry(params.retriever).info["dense"]:
        embedder = StoredQueries(raw, query_vectors_file(cache.root, raw))
        if not embedder.stored:
            embedder.load()
    t1 = time.perf_counter()
    spec = index_spec(params, settings, corpus_digest)
    if index is not None and index.key != spec.key:
        raise ValueError(f"the given index {index.folder} has key {index.key}; this pipeline needs {spec.key}")
    encode = None
    if settings.index_build == "ray" and isinstance(raw, Embedder):  # an endpoint is already shared
        from ragsweep.pipelines.embedders.ray_data import RayEncoder

        encode = RayEncoder(
            raw.spec, settings.embed_batch_size, settings.index_gpus, settings.embed_backend, cache.root / "onnx"
        )
    art = index if index is not None else cache.get_or_build(spec, corpus, raw, encode)
    t2 = time.perf_counter()
    handle = open_index(art, url=settings.qdrant_url, store=settings.vector_store, hnsw_ef=settings.hnsw_ef)
    timings = {"embedder_load_s": t1 - t0, "index_s": t2 - t1, "qdrant_load_s": time.perf_counter() - t2}
    kind = RERANKERS.get(params.reranker)
    reranker = None
    if kind is not None:
        assert settings.reranker_model is not None  # enforced by the config
        reranker = kind(settings.reranker_model)
    return RetrievalParts(embedder, art, handle, reranker, timings)


def make_retriever(parts: RetrievalParts, params: TrialParams, embedder: Any = None) -> Retriever:
    """The configuration's retriever and fusion over ``parts`` (``embedder`` replaces the parts' own)."""
    fusion = Fusion(
        INACTIVE_DEFAULTS["hybrid_weight"] if params.hybrid_weight is None else params.hybrid_weight,
        INACTIVE_DEFAULTS["rrf_k"] if params.rrf_k is None else params.rrf_k,
    )
    return Retriever(parts.handle, embedder or parts.embedder, params.retriever, fusion)


def build_pipeline(
    params: TrialParams,
    settings: PipelineSettings,
    corpus: dict[str, Document],
    corpus_digest: str,
    cache: IndexCache,
    generator: LLMClient,
    seed: int = 0,
    prompt: PromptTemplate | None = None,
    index: IndexArtifacts | None = None,
    max_tokens: int | None = None,
) -> Assembled:
    """Index (from the cache, or ``index`` when the caller has it built), retriever, optional reranker and
    generator; ``prompt`` overrides the named one, ``max_tokens`` (the generator's own) ``pipeline.max_tokens``."""
    parts = open_retrieval(params, settings, corpus, corpus_digest, cache, index)
    prompt = prompt or prompt_for(params, settings)
    # rerank_candidates is sampled only with a reranker; without one GenerationParams' default is unused.
    extra = {"rerank_candidates": params.rerank_candidates} if params.rerank_candidates else {}
    gen = GenerationParams(
        top_k=params.top_k,
        temperature=params.temperature,
        max_tokens=max_tokens or settings.max_tokens,
        seed=seed,
        query_transform=params.query_transform,
        context_order=params.context_order,
        context_budget=params.context_budget,
        multi_query_n=settings.multi_query_n,
        **extra,
    )
    pipeline = RagPipeline(make_retriever(parts, params), generator, prompt, gen, parts.reranker)
    return Assembled(pipeline, parts.index, prompt, parts.timings)
