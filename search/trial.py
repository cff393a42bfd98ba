"""One trial: build the pipeline for the sampled params, answer the questions in shards, score, record.

Contract: :func:`run_trial` is a Ray Tune function trainable (bound to a :class:`SearchContext` with
``tune.with_parameters``). After each shard it reports running means, ``n_questions`` and a finite
``objective`` to Tune. Every configured judge (``judges`` section) scores every answer, all judges' requests
of a shard in one batch. It records one MLflow child run of the search's parent run (params incl. judge prompt
versions, dataset inputs, metrics, answers.jsonl, answers_table.json, config.json, prompt.txt); everything is
logged before the final report, so a scheduler stopping the trial after that report loses nothing. An
exception ends the child run FAILED with the reason.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
import ray
from mlflow.tracking import MlflowClient
from ray import tune

from ragsweep.pipelines.base.secrets import SECRETS
from ragsweep.pipelines.llm_client.client import merge_intervals
from ragsweep.search.answering import (
    SearchContext,
    Session,
    answer_batch,
    interval_metrics,
    open_session,
    question_objectives,
    redacted,
    summarize,
)
from ragsweep.search.assemble import Assembled, pipeline_spec
from ragsweep.search.schedulers import PER_QUESTION
from ragsweep.search.space import TrialParams
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.tracking.runs import (
    TAG_KIND,
    TAG_STATUS,
    TAG_TRIAL_ID,
    TrackingLost,
    flatten,
    log_dataset_inputs,
    log_params,
    no_retries,
)
from ragsweep.search.tracking.traces import ModelInfo, TraceWriter
from ragsweep.search.tracking.tracker import PARENT_TAG, TAG_FAILURE, Tracker

TAG_RESTARTS = "ragsweep.restarts"  # times this trial restarted (a resume, or a retry after its node was lost)
TAG_NODE_ID = "ragsweep.ray_node_id"  # the Ray node the trial ran on (its last attempt)
TAG_NODE_IP = "ragsweep.ray_node_ip"


@dataclass
class Progress:
    all_answered: bool = False
    logging: str = ""  # what is being sent to MLflow right now ("" = nothing): named if the server is gone
    log_s: float = 0.0  # seconds spent in logging steps so far (metric mlflow_log_s)


@contextlib.contextmanager
def logging_step(progress: Progress, what: str) -> Iterator[None]:
    """Mark a call to MLflow; on an exception ``progress.logging`` keeps naming what was not logged."""
    progress.logging = what
    t0 = time.perf_counter()
    yield
    progress.log_s += time.perf_counter() - t0
    progress.logging = ""


def run_trial(sampled: dict[str, Any], ctx: SearchContext) -> None:
    os.environ.update(ctx.env)
    SECRETS.add(*ctx.config.secret_values())  # this worker process masks what the driver masks
    params = TrialParams.from_sampled(sampled)  # a bad value fails here, before any model work
    trial_name = tune.get_context().get_trial_name() or "local"
    mlflow.set_tracking_uri(ctx.tracking_uri)
    progress = Progress()
    try:
        _run_logged(params, ctx, trial_name, progress)
    except SystemExit:
        raise
    except BaseException as e:
        if progress.logging:  # MLflow's own retries ran out: say what is missing, not just the HTTP error
            raise TrackingLost(
                f"trial {trial_name}: could not log {progress.logging} to MLflow at {ctx.tracking_uri} after "
                f"retries ({type(e).__name__}: {str(e)[:300]}); what the trial reported is in Ray Tune's results "
                "folder"
            ) from e
        raise


def _run_logged(params: TrialParams, ctx: SearchContext, trial_name: str, progress: Progress) -> None:
    trial_id = tune.get_context().get_trial_id() or "local"
    with logging_step(progress, "the trial's MLflow run"):
        previous = _previous_run(ctx, trial_id)
        if previous is not None and previous.data.tags.get(TAG_STATUS) == "completed":
            # Resumed search: this trial completed before the driver died, after Tune's last state save. Report
            # its recorded result instead of answering again. The tag is set once every answer, metric and
            # artifact is logged, so a run the dead driver left open (killed before it was ended) is complete too.
            if previous.info.status != "FINISHED":
                Tracker(ctx.tracking_uri).end(previous.info.run_id)
            _replay(previous)
            return
        if previous is not None:  # a restart of an unfinished trial: same run, metrics overwritten step by step
            mlflow.start_run(run_id=previous.info.run_id)
            mlflow.set_tag(TAG_RESTARTS, str(int(previous.data.tags.get(TAG_RESTARTS, "0")) + 1))
        else:
            mlflow.start_run(
                experiment_id=ctx.experiment_id,
                run_name=trial_name,
                parent_run_id=ctx.parent_run_id,
                tags={TAG_KIND: "trial", TAG_TRIAL_ID: trial_id},
            )
        # where the trial ran (a retried trial overwrites these with its new node)
        mlflow.set_tags(
            {TAG_NODE_ID: ray.get_runtime_context().get_node_id(), TAG_NODE_IP: ray.util.get_node_ip_address()}
        )
    status = "FINISHED"
    try:
        _evaluate(params, ctx, progress)
    except SystemExit:
        # Tune stops a trial by raising SystemExit from tune.report: an outcome, not a failure. ASHA also stops a
        # trial that reached max_t, i.e. answered everything. The driver reconciles this too, from Tune's
        # results, in case the process goes first.
        with logging_step(progress, "the trial's status"):
            mlflow.set_tag(TAG_STATUS, "completed" if progress.all_answered else "stopped_early")
        raise
    except BaseException as e:
        status = "FAILED"
        if not progress.logging:  # MLflow still answers: record why the trial failed
            with logging_step(progress, "the trial's failure reason"):
                mlflow.set_tags({TAG_STATUS: "failed", TAG_FAILURE: SECRETS.mask(f"{type(e).__name__}: {e}")[:5000]})
        raise
    else:
        with logging_step(progress, "the trial's status"):
            mlflow.set_tag(TAG_STATUS, "completed")
    finally:
        if progress.logging:  # the server is gone: one quick attempt, then the run is closed in this process only
            with no_retries(), contextlib.suppress(Exception):
                mlflow.end_run("FAILED")
        else:
            with logging_step(progress, "the trial's end"):
                mlflow.end_run(status)


def _previous_run(ctx: SearchContext, trial_id: str) -> Any:
    """This trial's MLflow run from before a resume, if any (trial ids survive ``Tuner.restore``)."""
    runs = MlflowClient(ctx.tracking_uri).search_runs(
        [ctx.experiment_id],
        filter_string=f"tags.`{PARENT_TAG}` = '{ctx.parent_run_id}' and tags.`{TAG_TRIAL_ID}` = '{trial_id}'",
        max_results=1,
    )
    return runs[0] if runs else None


