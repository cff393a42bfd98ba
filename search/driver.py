"""The search driver: validate, start servers, run Ray Tune + Optuna, record in MLflow, promote the winner.

Contract: :func:`run_search` validates the dataset and model files before anything is created; then it opens
one MLflow parent run and always closes it: FINISHED on success, FAILED with the reason on any error
(unreachable endpoint, all trials failed, ...), KILLED on Ctrl-C. Servers it started are stopped in every
case, and trial runs left RUNNING are closed.
"""

from __future__ import annotations

import math
import os
import signal
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlflow.tracking import MlflowClient

from ragsweep.pipelines.base.secrets import SECRETS
from ragsweep.pipelines.data import Dataset
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.confirm import Confirmed, QuestionPlan
from ragsweep.search.console import TrialTable, add_log_file, remove_handler, varying_keys
from ragsweep.search.promotion.pick import (
    FreeEvidence,
    choose_winner,
    confirm_finalists,
    headroom_of,
    log_race_and_headroom,
    promote_winner,
    write_search_report,
)
from ragsweep.search.promotion.selection import TrialRecord, finalists
from ragsweep.search.schedulers import build_scheduler
from ragsweep.search.screen.oracle import Pair, oracle_answers
from ragsweep.search.screen.screening import screen_stage
from ragsweep.search.searcher import BaselineMatcher, LLMCallBudget, baseline, build_searcher, n_trials
from ragsweep.search.serving.cluster import (
    driver_node_ip,
    for_other_nodes,
    retries,
    tune_root,
)
from ragsweep.search.serving.servers import serve
from ragsweep.search.startup import prepare, start_ray, worker_env
from ragsweep.search.tracking.outcomes import (
    Collected,
    SearchOutcome,
    close_failed,
    collect_trials,
    log_parent,
    log_servers,
    record_outcomes,
    register_prompts,
    run_link,
    say,
)
from ragsweep.search.tracking.parent import new_parent, open_store, reopen_parent
from ragsweep.search.tracking.resume import TAG_RAY_DIR, find_resumable, ray_dir_for
from ragsweep.search.tracking.runs import (
    ensure_experiment,
)
from ragsweep.search.tracking.tracker import RunRef, Tracker

if TYPE_CHECKING:  # trial imports the whole pipeline stack: loaded when a search starts, not with the CLI
    from ragsweep.search.answering import SearchContext


def run_search(
    cfg: ExperimentConfig, config_path: Path | None = None, *, resume: bool = False, verbose: int = 0
) -> SearchOutcome:
    """Run a search; with ``resume``, continue the newest unfinished search of ``cfg.mlflow.experiment``.

    ``verbose`` > 0 adds Ray Tune's own progress output to ragsweep's trial table."""
    t_total = time.perf_counter()
    SECRETS.add(*cfg.secret_values())
    dataset, plan = prepare(cfg)
    storage = cfg.storage_dir
    uri = open_store(cfg, resume)
    client = MlflowClient(uri)
    found = find_resumable(client, cfg, uri) if resume else None  # raises before anything is written
    exp_id = ensure_experiment(uri, cfg.mlflow.experiment, storage)
    tracker = Tracker(uri, client)
    pid = reopen_parent(tracker, found) if found is not None else new_parent(tracker, cfg, dataset, plan, exp_id)
    parent = RunRef(tracker, pid)
    ray_dir = found.ray_dir if found is not None else ray_dir_for(tune_root(cfg, storage), pid)
    log_file = add_log_file(storage / "logs" / f"search-{pid}.log")
    say(f"full log (every trial report): {log_file.baseFilename}")
    try:
        if found is None:
            log_parent(parent, cfg, dataset, config_path)
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
        close_failed(tracker, exp_id, pid, "interrupted (Ctrl-C); continue with --resume", "KILLED", ray_dir)
        raise
    except BaseException as e:
        close_failed(tracker, exp_id, pid, f"{type(e).__name__}: {e}", "FAILED", ray_dir)
        raise
    finally:
        remove_handler(log_file)


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
    import ray

    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    env = worker_env()
    address = start_ray(cfg, env)
    timings["ray_init_s"] = time.perf_counter() - t0
    try:
        trial_cfg, trial_uri = cfg, uri
        if address is not None:
            trial_cfg, trial_uri, notes = for_other_nodes(cfg, uri, driver_node_ip())
            for note in notes:
                say(note)
        staging = screen_stage(cfg, dataset, plan.screen_ids, parent, timings, plan.holdout_ids)
        t0 = time.perf_counter()
        # On a cluster (ray_address set) servers bind their node's IP so trials on other nodes reach them. The
        # random suffix keeps actor names unique if a dead driver's actors outlive it (resume).
        with serve(
            cfg.llm.generator,
            cfg.llm.judge,
            storage / "logs",
            seed=cfg.search.seed,
            ray_prefix=f"ragsweep-{parent.run_id[:8]}-{uuid.uuid4().hex[:6]}",
            public=address is not None,
            generators={n: cfg.llm.generators[n] for n in cfg.space.generator or []},
        ) as endpoints:
            timings["server_start_s"] = time.perf_counter() - t0
            ctx = _context(cfg, trial_cfg, trial_uri, dataset, plan, endpoints, parent, exp_id, env)
            tuner = _tuner(cfg, ctx, ray_dir, restore, verbose, staging.by_label if staging is not None else None)
            try:
                grid, found, confirmed, oracle = _run_and_confirm(cfg, ctx, tuner, plan, parent, restore, timings)
            finally:
                log_servers(parent, endpoints)
        free = FreeEvidence(staging=staging, oracle=oracle, generator=endpoints.generator.model)
        return _finish(cfg, parent, grid, found, confirmed, plan, exp_id, timings, free)
    finally:
        if address is None:
            ray.shutdown()


