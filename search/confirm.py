"""Held-out confirmation: configurations answer the questions the search never saw, after the search.

Contract: :func:`confirm_all` runs one Ray task per configuration (the finalists, the baseline and the current
champion's configuration), on the search's own servers, index cache and request cache, in parallel up to the
trials' CPU share. Each task answers every held-out question at full fidelity with the same code as a trial
(:func:`search.trial.open_session`, :func:`~search.trial.answer_batch`, :func:`~search.trial.summarize`) and logs
into the MLflow run it is given: metrics ``holdout.<metric>`` (with ``holdout.<metric>_ci_low/high``) beside the
run's search metrics, and the artifact ``holdout/answers.jsonl``. Of the LLM judges it runs only those the
objective or the promotion floors use: the others change no decision. It returns a :class:`Confirmation` per
configuration; a configuration whose task failed is left out and its error returned, never raised, so one
broken finalist cannot hide the others' results.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlflow.entities import Metric
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.data import Dataset, DatasetError, Question, load_questions, seeded_order, split_holdout
from ragsweep.search.config import ConfigError, ExperimentConfig
from ragsweep.search.space import TrialParams
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.trial import (
    SearchContext,
    answer_batch,
    interval_metrics,
    open_session,
    redacted,
    row_scores,
    summarize,
)

HOLDOUT = "holdout."  # prefix of held-out metrics in a run
ANSWERS = "holdout/answers.jsonl"


@dataclass(frozen=True)
class QuestionPlan:
    """Which questions the search answers and which it never sees (the finalists answer those afterwards)."""

    search_ids: tuple[str, ...]  # every trial answers these, in this order
    held_out: tuple[Question, ...]  # the held-out split (or file)
    holdout_ids: tuple[str, ...]  # the held-out questions each finalist answers, in this order; () = off
    source: str  # how the held-out questions were chosen, for the console and the parent run

    @property
    def on(self) -> bool:
        return bool(self.holdout_ids)


def _fits(cfg: ExperimentConfig, key: str, asked: int | None, available: int, what: str) -> None:
    """A count the user set (not a default, which is capped) must not exceed what the dataset has."""
    if asked is not None and key in cfg.search.model_fields_set and asked > available:
        raise ConfigError(f"search.{key}: {asked} asked for, but there are only {available} {what}; lower it, or "
                          "unset it to use them all")


def plan_questions(cfg: ExperimentConfig, dataset: Dataset) -> QuestionPlan:
    """Split (or read) the held-out questions and order both parts; raises :class:`DatasetError` naming the file
    for a bad held-out file and when the held-out part is too small to compare on."""
    d, s = cfg.dataset, cfg.search
    if d.holdout_file is None and d.holdout <= 0:
        _fits(cfg, "questions_per_trial", s.questions_per_trial, len(dataset.questions), f"questions in {d.questions}")
    if d.holdout_file is not None:
        held = load_questions(d.holdout_file, dataset.corpus)
        searched = {q.id for q in dataset.questions}
        clash = next((q.id for q in held if q.id in searched), None)
        if clash is not None:
            raise DatasetError(f"{d.holdout_file}: question id {clash!r} is also in {d.questions}; held-out "
                               "questions must be ones the search never sees")
        pool, source = dataset.questions, str(d.holdout_file)
    elif d.holdout > 0:
        pool, held = split_holdout(dataset.questions, d.holdout, s.seed)
        source = f"{d.holdout:.0%} of {len(dataset.questions)} questions (seed {s.seed})"
    else:
        return QuestionPlan(tuple(q.id for q in seeded_order(dataset.questions, s.seed, s.questions_per_trial)),
                            (), (), "off (dataset.holdout: 0)")
    if len(held) >= 2 and len(pool) >= 1:
        _fits(cfg, "questions_per_trial", s.questions_per_trial, len(pool), "questions left to search after the "
              f"held-out split ({source})")
    if len(held) < 2 or len(pool) < 1:
        raise DatasetError(f"{d.questions}: {len(held)} held-out and {len(pool)} search question(s) ({source}); "
                           "confirmation needs at least 2 held-out questions: add questions, raise dataset.holdout, "
                           "or set dataset.holdout: 0 to turn confirmation off")
    _fits(cfg, "holdout_questions", s.holdout_questions, len(held), f"held-out questions ({source})")
    n_held = s.holdout_questions or s.questions_per_trial
    return QuestionPlan(tuple(q.id for q in seeded_order(pool, s.seed, s.questions_per_trial)), tuple(held),
                        tuple(q.id for q in seeded_order(held, s.seed, n_held)), source)


@dataclass(frozen=True)
class Confirmation:
    """One configuration's held-out answers: metrics (without the prefix) and per-question scores."""

    run_id: str
    metrics: dict[str, float]
    scores: dict[str, dict[str, float]]  # question id -> metric -> value (NaN when undefined)


