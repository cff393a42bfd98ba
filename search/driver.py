"""The search driver: validate, start servers, run Ray Tune + Optuna, record in MLflow, promote the winner.

Contract: :func:`run_search` validates the dataset and model files before anything is created; then it opens
one MLflow parent run and always closes it: FINISHED on success, FAILED with the reason on any error
(unreachable endpoint, all trials failed, ...), KILLED on Ctrl-C. Servers it started are stopped in every
case, and trial runs left RUNNING are closed.
"""

from __future__ import annotations

import json
import logging
import math
import os
import signal
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ragsweep.judges.intervals import paired_difference
from ragsweep.pipelines.data import Dataset, load_dataset
from ragsweep.pipelines.embed import EmbedderError, check_model_folder, resolve_embedder_path
from ragsweep.pipelines.llm import USAGE, merge_intervals
from ragsweep.pipelines.prompts import load_templates
from ragsweep.pipelines.secrets import SECRETS
from ragsweep.search.assemble import prompt_for
from ragsweep.search.config import ConfigError, ExperimentConfig, loggable
from ragsweep.search.confirm import HOLDOUT, Confirmed, Job, QuestionPlan, confirm_all, plan_questions
from ragsweep.search.console import TrialTable, add_log_file, logger, remove_handler, varying_keys
from ragsweep.search.promotion.champion import CHAMPION, register_version
from ragsweep.search.promotion.registry import TAG_SEARCH, HoldoutRefs, current_champion, decide, record
from ragsweep.search.promotion.selection import Evidence, TrialRecord, choose, finalists, pareto_front, select
from ragsweep.search.report import Summary, write_report
from ragsweep.search.resume import TAG_RAY_DIR, find_resumable, ray_dir_for
from ragsweep.search.schedulers import PER_QUESTION, build_scheduler
from ragsweep.search.screen.oracle import Headroom, Pair, headroom, oracle_answers
from ragsweep.search.screen.screening import Staging, stage
from ragsweep.search.searcher import BaselineMatcher, LLMCallBudget, baseline, build_searcher, n_trials
from ragsweep.search.serving.cluster import (
    check_cluster,
    driver_node_ip,
    for_other_nodes,
    ray_target,
    ray_target_source,
    retries,
    tune_root,
)
from ragsweep.search.serving.engines import preflight
from ragsweep.search.serving.gpu_fit import gpu_fit
from ragsweep.search.serving.servers import Endpoints, serve
from ragsweep.search.space import STAGED, TrialParams
from ragsweep.search.tracking.prompts import alias_champion_prompt, register_templates
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.tracking.runs import (
    TAG_KIND,
    TAG_STATUS,
    TrackingLost,
    check_tracking,
    close_children,
    default_tracking_uri,
    ensure_experiment,
    flatten,
    git_commit,
    hide_credentials,
    require_store,
)
from ragsweep.search.tracking.tracker import PARENT_TAG, TAG_FAILURE, RunRef, Tracker

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


TAG_RESUMED = "ragsweep.resumed"  # times a search run was resumed
TAG_CHAMPION_OF = "ragsweep.champion_version"  # on a champion_holdout run: the version whose configuration it ran


class SearchError(RuntimeError):
    """The search ran but produced no usable result (e.g. every trial failed)."""


@dataclass(kw_only=True)
class SearchOutcome:
    tracking_uri: str
    experiment_id: str
    parent_run_id: str
    best_trial_run_id: str | None  # None when no trial met the promotion rule (objective.max_cost)
    best_params: dict[str, Any]
    best_objective: float
    model_name: str
    model_version: str | None
    alias: str | None  # what the gates gave model_version: champion or challenger
    n_trials: int
    n_failed: int
    timings: dict[str, float] = field(default_factory=dict)
    trials: list[dict[str, Any]] = field(default_factory=list)  # trials that answered every question
    usage: dict[str, float] = field(default_factory=dict)  # LLM usage totals and server busy time (parent run)
    last_results: list[dict[str, Any]] = field(default_factory=list)  # every trial that did not error, stopped too
    records: list[TrialRecord] = field(default_factory=list)  # every trial that reported, as in the report
    summary: list[str] = field(default_factory=list)  # the console summary lines


_log = logger("search")


def say(msg: str) -> None:
    _log.info(msg)


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
    from ragsweep.pipelines.embed_http import EndpointEmbedder, make_embedder

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