def _context(
    cfg: ExperimentConfig,
    trial_cfg: ExperimentConfig,
    trial_uri: str,
    dataset: Dataset,
    plan: QuestionPlan,
    endpoints: Any,
    parent: RunRef,
    exp_id: str,
    env: dict[str, str],
) -> SearchContext:
    """What every trial gets (``trial_cfg``/``trial_uri``: as other nodes must see them on a cluster)."""
    from ragsweep.search.answering import SearchContext

    return SearchContext(
        config=trial_cfg,
        dataset=dataset,
        question_ids=plan.search_ids,
        endpoints=endpoints,
        tracking_uri=trial_uri,
        experiment_id=exp_id,
        parent_run_id=parent.run_id,
        index_cache_dir=cfg.index_cache,
        llm_cache_path=(cfg.storage_dir / "llm-cache.sqlite").resolve() if cfg.llm.cache else None,
        env=env,
        prompt_uris=register_prompts(cfg, parent),
        held_out=plan.held_out,
        screen_ids=plan.screen_ids,
    )


def _tuner(
    cfg: ExperimentConfig,
    ctx: SearchContext,
    ray_dir: str,
    restore: bool,
    verbose: int,
    candidates: dict[str, dict[str, Any]] | None,
) -> Any:
    """Ray Tune's Tuner over ``run_trial``: restored from ``ray_dir`` on a resume, else new with the searcher,
    scheduler, trial table and stop rule of ``cfg``."""
    from ray import tune

    from ragsweep.search.trial import run_trial

    n_questions = len(ctx.question_ids)
    trainable = tune.with_resources(tune.with_parameters(run_trial, ctx=ctx), {"cpu": cfg.search.cpus_per_trial})
    if not verbose:  # Tune's legacy output engine is silent at verbose=0; the new one still prints a banner
        os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    if restore:
        # Finished trials stay finished; unfinished ones restart (their MLflow runs are reused, see trial.py); the
        # searcher and scheduler come back with their history.
        return tune.Tuner.restore(ray_dir, trainable, resume_unfinished=True, resume_errored=False)
    return tune.Tuner(
        trainable,
        # reuse_actors: a finished trial's worker process runs the next one, keeping imports and the loaded
        # embedder (several seconds per trial on a small CPU machine).
        tune_config=tune.TuneConfig(
            search_alg=build_searcher(cfg, n_questions, candidates),
            scheduler=build_scheduler(cfg, n_questions, BaselineMatcher(baseline(cfg))),
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
            callbacks=[TrialTable(varying_keys(cfg.space), n_trials(cfg, candidates), n_questions)],
            stop=LLMCallBudget(cfg.search.max_llm_calls) if cfg.search.max_llm_calls else None,
        ),
    )


def _run_and_confirm(
    cfg: ExperimentConfig,
    ctx: SearchContext,
    tuner: Any,
    plan: QuestionPlan,
    parent: RunRef,
    restore: bool,
    timings: dict[str, float],
) -> tuple[Any, Collected, Confirmed | None, dict[Pair, dict[str, float]]]:
    """The trials, their results reconciled with MLflow, the finalists' held-out confirmation and the oracle
    answers (all while the servers are up)."""
    uri, exp_id, pid = parent.tracker.uri, ctx.experiment_id, parent.run_id
    t0 = time.perf_counter()
    try:
        grid = _fit(tuner)
    finally:
        timings["trials_s"] = time.perf_counter() - t0
    found = collect_trials(cfg, grid, plan.search_ids, pid, exp_id, uri, resumed=restore)
    t0 = time.perf_counter()
    confirmed = confirm_finalists(cfg, ctx, found, plan, uri, exp_id, pid) if plan.on else None
    timings["confirm_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    oracle = oracle_answers(cfg, ctx, finalists(found.completed, cfg.search.finalists), plan.search_ids, say)
    timings["oracle_s"] = time.perf_counter() - t0
    return grid, found, confirmed, oracle


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
    usage = record_outcomes(parent, cfg, grid, found, confirmed)
    summary = choose_winner(cfg, found, confirmed, plan, run_link(uri, exp_id, pid))
    summary.staging = free.staging
    summary.headroom = headroom_of(cfg, found, summary.winner, free)
    summary.generator = free.generator
    summary.names = {r.run_id: r.name for r in found.records}
    log_race_and_headroom(parent, confirmed, summary)
    t0 = time.perf_counter()
    lines = write_search_report(parent, cfg, found.records, summary)
    timings["report_s"] = time.perf_counter() - t0
    winner, version, alias = summary.winner, None, None
    parent.tags({"ragsweep.promotion": summary.reason})
    if winner is not None:
        t0 = time.perf_counter()
        version, alias, line = promote_winner(parent, cfg, winner, summary.reason, confirmed)
        lines.append(line)
        timings["promote_s"] = time.perf_counter() - t0
    for line in lines:
        say(line)
    if version is not None:
        say(f"registered {cfg.mlflow.model_name} version {version} as @{alias}")
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
        trials=_ranked(found.completed),
        usage=usage,
        last_results=found.last,
        records=found.records,
        summary=lines,
    )


def _ranked(completed: list[TrialRecord]) -> list[dict[str, Any]]:
    """The trials that answered every question, best objective first (SearchOutcome.trials)."""
    rows = [{"params": r.params, "objective": r.objective, "run_id": r.run_id, "metrics": r.metrics} for r in completed]
    return sorted(rows, key=lambda t: float(t["objective"]), reverse=True)