@dataclass(frozen=True)
class Confirmed:
    """The outcome of confirmation: every configuration's held-out answers, and what failed."""

    done: dict[str, Confirmation]  # run id -> its held-out answers
    errors: dict[str, str]  # run id -> why its confirmation failed
    finalists: list[str]  # run ids of the finalists (the baseline and the champion are references)
    champion_run_id: str | None  # the run holding the current champion's held-out answers
    champion_note: str  # which champion, or why it was not confirmed


@dataclass(frozen=True)
class Job:
    """A configuration to confirm and the MLflow run its held-out results go to."""

    run_id: str
    params: dict[str, Any]


def confirm_one(job: Job, ctx: SearchContext, question_ids: tuple[str, ...]) -> Confirmation:
    """Answer ``question_ids`` with ``job.params`` and log the outcome into ``job.run_id`` (a Ray task body)."""
    os.environ.update(ctx.env)
    cfg = ctx.config
    session = open_session(TrialParams.from_sampled(job.params), ctx)
    # Only the judges a decision reads (objective, promotion floors): the others' verdicts would cost LLM calls
    # that change no pick.
    used = set(cfg.objective.weights) | set(cfg.promotion.min_metrics)
    session.judges = [j for j in session.judges if j.name in used]
    by_id = {q.id: q for q in ctx.held_out}
    questions = [by_id[i] for i in question_ids]
    rows: list[dict[str, Any]] = []
    for lo in range(0, len(questions), cfg.search.shard_size):
        rows += answer_batch(session, questions[lo : lo + cfg.search.shard_size], cfg)
    metrics = {**summarize(session, rows, cfg), **interval_metrics(rows, cfg),
               **session.generator.stats.as_metrics("generator"), **session.judge_client.stats.as_metrics("judge"),
               "confirm_s": time.perf_counter() - session.t_start}
    client = MlflowClient(ctx.tracking_uri)
    now = int(time.time() * 1000)
    finite = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)}
    client.log_batch(job.run_id, metrics=[Metric(HOLDOUT + k, v, now, 0) for k, v in finite.items()])
    redact = Redactor(cfg.mlflow.redact)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "answers.jsonl"
        path.write_text("".join(json.dumps(redacted(r, redact), ensure_ascii=False) + "\n" for r in rows),
                        encoding="utf-8")
        client.log_artifact(job.run_id, str(path), "holdout")
    return Confirmation(job.run_id, metrics, {r["id"]: row_scores(r) for r in rows})


def confirm_all(jobs: list[Job], ctx: SearchContext, question_ids: tuple[str, ...],
                retries: int = 0) -> tuple[dict[str, Confirmation], dict[str, str]]:
    """Run every job as a Ray task; ``({run_id: Confirmation}, {run_id: error})``."""
    import ray

    task = ray.remote(num_cpus=ctx.config.search.cpus_per_trial, max_retries=retries)(confirm_one)
    refs = {job.run_id: task.remote(job, ctx, question_ids) for job in jobs}
    done: dict[str, Confirmation] = {}
    errors: dict[str, str] = {}
    for run_id, ref in refs.items():
        try:
            done[run_id] = ray.get(ref)
        except Exception as e:  # noqa: BLE001 - reported per configuration; the others still count
            errors[run_id] = f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"
    return done, errors