def run_search(
    cfg: ExperimentConfig, config_path: Path | None = None, *, resume: bool = False, verbose: int = 0
) -> SearchOutcome:
    """Run a search; with ``resume``, continue the newest unfinished search of ``cfg.mlflow.experiment``.

    ``verbose`` > 0 adds Ray Tune's own progress output to ragsweep's trial table."""
    t_total = time.perf_counter()
    SECRETS.add(*cfg.secret_values())
    dataset, plan = prepare(cfg)
    storage = cfg.storage_dir
    uri = cfg.mlflow.tracking_uri or default_tracking_uri(storage)
    check_cluster(cfg, uri)  # joining a cluster with a tracking store other nodes cannot reach: config error
    # an unreachable server fails here, before any run, server or trial (or folder)
    check_tracking(uri, wait_s=cfg.mlflow.wait_s)
    hide_credentials(uri)
    if resume:
        require_store(uri)  # nothing to resume: say so without creating an empty store
    storage.mkdir(parents=True, exist_ok=True)
    say(f"MLflow tracking store: {uri}")
    say(f"  view it with: mlflow ui --backend-store-uri {uri}")
    mlflow.set_tracking_uri(uri)
    client = MlflowClient(uri)
    found = find_resumable(client, cfg, uri) if resume else None  # raises before anything is written
    exp_id = ensure_experiment(uri, cfg.mlflow.experiment, storage)
    n_q = len(plan.search_ids)
    tracker = Tracker(uri, client)
    if found is not None:
        pid = found.run_id
        tracker.reopen(pid)
        old_tags = client.get_run(pid).data.tags
        resumes = int(old_tags.get(TAG_RESUMED, "0")) + 1
        tracker.tags(pid, {TAG_RESUMED: str(resumes)})
        if TAG_FAILURE in old_tags:
            client.delete_tag(pid, TAG_FAILURE)
        say(f"resuming search run {pid} (was {found.status}; resume #{resumes}) from {found.ray_dir}")
    else:
        pid = tracker.start(exp_id, f"search-{dataset.name}", {TAG_KIND: "search"})
        n = n_trials(cfg)
        capped = (
            f" (num_samples {cfg.search.num_samples} capped: the space has {n} configurations)"
            if n < cfg.search.num_samples
            else ""
        )
        say(f"search run {pid}: {n} trials x {n_q} questions of {dataset.name!r}{capped}")
        say(
            f"held-out confirmation: {len(plan.holdout_ids)} held-out questions for the best "
            f"{cfg.search.finalists} trials, the baseline and the champion; held out: {plan.source}"
            if plan.on
            else f"held-out confirmation: {plan.source}; the pick is judged on the search questions"
        )
    parent = RunRef(tracker, pid)
    ray_dir = found.ray_dir if found is not None else ray_dir_for(tune_root(cfg, storage), pid)
    log_file = add_log_file(storage / "logs" / f"search-{pid}.log")
    say(f"full log (every trial report): {log_file.baseFilename}")
    try:
        if found is None:
            _log_parent(parent, cfg, dataset, config_path)
            parent.params(
                {
                    "holdout.source": plan.source,
                    "holdout.n_questions": str(len(plan.holdout_ids)),
                    "search.n_questions": str(len(plan.search_ids)),
                }
            )
            parent.tags({TAG_RAY_DIR: ray_dir})
        outcome = _search(
            cfg, dataset, plan, uri, exp_id, parent, storage, ray_dir, restore=found is not None, verbose=verbose
        )
        outcome.timings["total_s"] = time.perf_counter() - t_total
        parent.metrics({f"time.{k}": v for k, v in outcome.timings.items()})
        tracker.end(pid, "FINISHED")
        return outcome
    except KeyboardInterrupt:
        _close_failed(tracker, exp_id, pid, "interrupted (Ctrl-C); continue with --resume", "KILLED", ray_dir)
        raise
    except BaseException as e:
        _close_failed(tracker, exp_id, pid, f"{type(e).__name__}: {e}", "FAILED", ray_dir)
        raise
    finally:
        remove_handler(log_file)


def _close_failed(tracker: Tracker, exp_id: str, pid: str, reason: str, status: str, ray_dir: str) -> None:
    """Close the parent and any open trial runs with ``reason``; if MLflow is gone, raise a
    `TrackingLost` that names the search's failure and what could not be recorded."""
    try:
        close_children(tracker.client, exp_id, pid)
        tracker.fail(pid, reason, status)
    except Exception as e:  # noqa: BLE001 - whatever MLflow raised, the search's own failure is what is reported
        raise TrackingLost(
            f"search {status.lower()}: {reason[:1500]}\nMLflow at {tracker.uri} also stopped answering "
            f"({type(e).__name__}: {str(e)[:300]}), so search run {pid} could not be marked {status} and its open "
            f"trial runs could not be closed; the outcome, report and champion were not logged. Ray Tune's results "
            f"are in {ray_dir}; run the search again with --resume once the server is back."
        ) from None


def _register_prompts(cfg: ExperimentConfig, parent: RunRef) -> dict[str, str]:
    """The searched templates in MLflow's prompt registry (a version per distinct text); logged on the parent."""
    templates = load_templates(cfg.pipeline.prompts_file)
    uris = register_templates(
        [templates[n] for n in cfg.space.prompt], cfg.mlflow.model_name, Redactor(cfg.mlflow.redact)
    )
    parent.params({f"prompt.{name}.uri": uri for name, uri in uris.items()})
    return uris


def _log_parent(parent: RunRef, cfg: ExperimentConfig, dataset: Dataset, config_path: Path | None) -> None:
    parent.params(flatten(loggable(cfg)))
    parent.params(
        {
            "dataset.digest": dataset.digest,
            "dataset.n_docs": str(len(dataset.corpus)),
            "dataset.n_questions": str(len(dataset.questions)),
        }
    )
    parent.tracker.dataset_inputs(parent.run_id, dataset, cfg.dataset.corpus, cfg.dataset.questions)
    tags = {"ragsweep.version": pkg_version("ragsweep"), "dataset.digest": dataset.digest}
    if config_path is not None:
        tags["ragsweep.config_file"] = str(config_path.resolve())
        commit = git_commit(config_path.resolve().parent)
        if commit:
            tags["git.commit"] = commit
        parent.text(config_path.read_text(encoding="utf-8"), f"config/{config_path.name}")
    parent.tags(tags)


