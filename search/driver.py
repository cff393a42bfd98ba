"""The search driver: validate, start servers, run Ray Tune + Optuna, record in MLflow, promote the winner.

Contract: :func:`run_search` validates the dataset and model files before anything is created; then it opens
one MLflow parent run and always closes it: FINISHED on success, FAILED with the reason on any error
(unreachable endpoint, all trials failed, ...), KILLED on Ctrl-C. Servers it started are stopped in every
case, and trial runs left RUNNING are closed.
"""

from __future__ import annotations

import json
import math
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from pipelines.data import Dataset, load_dataset
from pipelines.llm import merge_intervals
from search.config import ExperimentConfig
from search.promote import CHAMPION, register_champion
from search.serving import Endpoints, preflight, serve
from search.tracking import (
    TAG_KIND,
    TAG_STATUS,
    close_children,
    default_tracking_uri,
    ensure_experiment,
    flatten,
    git_commit,
    log_params,
    mark_failed,
)

# Set for trial workers: no hub downloads, no tokenizer thread fan-out on small machines.
WORKER_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false",
              "RAY_TRAIN_ENABLE_V2_MIGRATION_WARNINGS": "0"}


class SearchError(RuntimeError):
    """The search ran but produced no usable result (e.g. every trial failed)."""


@dataclass
class SearchOutcome:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    best_trial_run_id: str
    best_params: dict[str, Any]
    best_objective: float
    model_name: str
    model_version: str
    n_trials: int
    n_failed: int
    timings: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)
    usage: dict[str, float] = field(default_factory=dict)  # LLM usage totals and server busy time (parent run)
    last_results: list[dict[str, Any]] = field(default_factory=list)  # every trial that did not error, stopped too


def say(msg: str) -> None:
    print(f"[ragsweep] {msg}", flush=True)


def prepare(cfg: ExperimentConfig) -> Dataset:
    """Checks that need no run: dataset validity and model files. Raises before anything is written."""
    dataset = load_dataset(cfg.dataset.corpus, cfg.dataset.questions, cfg.dataset.name or "")
    preflight(cfg.llm.generator)
    if cfg.llm.judge is not None:
        preflight(cfg.llm.judge)
    return dataset


def run_search(cfg: ExperimentConfig, config_path: Path | None = None) -> SearchOutcome:
    t_total = time.perf_counter()
    dataset = prepare(cfg)
    storage = cfg.storage_dir
    storage.mkdir(parents=True, exist_ok=True)
    uri = cfg.mlflow.tracking_uri or default_tracking_uri(storage)
    say(f"MLflow tracking store: {uri}")
    say(f"  view it with: mlflow ui --backend-store-uri {uri}")
    mlflow.set_tracking_uri(uri)
    exp_id = ensure_experiment(uri, cfg.mlflow.experiment, storage)
    client = MlflowClient(uri)
    n_q = len(dataset.ordered_questions(cfg.search.seed, cfg.search.questions_per_trial))
    parent = mlflow.start_run(experiment_id=exp_id, run_name=f"search-{dataset.name}", tags={TAG_KIND: "search"})
    pid = parent.info.run_id
    say(f"search run {pid}: {cfg.search.num_samples} trials x {n_q} questions of {dataset.name!r}")
    try:
        _log_parent(cfg, dataset, config_path)
        outcome = _search(cfg, dataset, uri, exp_id, pid, storage)
        outcome.timings["total_s"] = time.perf_counter() - t_total
        mlflow.log_metrics({f"time.{k}": v for k, v in outcome.timings.items()})
        mlflow.end_run("FINISHED")
        return outcome
    except KeyboardInterrupt:
        close_children(client, exp_id, pid)
        mlflow.end_run("KILLED")
        mark_failed(client, pid, "interrupted (Ctrl-C)", status="KILLED")
        raise
    except BaseException as e:
        close_children(client, exp_id, pid)
        mlflow.end_run("FAILED")
        mark_failed(client, pid, f"{type(e).__name__}: {e}")
        raise


def _log_parent(cfg: ExperimentConfig, dataset: Dataset, config_path: Path | None) -> None:
    log_params(flatten(cfg.model_dump(mode="json")))
    log_params({"dataset.digest": dataset.digest, "dataset.n_docs": str(len(dataset.corpus)),
                "dataset.n_questions": str(len(dataset.questions))})
    tags = {"ragsweep.version": pkg_version("ragsweep"), "dataset.digest": dataset.digest}
    if config_path is not None:
        tags["ragsweep.config_file"] = str(config_path.resolve())
        commit = git_commit(config_path.resolve().parent)
        if commit:
            tags["git.commit"] = commit
        mlflow.log_artifact(str(config_path), "config")
    mlflow.set_tags(tags)