def _replay(run: Any) -> None:
    metrics = dict(run.data.metrics)
    tune.report(
        {
            **metrics,
            "generator_intervals": "[]",
            "judge_intervals": "[]",
            "replayed": 1.0,
            "index_key": run.data.params.get("index_key", ""),
            "mlflow_run_id": run.info.run_id,
        }
    )


def _evaluate(params: TrialParams, ctx: SearchContext, progress: Progress) -> None:
    """Answer, judge and record; the trial's traces are flushed (and their feedback logged) before it returns,
    including when Tune stops it."""
    opened: list[TraceWriter] = []  # the trial's trace writer, once _answer_all has created it
    try:
        _answer_all(params, ctx, progress, opened)
    except BaseException:
        for w in opened:
            if not progress.logging:  # when MLflow is gone there is nothing to flush to
                with contextlib.suppress(Exception):  # the trial's own error is the one to report
                    w.close()
        raise
    t0 = time.perf_counter()
    for w in opened:
        with logging_step(progress, f"{len(w.trace_ids)} traces and their judge feedback"):
            w.close()
    final = {"trace_flush_s": time.perf_counter() - t0, "n_traces": float(sum(len(w.trace_ids) for w in opened))}
    with logging_step(progress, "the trial's final timings"):
        # mlflow_log_s: every logging step but this one, trace export and feedback included.
        mlflow.log_metrics({**final, "mlflow_log_s": progress.log_s})