def _search(
    cfg: ExperimentConfig,
    dataset: Dataset,
    plan: QuestionPlan,
    uri: str,
    exp_id: str,
    parent: RunRef,
    storage: Path,
    ray_dir: str,
    restore: bool,
    verbose: int = 0,
) -> SearchOutcome:
    pid = parent.run_id
    import ray
    from ray import tune

    from ragsweep.search.trial import SearchContext, run_trial

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    # MLflow settings (retries, timeouts) reach the trials; an implicit experiment or run never does: theirs are named.
    env = {
        **WORKER_ENV,
        **{
            k: v
            for k, v in os.environ.items()
            if k.startswith(("MLFLOW_", "RAY_AUTH"))
            and k not in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID")
        },
    }
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
    )
    timings["ray_init_s"] = time.perf_counter() - t0
    try:
        trial_cfg, trial_uri = cfg, uri
        if address is not None:
            trial_cfg, trial_uri, notes = for_other_nodes(cfg, uri, driver_node_ip())
            nodes = [n for n in ray.nodes() if n.get("Alive")]
            say(
                f"joined Ray cluster {address} ({ray_target_source(cfg)}): {len(nodes)} node(s), "
                f"{ray.cluster_resources().get('CPU', 0):g} CPUs; trials retried up to {retries(cfg)} time(s) if "
                "their node goes away"
            )
            for note in notes:
                say(note)
        staging = _stage(cfg, dataset, plan, parent, timings)
        candidates = staging.by_label if staging is not None else None
        t0 = time.perf_counter()
        # On a cluster (ray_address set) servers bind their node's IP so trials on other nodes reach them. The
        # random suffix keeps actor names unique if a dead driver's actors outlive it (resume).
        searched = {n: cfg.llm.generators[n] for n in cfg.space.generator or []}
        with serve(
            cfg.llm.generator,
            cfg.llm.judge,
            storage / "logs",
            seed=cfg.search.seed,
            ray_prefix=f"ragsweep-{pid[:8]}-{uuid.uuid4().hex[:6]}",
            public=address is not None,
            generators=searched,
        ) as endpoints:
            timings["server_start_s"] = time.perf_counter() - t0
            question_ids = plan.search_ids
            llm_cache = (storage / "llm-cache.sqlite").resolve() if cfg.llm.cache else None
            ctx = SearchContext(
                config=trial_cfg,
                dataset=dataset,
                question_ids=question_ids,
                endpoints=endpoints,
                tracking_uri=trial_uri,
                experiment_id=exp_id,
                parent_run_id=pid,
                index_cache_dir=cfg.index_cache,
                llm_cache_path=llm_cache,
                env=env,
                prompt_uris=_register_prompts(cfg, parent),
                held_out=plan.held_out,
                screen_ids=plan.screen_ids,
            )
            trainable = tune.with_resources(
                tune.with_parameters(run_trial, ctx=ctx), {"cpu": cfg.search.cpus_per_trial}
            )
            if not verbose:  # Tune's legacy output engine is silent at verbose=0; the new one still prints a banner
                os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
            if restore:
                # Finished trials stay finished; unfinished ones restart (their MLflow runs are reused, see
                # trial.py); the searcher and scheduler come back with their history.
                tuner = tune.Tuner.restore(ray_dir, trainable, resume_unfinished=True, resume_errored=False)
            else:
                tuner = tune.Tuner(
                    trainable,
                    # reuse_actors: a finished trial's worker process runs the next one, keeping imports and
                    # the loaded embedder (several seconds per trial on a small CPU machine).
                    tune_config=tune.TuneConfig(
                        search_alg=build_searcher(cfg, len(question_ids), candidates),
                        scheduler=build_scheduler(cfg, len(question_ids), BaselineMatcher(baseline(cfg))),
                        num_samples=n_trials(cfg, candidates),
                        max_concurrent_trials=cfg.search.max_concurrent_trials,
                        reuse_actors=True,
                        time_budget_s=cfg.search.time_budget_s,
                    ),
                    run_config=tune.RunConfig(
                        name=ray_dir.rsplit("/", 1)[1],
                        storage_path=ray_dir.rsplit("/", 1)[0],
                        # on a cluster a trial fails when its node goes away: retried, it reuses its MLflow run
                        failure_config=tune.FailureConfig(max_failures=retries(cfg)),
                        verbose=1 if verbose else 0,
                        callbacks=[TrialTable(varying_keys(cfg.space), n_trials(cfg, candidates), len(question_ids))],
                        stop=LLMCallBudget(cfg.search.max_llm_calls) if cfg.search.max_llm_calls else None,
                    ),
                )
            t0 = time.perf_counter()
            try:
                grid = _fit(tuner)
            finally:
                timings["trials_s"] = time.perf_counter() - t0
            try:
                found = _collect(cfg, grid, question_ids, pid, exp_id, uri, resumed=restore)
                t0 = time.perf_counter()
                confirmed = _confirm(cfg, ctx, found, plan, uri, exp_id, pid) if plan.on else None
                timings["confirm_s"] = time.perf_counter() - t0
                t0 = time.perf_counter()
                oracle = oracle_answers(
                    cfg, ctx, finalists(found.completed, cfg.search.finalists), plan.search_ids, say
                )
                timings["oracle_s"] = time.perf_counter() - t0
            finally:
                _log_servers(parent, endpoints)
        outcome = _finish(
            cfg,
            parent,
            grid,
            found,
            confirmed,
            plan,
            exp_id,
            timings,
            FreeEvidence(staging, oracle, endpoints.generator.model),
        )
    finally:
        if address is None:
            ray.shutdown()
    return outcome


