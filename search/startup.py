"""Checks before a search starts (nothing is written): the storage folder, index memory, the dataset and its
question plan, embedders, reranker and LLM endpoints, and the GPU fit. :func:`prepare` runs them in that order."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ragsweep.pipelines.data import Dataset, load_dataset
from ragsweep.pipelines.embedders.local import EmbedderError, check_model_folder, resolve_embedder_path
from ragsweep.search.config import ConfigError, ExperimentConfig
from ragsweep.search.confirm import QuestionPlan, plan_questions
from ragsweep.search.serving.cluster import (
    ray_target,
)
from ragsweep.search.serving.engines import preflight
from ragsweep.search.serving.gpu_fit import gpu_fit


def prepare(cfg: ExperimentConfig) -> tuple[Dataset, QuestionPlan]:
    """Checks that need no run: dataset validity (held-out file too) and model files. Raises before anything is
    written."""
    check_storage_dir(cfg.storage_dir)
    check_index_memory(cfg)  # before the corpus is read: a corpus too large to index may be too large to load
    dataset = load_dataset(cfg.dataset.corpus, cfg.dataset.questions, cfg.dataset.name or "")
    plan = plan_questions(cfg, dataset)
    check_embedders(cfg)
    if cfg.pipeline.reranker_model is not None:
        check_model_folder(cfg.pipeline.reranker_model, "pipeline.reranker_model")
    for where, endpoint in cfg.llm.servers():
        if not where.startswith("llm.generators.") or where.rsplit(".", 1)[1] in (cfg.space.generator or []):
            preflight(endpoint, cluster=ray_target(cfg) is not None, where=where)
    check_gpu_fit(cfg)
    return dataset, plan


def check_embedders(cfg: ExperimentConfig) -> None:
    """Every embedder the search may use is there: a local folder (checked at load too), or an endpoint that
    answers one request now (EmbedderError naming the config key and URL)."""
    from ragsweep.pipelines.embedders.http import EndpointEmbedder, make_embedder

    for name in cfg.space.embedder or [cfg.pipeline.embedder]:
        embedder = make_embedder(name, cfg.pipeline.endpoints())
        if isinstance(embedder, EndpointEmbedder):
            try:
                embedder.load()
            except EmbedderError as e:
                raise EmbedderError(f"pipeline.embedders.{name}: {e}") from None
        else:
            resolve_embedder_path(name)


def check_gpu_fit(cfg: ExperimentConfig) -> list[str]:
    """The GPU fit report (``serving.gpu_fit``); raises ConfigError with the numbers when a vLLM server cannot fit
    its share of a GPU, or Ray could pack servers onto one GPU beyond its memory."""
    lines, problems = gpu_fit(cfg)
    if problems:
        raise ConfigError("GPU fit: " + "; ".join(problems))
    return lines


def check_storage_dir(storage: Path) -> None:
    """storage_dir is a folder this process can write, or can be created (checked without creating it)."""
    existing = next(p for p in (storage, *storage.parents) if p.exists())
    if not existing.is_dir():
        raise ConfigError(f"storage_dir {storage}: {existing} is a file, not a folder")
    try:  # a real write (then removed): permissions, read-only mounts and root's exemptions all count
        fd, probe = tempfile.mkstemp(dir=existing, prefix=".ragsweep-write-check-")
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise ConfigError(f"storage_dir {storage}: cannot write in {existing} ({e.strerror})") from None


def check_index_memory(cfg: ExperimentConfig) -> None:
    """Refuse a search whose index builds would not fit in memory (``pipeline.index_memory_gb``, else 80% of this
    machine's RAM): the smallest chunk_size makes the most chunks, and up to ``max_concurrent_trials`` trials
    build different indexes at once."""
    from ragsweep.pipelines.index import build_memory_estimate, machine_memory_bytes
    from ragsweep.search.space import chunk_bounds

    size, overlap = chunk_bounds(cfg.space)
    chunks, per_build = build_memory_estimate(cfg.dataset.corpus.stat().st_size, size, overlap)
    builds = min(cfg.search.max_concurrent_trials, cfg.search.num_samples)
    limit_gb = cfg.pipeline.index_memory_gb
    limit = int(limit_gb * 2**30) if limit_gb is not None else int(0.8 * machine_memory_bytes())
    if per_build * builds > limit:
        where = f"pipeline.index_memory_gb = {limit_gb:g} GB" if limit_gb is not None else "80% of this machine's RAM"
        raise ConfigError(
            f"{cfg.dataset.corpus}: indexing it at chunk_size {size} (overlap {overlap}) makes about {chunks:,} "
            "chunks; "
            f"{builds} build(s) at once need about {per_build * builds / 2**30:.1f} GB, more than {where} "
            f"({limit / 2**30:.1f} GB). Raise the smallest chunk_size, lower search.max_concurrent_trials, or set "
            "pipeline.index_memory_gb if this machine has the memory"
        )