def _search(cfg: ExperimentConfig, dataset: Dataset, uri: str, exp_id: str, pid: str, storage: Path) -> SearchOutcome:
    import ray
    from optuna.samplers import TPESampler
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search.optuna import OptunaSearch

    from search.space import define_by_run
    from search.trial import SearchContext, run_trial

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    env = {**WORKER_ENV, **{k: v for k, v in os.environ.items() if k.startswith(("MLFLOW_", "RAY_AUTH"))}}
    ray.init(address=cfg.search.ray_address, include_dashboard=False, ignore_reinit_error=True,
             runtime_env={"env_vars": env}, logging_level="WARNING")
    timings["ray_init_s"] = time.perf_counter() - t0
    try:
        t0 = time.perf_counter()
        # On a cluster (ray_address set) servers bind their node's IP so trials on other nodes reach them.
        with serve(cfg.llm.generator, cfg.llm.judge, storage / "logs", seed=cfg.search.seed,
                   ray_prefix=f"ragsweep-{pid[:12]}", public=cfg.search.ray_address is not None) as endpoints:
            timings["server_start_s"] = time.perf_counter() - t0
            question_ids = tuple(q.id for q in dataset.ordered_questions(cfg.search.seed,
                                                                          cfg.search.questions_per_trial))
            llm_cache = (storage / "llm-cache.sqlite").resolve() if cfg.llm.cache else None
            ctx = SearchContext(cfg, dataset, question_ids, endpoints, uri, exp_id, pid,
                                (storage / "index-cache").resolve(), llm_cache, env)
            searcher = OptunaSearch(space=define_by_run(cfg.space), metric="objective", mode="max",
                                    sampler=TPESampler(seed=cfg.search.seed), seed=cfg.search.seed)
            scheduler = None
            if cfg.search.scheduler == "asha":
                # Fidelity = questions answered: every trial answers the same questions in the same order,
                # so trials compared at a rung are compared on the same questions.
                scheduler = ASHAScheduler(time_attr="n_questions", metric="objective", mode="max",
                                          max_t=len(question_ids), grace_period=cfg.search.grace_questions,
                                          reduction_factor=cfg.search.reduction_factor)
            trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx),
                                            {"cpu": cfg.search.cpus_per_trial})
            tuner = tune.Tuner(
                trainable,
                # reuse_actors: a finished trial's worker process runs the next one, keeping imports and
                # the loaded embedder (several seconds per trial on a small CPU machine).
                tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler,
                                            num_samples=cfg.search.num_samples,
                                            max_concurrent_trials=cfg.search.max_concurrent_trials,
                                            reuse_actors=True),
                run_config=tune.RunConfig(name=f"search-{pid[:12]}", storage_path=str((storage / "ray").resolve()),
                                          failure_config=tune.FailureConfig(max_failures=0), verbose=1),
            )
            t0 = time.perf_counter()
            try:
                grid = _fit(tuner)
            finally:
                timings["trials_s"] = time.perf_counter() - t0
                _log_servers(endpoints)
        outcome = _promote(cfg, grid, len(question_ids), pid, exp_id, uri, timings)
    finally:
        if cfg.search.ray_address is None:
            ray.shutdown()
    return outcome


def _log_servers(endpoints: Endpoints) -> None:
    """Restart counts (metrics) and lifecycle events (servers.json) of the server actors, on the parent run."""
    from search.server_actor import replica_statuses

    names = list(dict.fromkeys(endpoints.generator.actor_names + endpoints.judge.actor_names))
    try:
        statuses = replica_statuses(names)
    except Exception as e:  # noqa: BLE001 - a dead actor must not hide the search's own outcome
        say(f"could not read server status: {e}")
        return
    mlflow.log_metrics({f"server.{s['label']}.restarts": float(s["restarts"]) for s in statuses})
    mlflow.log_dict({"servers": statuses}, "servers.json")