def _stage(
    cfg: ExperimentConfig, dataset: Dataset, plan: QuestionPlan, parent: RunRef, timings: dict[str, float]
) -> Staging | None:
    """The retrieval screen of a two-stage search (logged on the parent run); None for a joint search."""
    if cfg.search.strategy != "two_stage":
        return None
    t0 = time.perf_counter()
    staging = stage(cfg, dataset, plan.screen_ids, baseline(cfg), cfg.index_cache)
    timings["screen_s"] = time.perf_counter() - t0
    if not staging.has_gold:
        say(
            "retrieval screen: no search question has retrieval gold (answer spans or gold_doc_ids), so retrieval "
            "cannot be ranked without answers; every key is searched jointly (search.strategy: joint)"
        )
        parent.tags({"ragsweep.screen": "no retrieval gold: joint search"})
        return None
    for line in staging.lines():
        say(line)
    parent.json(staging.as_json(), "screen/retrieval.json")
    parent.metrics(
        {
            "screen.n_configurations": float(len(staging.result.screened)),
            "screen.n_front": float(len(staging.front)),
            "screen.n_candidates": float(len(staging.candidates)),
            "screen.best_recall": staging.best_recall.recall,
        }
    )
    return staging


def _log_servers(parent: RunRef, endpoints: Endpoints) -> None:
    """Restart counts (metrics) and lifecycle events (servers.json) of the server actors, on the parent run."""
    from ragsweep.search.serving.actors import replica_statuses

    names = list(
        dict.fromkeys(
            endpoints.generator.actor_names
            + endpoints.judge.actor_names
            + tuple(n for ep in endpoints.generators.values() for n in ep.actor_names)
        )
    )
    try:
        statuses = replica_statuses(names)
    except Exception as e:  # noqa: BLE001 - a dead actor must not hide the search's own outcome
        say(f"could not read server status: {e}")
        return
    try:
        parent.metrics({f"server.{s['label']}.restarts": float(s["restarts"]) for s in statuses})
        parent.json({"servers": statuses}, "servers.json")
    except Exception as e:  # noqa: BLE001 - MLflow gone: the trials' own errors say more; the driver reports it
        say(f"could not log server restarts and events (servers.json) to MLflow: {type(e).__name__}: {e}")


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


def _records(grid: Any, n_questions: int) -> tuple[list[TrialRecord], list[str], list[dict[str, Any]]]:
    """Trials that reported (completed or stopped early), first errors of failed trials, and raw last results."""
    records, errors, last = [], [], []
    for r in grid:
        if r.error is not None:
            errors.append(str(r.error).strip().splitlines()[-1] if str(r.error).strip() else repr(r.error))
            continue
        m = r.metrics or {}
        if "mlflow_run_id" not in m:
            continue
        last.append(m)
        done = m.get("n_questions") == n_questions and math.isfinite(m.get("objective", math.nan))
        params = {k: v for k, v in dict(r.config).items() if v is not None and k != STAGED}
        records.append(
            TrialRecord(
                name=str(m.get("trial_id", r.path.rsplit("/", 1)[-1] if r.path else "")),
                run_id=m["mlflow_run_id"],
                params=params,
                status="completed" if done else "stopped_early",
                objective=float(m.get("objective", math.nan)),
                n_questions=int(m.get("n_questions", 0)),
                metrics=m,
            )
        )
    return records, errors, last


@dataclass
class Collected:
    """Tune's outcome, reconciled with MLflow: the trials that reported and the errors of the ones that failed."""

    records: list[TrialRecord]
    errors: list[str]
    last: list[dict[str, Any]]
    question_ids: tuple[str, ...]
    baseline: TrialRecord | None

    @property
    def completed(self) -> list[TrialRecord]:
        return [r for r in self.records if r.status == "completed"]


def _collect(
    cfg: ExperimentConfig, grid: Any, question_ids: tuple[str, ...], pid: str, exp_id: str, uri: str, resumed: bool
) -> Collected:
    """Read Tune's results and make every trial run agree with them (status, tags, FINISHED)."""
    client = MlflowClient(uri)
    records, errors, last = _records(grid, len(question_ids))
    if not any(r.status == "completed" for r in records):  # before any further MLflow call: if MLflow is what
        # failed, this names the trials' errors
        raise SearchError(f"no trial finished; first error: {errors[0] if errors else 'none reported'}")
    if resumed:
        _discard_orphans(client, exp_id, pid, {r.run_id for r in records})
    _reconcile(client, records)
    close_children(client, exp_id, pid)
    for r in records:
        r.name = client.get_run(r.run_id).info.run_name or r.name
    stopped = sum(r.status == "stopped_early" for r in records)
    if stopped:
        say(
            f"{stopped} trial(s) stopped early by the scheduler; only trials that answered all "
            f"{len(question_ids)} questions compete for champion"
        )
    return Collected(records, errors, last, question_ids, _mark_baseline(cfg, records, client))


