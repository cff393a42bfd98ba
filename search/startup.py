"""A search's start: the checks before anything is written (the storage folder, index memory, the dataset and its
question plan, embedders, reranker and LLM endpoints, and the GPU fit; :func:`prepare` runs them in that order), then
Ray, started or joined with the environment its trial workers get (:func:`start_ray`, :func:`worker_env`)."""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

from ragsweep.pipelines.data import Dataset, load_dataset
from ragsweep.pipelines.embedders.local import EmbedderError, check_model_folder, resolve_embedder_path
from ragsweep.search.config import ConfigError, ExperimentConfig
from ragsweep.search.confirm import QuestionPlan, plan_questions
from ragsweep.search.console import logger
from ragsweep.search.serving.cluster import ray_target, ray_target_source, retries
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


# Set for trial workers: no hub downloads, no tokenizer thread fan-out on small machines.
# TUNE_FUNCTION_THREAD_TIMEOUT_S: a trial the scheduler stops still flushes its traces, logs their feedback and
# closes its run; Tune reuses the worker for the next trial only if that ends within this time (default 2 s).
WORKER_ENV = {
    "HF_HUB_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0",
    "TUNE_FUNCTION_THREAD_TIMEOUT_S": "120",
    # trials end MLflow runs: no "View run ... at: URL" line per trial on the user's console
    "MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT": "true",
}


# Credentials never go into Ray's runtime_env, which Ray's job and state APIs (the dashboard) show to anyone who can
# reach them. Trial workers inherit them from the environment their Ray node started in instead: a Ray of our own
# is started by this process, with its environment; a cluster's nodes have their own (the pods' Secret on
# Kubernetes, the environment of `ray start` elsewhere: docs/cluster.md).
CREDENTIAL_ENV = re.compile(r"USERNAME|PASSWORD|TOKEN|SECRET|CREDENTIAL|_KEY$", re.IGNORECASE)


def worker_env() -> dict[str, str]:
    """What trial workers get through runtime_env: WORKER_ENV and this process's MLflow and Ray-auth settings
    (retries, timeouts); never a credential (CREDENTIAL_ENV), nor an implicit experiment or run (theirs are named)."""
    implicit = ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
    inherited = {
        k: v
        for k, v in os.environ.items()
        if k.startswith(("MLFLOW_", "RAY_AUTH")) and k not in implicit and not CREDENTIAL_ENV.search(k)
    }
    return {**WORKER_ENV, **inherited}


def start_ray(cfg: ExperimentConfig, env: dict[str, str]) -> str | None:
    """Start (or join) Ray; returns the cluster address joined, None for a Ray of our own."""
    import ray

    # "local" starts a Ray of our own even when another search's local Ray is running on this machine (plain
    # ray.init() would join it and share its CPUs); a cluster is joined only when ray_address, RAY_ADDRESS or
    # RAGSWEEP_RAY_ADDRESS (cluster.yaml sets it on the head) says so.
    address = ray_target(cfg)
    ray.init(
        address=address or "local",
        include_dashboard=False,
        ignore_reinit_error=True,
        runtime_env={"env_vars": env},
        logging_level=logging.WARNING,
        # A Ray of our own starts no idle workers ahead of time: they would have the default runtime environment,
        # never ours (env above), so no task could use them (measured: two processes, ~1 CPU-s each, per search).
        _system_config=None if address else {"enable_worker_prestart": False, "prestart_worker_first_driver": False},
    )
    if address is not None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        logger("search").info(
            f"joined Ray cluster {address} ({ray_target_source(cfg)}): {len(nodes)} node(s), "
            f"{ray.cluster_resources().get('CPU', 0):g} CPUs; trials retried up to {retries(cfg)} time(s) if "
            "their node goes away"
        )
    return address