def _fit(tuner: Any) -> Any:
    """``tuner.fit()``, raising KeyboardInterrupt when Tune absorbed a Ctrl-C.

    On the first SIGINT Tune stops its trials gracefully, saves the experiment state, puts back the handler
    that was installed before ``fit`` and returns normally. So we install a handler of our own first: if it
    is back after ``fit``, the user pressed Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        return tuner.fit()

    def on_sigint(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        grid = tuner.fit()
        if signal.getsignal(signal.SIGINT) is on_sigint:
            raise KeyboardInterrupt
        return grid
    finally:
        signal.signal(signal.SIGINT, previous)


def _promote(cfg: ExperimentConfig, grid: Any, n_questions: int, pid: str, exp_id: str, uri: str,
             timings: dict[str, float]) -> SearchOutcome:
    """Rank trials that answered every question; register the best as champion."""
    trials, errors, stopped, last = [], [], [], []
    for r in grid:
        if r.error is not None:
            errors.append(str(r.error).strip().splitlines()[-1] if str(r.error).strip() else repr(r.error))
            continue
        m = r.metrics or {}
        last.append(m)
        if m.get("n_questions") == n_questions and math.isfinite(m.get("objective", math.nan)):
            trials.append({"params": dict(r.config), "objective": float(m["objective"]),
                           "run_id": m["mlflow_run_id"], "metrics": m})
        elif "mlflow_run_id" in m:
            stopped.append(m["mlflow_run_id"])
    _mark_stopped(MlflowClient(uri), stopped)
    close_children(MlflowClient(uri), exp_id, pid)
    if stopped:
        say(f"{len(stopped)} trial(s) stopped early by the scheduler; only trials that answered all "
            f"{n_questions} questions compete for champion")
    usage = _usage_totals(grid, cfg)
    mlflow.log_metrics({"n_trials": float(len(grid)), "n_failed_trials": float(len(errors)),
                        "n_stopped_early": float(len(stopped)), **usage})
    if not trials:
        raise SearchError(f"no trial finished; first error: {errors[0] if errors else 'none reported'}")
    if errors:
        say(f"{len(errors)} trial(s) failed; first error: {errors[0]}")
    trials.sort(key=lambda t: t["objective"], reverse=True)
    best = trials[0]
    t0 = time.perf_counter()
    run = MlflowClient(uri).get_run(best["run_id"])
    spec = _champion_spec(cfg, best["params"])
    version = register_champion(best["run_id"], spec, cfg.dataset.corpus, cfg.mlflow.model_name,
                                {"search_run_id": pid, "objective": f"{best['objective']:.6f}",
                                 "trial": run.info.run_name or ""})
    timings["promote_s"] = time.perf_counter() - t0
    mlflow.set_tags({"best_trial_run_id": best["run_id"], "champion_version": version})
    mlflow.log_metric("best_objective", best["objective"])
    say(f"best trial {run.info.run_name}: objective {best['objective']:.4f} with {best['params']}")
    say(f"registered {cfg.mlflow.model_name} version {version} as @{CHAMPION}")
    say(f"MLflow: mlflow ui --backend-store-uri {uri}   (parent run {pid})")
    return SearchOutcome(uri, exp_id, pid, best["run_id"], best["params"], best["objective"], cfg.mlflow.model_name,
                         version, len(grid), len(errors), timings, trials, usage, last)


def _mark_stopped(client: MlflowClient, run_ids: list[str]) -> None:
    """Trials the scheduler stopped: tag them and close their runs FINISHED (their partial metrics stay)."""
    for run_id in run_ids:
        client.set_tag(run_id, TAG_STATUS, "stopped_early")
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_terminated(run_id, "FINISHED")


def _usage_totals(grid: Any, cfg: ExperimentConfig) -> dict[str, float]:
    """Search-wide LLM usage: sums of the trials' ``generator_*`` / ``judge_*`` counters, and per server the busy
    time (union of all trials' request intervals) and GPU-seconds (busy time x GPUs of its replicas)."""
    totals: dict[str, float] = {}
    intervals: dict[str, list[tuple[float, float]]] = {"generator": [], "judge": []}
    for r in grid:
        for k, v in (r.metrics or {}).items():
            if k.startswith(("generator_", "judge_")) and not k.startswith("judge_correctness"):
                if isinstance(v, (int, float)):
                    totals[f"total.{k}"] = totals.get(f"total.{k}", 0.0) + float(v)
                elif k.endswith("_intervals"):
                    intervals[k.removesuffix("_intervals")] += [tuple(x) for x in json.loads(v)]
    shared = cfg.llm.judge is None or cfg.llm.judge == cfg.llm.generator
    servers = {"generator": (cfg.llm.generator, intervals["generator"] + (intervals["judge"] if shared else []))}
    if not shared:
        servers["judge"] = (cfg.judge_endpoint, intervals["judge"])
    for name, (endpoint, spans) in servers.items():
        busy = sum(b - a for a, b in merge_intervals(spans))
        totals[f"server.{name}.busy_s"] = busy
        totals[f"server.{name}.gpu_s"] = busy * endpoint.gpus_per_replica * endpoint.replicas
    return totals


def _champion_spec(cfg: ExperimentConfig, params: dict[str, Any]) -> dict[str, Any]:
    from search.assemble import pipeline_spec, prompt_for
    from search.space import TrialParams

    tp = TrialParams.from_sampled(params)
    return pipeline_spec(tp, cfg.pipeline, cfg.llm.generator, cfg.search.seed, prompt_for(tp, cfg.pipeline))