def _champion_job(cfg: ExperimentConfig, client: MlflowClient, exp_id: str, pid: str) -> tuple[Job | None, str]:
    """A child run for the current champion's configuration on the held-out questions, or why there is none."""
    champ = current_champion(client, cfg.mlflow.model_name)
    if champ is None:
        return None, "no champion yet"
    try:
        params = mlflow.artifacts.load_dict(f"runs:/{champ.run_id}/config.json")["params"]
        tp = TrialParams.from_sampled(params)
        prompt_for(tp, cfg.pipeline)  # its template must exist in this search's templates
    except Exception as e:  # noqa: BLE001 - an older or foreign champion: say why it is not confirmed
        return None, f"champion v{champ.version}'s configuration cannot run here ({type(e).__name__}: {e})"
    run = client.create_run(
        exp_id,
        run_name=f"champion-v{champ.version}-holdout",
        tags={PARENT_TAG: pid, TAG_KIND: "champion_holdout", TAG_CHAMPION_OF: champ.version},
    )
    for k, v in flatten(tp.model_dump()).items():
        client.log_param(run.info.run_id, k, v)
    return Job(run.info.run_id, tp.model_dump()), f"champion v{champ.version}"


def _confirm(
    cfg: ExperimentConfig, ctx: Any, found: Collected, plan: QuestionPlan, uri: str, exp_id: str, pid: str
) -> Confirmed:
    """The finalists, the baseline and the champion's configuration answer the held-out questions."""
    client = MlflowClient(uri)
    picked = finalists(found.completed, cfg.search.finalists)
    if cfg.objective.cost is not None:  # the Pareto rule's pick is confirmed too, whatever its rank
        pick, _ = choose(found.completed, cfg.objective)
        if pick is not None and pick not in picked:
            picked.append(pick)
    jobs = [Job(t.run_id, t.params) for t in picked]
    base = found.baseline
    with_base = base is not None and base.status == "completed" and base not in picked
    if with_base and base is not None:
        jobs.append(Job(base.run_id, base.params))
    champ_job, champ_note = _champion_job(cfg, client, exp_id, pid)
    if champ_job is not None:
        jobs.append(champ_job)
    say(
        f"confirming {len(jobs)} configuration(s) on {len(plan.holdout_ids)} held-out questions: "
        f"{len(picked)} finalist(s)"
        + (", the baseline" if with_base else "")
        + (f", {champ_note}" if champ_job is not None else f" ({champ_note})")
    )
    racing = {t.run_id for t in picked} if cfg.search.race_batch else None
    done, errors, race = confirm_all(jobs, ctx, plan.holdout_ids, racing, retries=retries(cfg), say=say)
    for run_id, err in errors.items():
        say(f"held-out answers of run {run_id} failed: {err}")
    if champ_job is not None:
        client.set_terminated(champ_job.run_id, "FINISHED" if champ_job.run_id in done else "FAILED")
    for r in found.records:
        if r.run_id in done:
            r.metrics.update({f"{HOLDOUT}{k}": v for k, v in done[r.run_id].metrics.items()})
    return Confirmed(
        done=done,
        errors=errors,
        finalists=[t.run_id for t in picked],
        champion_run_id=champ_job.run_id if champ_job else None,
        champion_note=champ_note,
        race=race if racing else None,
    )


def _evidence(
    cfg: ExperimentConfig, found: Collected, confirmed: Confirmed | None, trials: list[TrialRecord]
) -> tuple[list[Evidence], dict[str, float], str]:
    """What finalists are compared on: held-out answers when confirmed, else the search's per-question objectives."""
    if confirmed is not None:
        out = []
        for t in trials:
            c = confirmed.done.get(t.run_id)
            if c is not None:
                out.append(
                    Evidence(
                        t,
                        c.scores,
                        c.metrics["objective"],
                        c.metrics["tokens_per_question"],
                        c.metrics["latency_p95_s"],
                    )
                )
        return out, cfg.objective.weights, "held-out"
    out = [
        Evidence(
            t,
            _search_scores(t, found.question_ids),
            t.objective,
            float(t.metrics.get("tokens_per_question", math.nan)),
            float(t.metrics.get("latency_p95_s", math.nan)),
        )
        for t in trials
    ]
    return out, {"objective": 1.0}, "search"