def _answer_all(params: TrialParams, ctx: SearchContext, progress: Progress, opened: list[TraceWriter]) -> None:
    """Open the session, record the trial's inputs, then answer the questions shard by shard, reporting each."""
    session = open_session(params, ctx)
    _log_inputs(params, ctx, session, progress)
    writer = _trace_writer(ctx, session)
    if writer is not None:
        opened.append(writer)
    by_id = {q.id: q for q in ctx.dataset.questions}
    questions = [by_id[i] for i in ctx.question_ids]
    shard = ctx.config.search.shard_size
    rows: list[dict[str, Any]] = []
    for lo in range(0, len(questions), shard):
        rows += answer_batch(session, questions[lo : lo + shard], ctx.config, writer)
        if writer is not None:
            writer.submit()
        _report(params, ctx, session, progress, rows, final=len(rows) == len(questions))


def _log_inputs(params: TrialParams, ctx: SearchContext, session: Session, progress: Progress) -> None:
    """The trial's params (with prompt and judge versions), dataset inputs and index metrics."""
    cfg, built = ctx.config, session.built
    registry = {"prompt.uri": ctx.prompt_uris[params.prompt]} if params.prompt in ctx.prompt_uris else {}
    with logging_step(progress, "the trial's params, dataset inputs and index metrics"):
        log_params(
            {
                **flatten(params.model_dump()),
                "index_key": built.index.key,
                "prompt_version": built.prompt.version,
                **registry,
                **{f"{j.name}.prompt_version": j.prompt_version for j in session.judges},
                **{f"{j.name}.higher_is_better": str(j.higher_is_better).lower() for j in session.judges},
                "dataset_digest": ctx.dataset.digest,
                **flatten(cfg.pipeline.model_dump(mode="json"), "pipeline."),
                "generator.model": ctx.endpoints.generator.model,
                "judge.model": ctx.endpoints.judge.model,
            }
        )
        log_dataset_inputs(ctx.dataset, cfg.dataset.corpus, cfg.dataset.questions, len(ctx.question_ids))
        mlflow.log_metrics(
            {
                "index_cache_hit": float(not built.index.built),
                "index_build_s": built.index.build_seconds,
                "index_chunks": float(len(built.index.chunks)),
            }
        )
    _log_retrieval(params, ctx, session, progress)


def _log_retrieval(params: TrialParams, ctx: SearchContext, session: Session, progress: Progress) -> None:
    """``retrieval.*`` on every search question, free of LLM calls (the screen's cached rows, else computed now)."""
    from ragsweep.search.screen.retrieval import summarize as summarize_retrieval
    from ragsweep.search.screen.screening import trial_retrieval

    pipe, s = session.built.pipeline, ctx.config.search
    scored = trial_retrieval(
        params, ctx.config, ctx.dataset, ctx.screen_ids, pipe.retriever, pipe.reranker, session.built.index.key
    )
    if scored is None:
        return
    metrics = summarize_retrieval(scored.rows, s.confidence, s.bootstrap_samples, s.seed)
    metrics["retrieval.cache_hit"] = float(not scored.computed)
    session.retrieval_metrics = {k: v for k, v in metrics.items() if math.isfinite(v)}
    with logging_step(progress, "the trial's retrieval metrics on every search question"):
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)})


def _trace_writer(ctx: SearchContext, session: Session) -> TraceWriter | None:
    """A writer of one trace per answered question, when ``mlflow.trace_sample_rate`` > 0."""
    cfg = ctx.config
    if cfg.mlflow.trace_sample_rate <= 0:
        return None
    gp, generator = session.built.pipeline.params, session.generator
    return TraceWriter(
        ctx.experiment_id,
        cfg.mlflow.trace_sample_rate,
        Redactor(cfg.mlflow.redact),
        ModelInfo(generator.model, generator.engine, gp.temperature, gp.max_tokens, gp.seed),
        session.judge_client.model,
        {j.name: j.prompt_version for j in session.judges},
        tune.get_context().get_trial_name() or "local",
    )