def _search_scores(t: TrialRecord, question_ids: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A trial's per-question objectives on the search questions it answered."""
    values = json.loads(t.metrics.get(PER_QUESTION) or "[]")
    return {q: {"objective": float(v)} for q, v in zip(question_ids, values, strict=False)}


@dataclass(frozen=True)
class FreeEvidence:
    """What the search learnt beside its trials: the retrieval screen and the oracle-retrieval ceilings."""

    staging: Staging | None
    oracle: dict[Pair, dict[str, float]]  # (generator, prompt) -> question id -> objective with the gold passage
    generator: str = ""  # the search's generator model, for the headroom sentence


def _finish(
    cfg: ExperimentConfig,
    parent: RunRef,
    grid: Any,
    found: Collected,
    confirmed: Confirmed | None,
    plan: QuestionPlan,
    exp_id: str,
    timings: dict[str, float],
    free: FreeEvidence,
) -> SearchOutcome:
    """Record outcomes, pick the winner by the selection rule, write the report, register the champion."""
    uri, pid = parent.tracker.uri, parent.run_id
    usage = _record_outcomes(parent, cfg, grid, found, confirmed)
    summary = _choose(cfg, found, confirmed, plan, _link(uri, exp_id, pid))
    summary.staging = free.staging
    summary.headroom = _headroom(cfg, found, summary.winner, free)
    summary.generator = free.generator
    summary.names = {r.run_id: r.name for r in found.records}
    if confirmed is not None and confirmed.race is not None:
        race = confirmed.race
        parent.metrics(
            {
                "race.questions_used": float(race.answered),
                "race.rounds": float(race.rounds),
                "race.dropped": float(len(race.dropped)),
            }
        )
    if summary.headroom is not None:
        h = summary.headroom
        parent.metrics(
            {
                "headroom.oracle_objective": h.oracle,
                "headroom.winner_objective": h.winner,
                "headroom.gap": h.gap.mean,
                "headroom.gap_ci_low": h.gap.low,
                "headroom.gap_ci_high": h.gap.high,
                "headroom.best_recall": h.best_recall,
            }
        )
    t0 = time.perf_counter()
    lines = _report(parent, cfg, found.records, summary)
    timings["report_s"] = time.perf_counter() - t0
    winner, version, alias = summary.winner, None, None
    parent.tags({"ragsweep.promotion": summary.reason})
    if winner is not None:
        t0 = time.perf_counter()
        version, alias, line = _promote(parent, cfg, winner, summary.reason, confirmed)
        lines.append(line)
        timings["promote_s"] = time.perf_counter() - t0
    for line in lines:
        say(line)
    if version is not None:
        say(f"registered {cfg.mlflow.model_name} version {version} as @{alias}")
    trials = sorted(
        (
            {"params": r.params, "objective": r.objective, "run_id": r.run_id, "metrics": r.metrics}
            for r in found.completed
        ),
        key=lambda t: float(t["objective"]),  # type: ignore[arg-type]
        reverse=True,
    )
    return SearchOutcome(
        tracking_uri=uri,
        experiment_id=exp_id,
        parent_run_id=pid,
        best_trial_run_id=winner.run_id if winner else None,
        best_params=winner.params if winner else {},
        best_objective=winner.objective if winner else math.nan,
        model_name=cfg.mlflow.model_name,
        model_version=version,
        alias=alias,
        n_trials=len(grid),
        n_failed=len(found.errors),
        timings=timings,
        trials=trials,
        usage=usage,
        last_results=found.last,
        records=found.records,
        summary=lines,
    )


def _headroom(
    cfg: ExperimentConfig, found: Collected, winner: TrialRecord | None, free: FreeEvidence
) -> Headroom | None:
    """The winner against the oracle ceiling of its generator and prompt, and against the best retrieval found."""
    if winner is None:
        return None
    oracle = free.oracle.get((winner.params.get("generator"), str(winner.params.get("prompt"))))
    if not oracle:
        return None
    if free.staging is not None:
        best = free.staging.best_recall
        best_recall, best_label = best.recall, best.label
    else:  # joint search: the best retrieval among the trials, each measured on every search question
        scored = [r for r in found.records if math.isfinite(float(r.metrics.get("retrieval.recall_at_k", math.nan)))]
        if not scored:
            return None
        top = max(scored, key=lambda r: float(r.metrics["retrieval.recall_at_k"]))
        best_recall, best_label = float(top.metrics["retrieval.recall_at_k"]), f"trial {top.name}"
    s = cfg.search
    mine = {q: {"objective": v["objective"]} for q, v in _search_scores(winner, found.question_ids).items()}
    return headroom(
        {q: {"objective": v} for q, v in oracle.items()},
        mine,
        {"objective": 1.0},
        float(winner.metrics.get("retrieval.recall_at_k", math.nan)),
        best_recall,
        best_label,
        s.confidence,
        s.bootstrap_samples,
        s.seed,
    )


def _record_outcomes(
    parent: RunRef, cfg: ExperimentConfig, grid: Any, found: Collected, confirmed: Confirmed | None
) -> dict[str, float]:
    """Trial counts and search-wide LLM usage on the parent run; returns the usage totals."""
    stopped = [r for r in found.records if r.status == "stopped_early"]
    usage = _usage_totals(grid, cfg)
    if confirmed is not None:
        usage.update(_confirm_usage(confirmed))
    parent.metrics(
        {
            "n_trials": float(len(grid)),
            "n_failed_trials": float(len(found.errors)),
            "n_stopped_early": float(len(stopped)),
            **usage,
        }
    )
    if found.errors:
        say(f"{len(found.errors)} trial(s) failed; first error: {found.errors[0]}")
    return usage


def _choose(
    cfg: ExperimentConfig, found: Collected, confirmed: Confirmed | None, plan: QuestionPlan, link: str
) -> Summary:
    """The winner (selection rule on the finalists' evidence, or the Pareto rule with a cost objective) and its
    margin over the baseline, as the report's summary."""
    s, completed, base = cfg.search, found.completed, found.baseline
    picked = [r for r in found.records if confirmed is not None and r.run_id in confirmed.finalists] or finalists(
        completed, s.finalists
    )
    if confirmed is not None and confirmed.race is not None:  # a finalist the race dropped is out of the pick
        picked = [r for r in picked if r.run_id not in confirmed.race.dropped] or picked
    evidence, weights, on = _evidence(cfg, found, confirmed, picked)
    selection = None
    if cfg.objective.cost is not None:
        winner, reason = choose(completed, cfg.objective)
    elif evidence:
        selection = select(evidence, weights, s.selection, s.confidence, s.bootstrap_samples, s.seed, on, s.min_saving)
        winner, reason = selection.pick, selection.reason
    else:  # no finalist could answer the held-out questions: fall back to the search questions, and say so
        evidence, weights, on = _evidence(cfg, found, None, picked)
        selection = select(evidence, weights, s.selection, s.confidence, s.bootstrap_samples, s.seed, on, s.min_saving)
        winner, reason = selection.pick, selection.reason + " (no held-out answers: every confirmation failed)"
    margin = None
    if winner is not None and base is not None and base.status == "completed" and winner.run_id != base.run_id:
        both, mw, margin_on = _evidence(cfg, found, confirmed, [winner, base])
        if len(both) < 2:  # the baseline's confirmation failed: compare on the search questions
            both, mw, margin_on = _evidence(cfg, found, None, [winner, base])
        margin = (
            paired_difference(both[0].scores, both[1].scores, mw, s.confidence, s.bootstrap_samples, s.seed),
            margin_on,
        )
    front = pareto_front(completed, cfg.objective.cost) if cfg.objective.cost else []
    return Summary(
        winner=winner,
        reason=reason,
        baseline=base,
        front=front,
        tracking_link=link,
        finalists=evidence,
        selection=selection,
        evidence_on=on,
        margin=margin,
        holdout=plan,
        confirmed=confirmed,
    )


def _report(parent: RunRef, cfg: ExperimentConfig, records: list[TrialRecord], summary: Summary) -> list[str]:
    """Write the report into the parent run's ``report/`` folder; return the console summary lines."""
    with tempfile.TemporaryDirectory() as d:
        lines = write_report(records, summary, cfg, Path(d))
        parent.artifacts(Path(d), "report")
        imp = json.loads((Path(d) / "importances.json").read_text())
    parent.metrics({f"importance.{k}": v for k, v in imp.items()})
    _log_selection(parent, summary)
    if summary.front:
        parent.json(
            {
                "cost": cfg.objective.cost,
                "front": [
                    {
                        "run_id": t.run_id,
                        "trial": t.name,
                        "objective": t.objective,
                        "cost": t.metrics.get(cfg.objective.cost or ""),
                        "params": t.params,
                    }
                    for t in summary.front
                ],
            },
            "report/pareto_front.json",
        )
    return lines


def _promote(
    parent: RunRef, cfg: ExperimentConfig, winner: TrialRecord, reason: str, confirmed: Confirmed | None
) -> tuple[str, str, str]:
    """Register the winner as a model version, let the gates decide its alias; (version, alias, console line)."""
    client, pid = parent.tracker.client, parent.run_id
    decision, previous = decide(
        client,
        cfg.promotion,
        cfg.objective.weights,
        winner.run_id,
        winner.name,
        cfg.mlflow.model_name,
        holdout=_holdout_refs(confirmed, winner),
    )
    version = register_version(
        winner.run_id,
        _champion_spec(cfg, winner.params),
        cfg.dataset.corpus,
        cfg.mlflow.model_name,
        {TAG_SEARCH: pid, "objective": f"{winner.objective:.6f}", "trial": winner.name, "promotion_rule": reason},
        index_folder=_index_folder(cfg, winner.params),
    )
    alias = record(client, cfg.mlflow.model_name, version, decision, previous, pid)
    parent.tags({"best_trial_run_id": winner.run_id})
    prompt_uri = client.get_run(winner.run_id).data.params.get("prompt.uri")
    if alias == CHAMPION:
        parent.tags({"champion_version": version})
        if prompt_uri:
            alias_champion_prompt(prompt_uri, CHAMPION)
            parent.tags({"champion_prompt": prompt_uri})
    parent.metrics({"best_objective": winner.objective})
    return version, alias, f"promotion: {'promoted' if alias == CHAMPION else 'not promoted'} — {decision.reason}"


def _holdout_refs(confirmed: Confirmed | None, winner: TrialRecord) -> HoldoutRefs | None:
    """Where the gates find held-out answers: the winner's and, if it was confirmed, the champion's."""
    if confirmed is None or winner.run_id not in confirmed.done:
        return None
    champ = confirmed.champion_run_id if confirmed.champion_run_id in confirmed.done else None
    return HoldoutRefs(winner.run_id, champ)


def _log_selection(parent: RunRef, summary: Summary) -> None:
    """The selection and the margin over the baseline, as parent-run metrics and tags (every number with its CI)."""
    if summary.selection is not None:
        parent.tags(
            {
                "ragsweep.selection.best_run_id": summary.selection.best.run_id,
                "ragsweep.selection.tied_run_ids": ",".join(summary.selection.tied),
                "ragsweep.selection.on": summary.evidence_on,
            }
        )
    if summary.margin is not None:
        d, on = summary.margin
        parent.metrics(
            {
                "margin_over_baseline": d.mean,
                "margin_over_baseline_ci_low": d.low,
                "margin_over_baseline_ci_high": d.high,
            }
        )  # non-finite ends are skipped
        parent.tags({"ragsweep.margin_over_baseline": d.verdict, "ragsweep.margin_over_baseline.on": on})
    w = summary.winner
    if w is not None and f"{HOLDOUT}objective" in w.metrics:
        parent.metrics({f"best_{k}": float(v) for k, v in w.metrics.items() if k.startswith(f"{HOLDOUT}objective")})


def _confirm_usage(confirmed: Confirmed) -> dict[str, float]:
    """LLM requests and tokens the held-out answers cost (they count in the search's spend)."""
    totals: dict[str, float] = {}
    for c in confirmed.done.values():
        for k, v in c.metrics.items():
            if k.startswith(USAGE) and isinstance(v, (int, float)):
                totals[f"total.{HOLDOUT}{k}"] = totals.get(f"total.{HOLDOUT}{k}", 0.0) + float(v)
    return totals


def _reconcile(client: MlflowClient, records: list[TrialRecord]) -> None:
    """Make each trial run agree with Tune: completed runs FINISHED and tagged completed (a failure tag a closer
    wrote for a worker Tune stopped or reused is removed); trials the scheduler stopped tagged stopped_early."""
    for r in records:
        run = client.get_run(r.run_id)
        if run.data.tags.get(TAG_STATUS) != r.status:
            client.set_tag(r.run_id, TAG_STATUS, r.status)
        if TAG_FAILURE in run.data.tags:
            client.delete_tag(r.run_id, TAG_FAILURE)
        if run.info.status != "FINISHED":
            client.set_terminated(r.run_id, "FINISHED")


def _discard_orphans(client: MlflowClient, exp_id: str, pid: str, reported: set[str]) -> None:
    """After a resume: delete child runs of trials Ray Tune no longer knows.

    Tune saves its state every few seconds; a trial the dead driver started after the last save is not
    restored (the searcher proposes a new one instead), so its MLflow run would be a duplicate. Failed trials
    keep their runs (Tune restores them as errored).
    """
    runs = client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{pid}'", max_results=10000)
    orphans = [r for r in runs if r.info.run_id not in reported and r.data.tags.get(TAG_STATUS) != "failed"]
    for r in orphans:
        client.delete_run(r.info.run_id)
    if orphans:
        client.set_tag(pid, "ragsweep.discarded_runs", ",".join(r.info.run_id for r in orphans)[:5000])
        say(
            f"discarded {len(orphans)} MLflow run(s) of trials the dead driver started after Ray Tune's last "
            "state save (other trials ran in their place)"
        )


def _mark_baseline(cfg: ExperimentConfig, records: list[TrialRecord], client: MlflowClient) -> TrialRecord | None:
    """The first trial run with the baseline params (tagged ``ragsweep.baseline``), if any."""
    matches = BaselineMatcher(baseline(cfg))
    for r in records:
        if matches(r.params):
            r.baseline = True
            client.set_tag(r.run_id, "ragsweep.baseline", "true")
            return r
    return None


def _link(uri: str, exp_id: str, pid: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{pid}"
    return f"mlflow ui --backend-store-uri {uri}   (experiment {exp_id}, parent run {pid})"


def _usage_totals(grid: Any, cfg: ExperimentConfig) -> dict[str, float]:
    """Search-wide LLM usage: sums of the trials' ``llm.*`` counters, and per server (``server.generator``,
    ``server.judge`` when separate, ``server.generators.<name>`` for each other searched generator) the busy time
    (union of its trials' request intervals) and GPU-seconds (busy time x GPUs of its replicas)."""
    servers = cfg.llm.servers()  # distinct settings: a generator equal to the judge shares its server

    def server_of(endpoint: Any) -> str:
        return next(where for where, ep in servers if ep == endpoint)

    totals: dict[str, float] = {}
    spans: dict[str, list[tuple[float, float]]] = {"llm.generator": []}
    if cfg.llm.judge is not None:
        spans[server_of(cfg.llm.judge)] = []
    for r in grid:
        generator = cfg.llm.generator_for((r.config or {}).get("generator"))
        for k, v in (r.metrics or {}).items():
            if k.startswith(USAGE) and isinstance(v, (int, float)):
                totals[f"total.{k}"] = totals.get(f"total.{k}", 0.0) + float(v)
            elif k in ("generator_intervals", "judge_intervals"):
                where = server_of(generator if k == "generator_intervals" else cfg.judge_endpoint)
                spans.setdefault(where, []).extend(tuple(x) for x in json.loads(v))
    for where, endpoint in servers:
        if where in spans:
            busy = sum(b - a for a, b in merge_intervals(spans[where]))
            name = where.removeprefix("llm.")
            totals[f"server.{name}.busy_s"] = busy
            totals[f"server.{name}.gpu_s"] = busy * endpoint.gpus_per_replica * endpoint.replicas
    return totals


def _index_folder(cfg: ExperimentConfig, params: dict[str, Any]) -> Path:
    """Where the search's index cache holds the index a trial with ``params`` used."""
    from ragsweep.pipelines.data import file_digest
    from ragsweep.search.assemble import index_spec
    from ragsweep.search.space import TrialParams

    spec = index_spec(TrialParams.from_sampled(params), cfg.pipeline, file_digest(cfg.dataset.corpus))
    return cfg.index_cache / spec.key


def _champion_spec(cfg: ExperimentConfig, params: dict[str, Any]) -> dict[str, Any]:
    from ragsweep.search.assemble import pipeline_spec, prompt_for
    from ragsweep.search.space import TrialParams

    tp = TrialParams.from_sampled(params)
    return pipeline_spec(
        tp, cfg.pipeline, cfg.llm.generator_for(tp.generator), cfg.search.seed, prompt_for(tp, cfg.pipeline)
    )