def _report(
    params: TrialParams,
    ctx: SearchContext,
    session: Session,
    progress: Progress,
    rows: list[dict[str, Any]],
    final: bool,
) -> None:
    """Running means, usage and stage times to MLflow and Ray Tune after a shard; artifacts and the completed
    tag after the last one."""
    cfg, generator, judge_client = ctx.config, session.generator, session.judge_client
    done = len(rows)
    metrics = summarize(session, rows, cfg)
    # Usage and stage times so far, in every report: a trial the scheduler stops still accounts for them.
    metrics.update(
        {
            **generator.stats.as_metrics("generator"),
            **judge_client.stats.as_metrics("judge"),
            **session.retrieval_metrics,
            **session.timings,
            "trial_s": time.perf_counter() - session.t_start,
            "mlflow_log_s": progress.log_s,
        }
    )
    # Request intervals let the driver compute the servers' busy time over the whole search; per-question
    # objectives let the paired scheduler and the driver compare trials question by question.
    report = {
        "generator_intervals": json.dumps(merge_intervals(generator.stats.intervals)),
        "judge_intervals": json.dumps(merge_intervals(judge_client.stats.intervals)),
        PER_QUESTION: json.dumps(question_objectives(rows, cfg.objective.weights)),
    }
    if final:
        metrics.update(
            {
                "prompt_tokens": float(sum(r["prompt_tokens"] for r in rows)),
                "completion_tokens": float(sum(r["completion_tokens"] for r in rows)),
                "llm.judge.tokens": float(sum(r["judge_tokens"] for r in rows)),
                **interval_metrics(rows, cfg),
            }
        )
        with logging_step(progress, f"answers.jsonl, answers_table.json, config.json and prompt.txt ({done} answers)"):
            _log_artifacts(rows, params, session.built, ctx)
        progress.all_answered = True
    with logging_step(progress, f"the metrics after {done} questions"):
        mlflow.log_metrics({k: v for k, v in metrics.items() if math.isfinite(v)}, step=done)
        if final:
            # Recorded before the last report: a scheduler that stops the trial on it (ASHA at max_t) or a
            # reused worker must not leave a trial that answered everything without its status.
            mlflow.set_tag(TAG_STATUS, "completed")
    run = mlflow.active_run()
    assert run is not None  # _run_logged opened the trial's run
    tune.report({**metrics, **report, "index_key": session.built.index.key, "mlflow_run_id": run.info.run_id})


def _log_artifacts(rows: list[dict[str, Any]], params: TrialParams, built: Assembled, ctx: SearchContext) -> None:
    redact = Redactor(ctx.config.mlflow.redact)
    rows = [redacted(r, redact) for r in rows]
    with tempfile.TemporaryDirectory() as d:
        folder = Path(d)
        with open(folder / "answers.jsonl", "w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        cfg = ctx.config
        spec = pipeline_spec(
            params, cfg.pipeline, cfg.llm.generator_for(params.generator), cfg.search.seed, built.prompt
        )
        (folder / "config.json").write_text(json.dumps({**spec, "index_key": built.index.key}, indent=2))
        (folder / "prompt.txt").write_text(redact(built.prompt.text))
        mlflow.log_artifacts(str(folder))
    # The same answers as an MLflow table (shown in the run's evaluation view): scores and judge reasons.
    mlflow.log_table(pd.DataFrame([_table_row(r) for r in rows]), artifact_file="answers_table.json")


def _table_row(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: row[k] for k in ("id", "question", "answer")}
    out["gold"] = " | ".join(row["gold"])
    out.update(row["scores"])
    out.update({f"{name}_reason": j["reason"] for name, j in row["judges"].items()})
    return out
