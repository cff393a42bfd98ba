"""Held-out confirmation: configurations answer the questions the search never saw, after the search.

Contract: :func:`confirm_all` answers the held-out questions with every configuration (the finalists, the baseline
and the current champion's configuration), one Ray task per configuration and round, on the search's own servers,
index cache and request cache, in parallel up to the trials' CPU share, with the same code as a trial
(:func:`search.trial.open_session`, :func:`~search.trial.answer_batch`). By default it *races*: the questions go in
batches of ``search.race_batch``, a finalist significantly worse than the best so far drops out after a batch
(:mod:`.promotion.racing`), and the race ends when one finalist is left or the questions are spent, with a progress
line per round. Each configuration's answers of every round it ran are logged once into the MLflow run it is given:
metrics ``holdout.<metric>`` (with ``holdout.<metric>_ci_low/high``) beside the run's search metrics, and the
artifact ``holdout/answers.jsonl``. Of the LLM judges it runs only those the
objective or the promotion floors use: the others change no decision. It returns a :class:`Confirmation` per
configuration; a configuration whose task failed is left out and its error returned, never raised, so one
broken finalist cannot hide the others' results.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ragsweep.judges.intervals import PairedDifference
from ragsweep.pipelines.data import Dataset, DatasetError, Question, load_questions, seeded_order, split_holdout
from ragsweep.search.answering import (
    SearchContext,
    answer_batch,
    gpu_seconds,
    interval_metrics,
    open_session,
    redacted,
    row_scores,
    summarize_rows,
)
from ragsweep.search.config import ConfigError, ExperimentConfig
from ragsweep.search.promotion.racing import objective_of, race_over, race_step
from ragsweep.search.space import TrialParams
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.tracking.tracker import Tracker

HOLDOUT = "holdout."  # prefix of held-out metrics in a run
ANSWERS = "holdout/answers.jsonl"


@dataclass(frozen=True)
class QuestionPlan:
    """Which questions the search answers and which it never sees (the finalists answer those afterwards)."""

    search_ids: tuple[str, ...]  # every trial answers these, in this order
    held_out: tuple[Question, ...]  # the held-out split (or file)
    holdout_ids: tuple[str, ...]  # the held-out questions each finalist answers, in this order; () = off
    source: str  # how the held-out questions were chosen, for the console and the parent run
    screen_ids: tuple[str, ...] = ()  # every search question (or search.screen_questions of them): retrieval is
    # scored on these with no LLM call; search_ids is their prefix

    @property
    def on(self) -> bool:
        return bool(self.holdout_ids)


MIN_SEARCH_QUESTIONS = 4  # fewer search questions than this after a held-out split cannot tell configurations apart


def _fits(cfg: ExperimentConfig, key: str, asked: int | None, available: int, what: str) -> None:
    """A count the user set (not a default, which is capped) must not exceed what the dataset has."""
    if asked is not None and key in cfg.search.model_fields_set and asked > available:
        raise ConfigError(
            f"search.{key}: {asked} asked for, but there are only {available} {what}; lower it, or "
            "unset it to use them all"
        )


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
            raise DatasetError(
                f"{d.holdout_file}: question id {clash!r} is also in {d.questions}; held-out "
                "questions must be ones the search never sees"
            )
        pool, source = dataset.questions, str(d.holdout_file)
    elif d.holdout > 0:
        pool, held = split_holdout(dataset.questions, d.holdout, s.seed)
        source = f"{d.holdout:.0%} of {len(dataset.questions)} questions (seed {s.seed})"
    else:
        return QuestionPlan(
            tuple(q.id for q in seeded_order(dataset.questions, s.seed, s.questions_per_trial)),
            (),
            (),
            "off (dataset.holdout: 0)",
            _screen_ids(cfg, dataset.questions),
        )
    if d.holdout_file is None and len(held) >= 2 and len(pool) < MIN_SEARCH_QUESTIONS:
        raise DatasetError(
            f"dataset.holdout: {d.holdout:g} holds out {len(held)} of {len(dataset.questions)} "
            f"questions and leaves {len(pool)} to search; a search compares configurations on at "
            f"least {MIN_SEARCH_QUESTIONS}: lower dataset.holdout (0.25 is typical)"
        )
    if len(held) >= 2 and len(pool) >= 1:
        _fits(
            cfg,
            "questions_per_trial",
            s.questions_per_trial,
            len(pool),
            f"questions left to search after the held-out split ({source})",
        )
    if len(held) < 2 or len(pool) < 1:
        raise DatasetError(
            f"{d.questions}: {len(held)} held-out and {len(pool)} search question(s) ({source}); "
            "confirmation needs at least 2 held-out questions: add questions, raise dataset.holdout, "
            "or set dataset.holdout: 0 to turn confirmation off"
        )
    _fits(cfg, "holdout_questions", s.holdout_questions, len(held), f"held-out questions ({source})")
    n_held = s.holdout_questions or s.questions_per_trial
    return QuestionPlan(
        tuple(q.id for q in seeded_order(pool, s.seed, s.questions_per_trial)),
        tuple(held),
        tuple(q.id for q in seeded_order(held, s.seed, n_held)),
        source,
        _screen_ids(cfg, pool),
    )


def _screen_ids(cfg: ExperimentConfig, pool: list[Question]) -> tuple[str, ...]:
    """The search questions retrieval is scored on: all, or the first ``search.screen_questions`` of the same
    seeded order (at least the questions every trial answers)."""
    s = cfg.search
    n = None if s.screen_questions is None else max(s.screen_questions, s.questions_per_trial or 0)
    return tuple(q.id for q in seeded_order(pool, s.seed, n))


@dataclass(frozen=True)
class Confirmation:
    """One configuration's held-out answers: metrics (without the prefix) and per-question scores."""

    run_id: str
    metrics: dict[str, float]
    scores: dict[str, dict[str, float]]  # question id -> metric -> value (NaN when undefined)


@dataclass(frozen=True)
class Race:
    """How a confirmation ran: held-out questions used, and the finalists dropped (best minus each)."""

    answered: int  # held-out questions every configuration still running at the end answered
    total: int
    rounds: int
    dropped: dict[str, PairedDifference]  # run id -> best minus it, when it dropped out
    dropped_at: dict[str, int]  # run id -> questions answered when it dropped out


@dataclass(kw_only=True, frozen=True)
class Confirmed:
    """The outcome of confirmation: every configuration's held-out answers, and what failed."""

    done: dict[str, Confirmation]  # run id -> its held-out answers
    errors: dict[str, str]  # run id -> why its confirmation failed
    finalists: list[str]  # run ids of the finalists (the baseline and the champion are references)
    champion_run_id: str | None  # the run holding the current champion's held-out answers
    champion_note: str  # which champion, or why it was not confirmed
    race: Race | None = None  # how a racing confirmation ran (None: every configuration answered every question)


@dataclass(frozen=True)
class Job:
    """A configuration to confirm and the MLflow run its held-out results go to."""

    run_id: str
    params: dict[str, Any]


@dataclass(kw_only=True, frozen=True)
class Part:
    """One configuration's answers to one batch of held-out questions (a Ray task's result)."""

    rows: list[dict[str, Any]]
    usage: dict[str, float]  # llm.<role>.<counter> of this batch
    gpu_s: float
    judge_failed: int
    judge_repaired: int
    quality_metrics: tuple[str, ...]
    seconds: float


def answer_part(job: Job, ctx: SearchContext, question_ids: tuple[str, ...]) -> Part:
    """Answer ``question_ids`` with ``job.params`` (a Ray task body): the same code as a trial."""
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
    usage = {**session.generator.stats.as_metrics("generator"), **session.judge_client.stats.as_metrics("judge")}
    return Part(
        rows=rows,
        usage=usage,
        gpu_s=gpu_seconds(session, cfg),
        judge_failed=session.judge_failed,
        judge_repaired=session.judge_repaired,
        quality_metrics=session.quality_metrics,
        seconds=time.perf_counter() - session.t_start,
    )


def record(job: Job, parts: list[Part], ctx: SearchContext) -> Confirmation:
    """Log a configuration's held-out answers (every batch it ran) into ``job.run_id``."""
    cfg = ctx.config
    rows = [r for p in parts for r in p.rows]
    usage: dict[str, float] = {}
    for p in parts:
        for k, v in p.usage.items():
            usage[k] = usage.get(k, 0.0) + v
    metrics = {
        **summarize_rows(
            rows,
            parts[0].quality_metrics,
            sum(p.gpu_s for p in parts),
            sum(p.judge_failed for p in parts),
            sum(p.judge_repaired for p in parts),
            cfg,
        ),
        **interval_metrics(rows, cfg),
        **usage,
        "confirm_s": sum(p.seconds for p in parts),
    }
    tracker = Tracker(ctx.tracking_uri)
    tracker.metrics(job.run_id, {HOLDOUT + k: float(v) for k, v in metrics.items() if isinstance(v, (int, float))})
    redact = Redactor(cfg.mlflow.redact)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "answers.jsonl"
        path.write_text(
            "".join(json.dumps(redacted(r, redact), ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
        )
        tracker.artifact(job.run_id, path, "holdout")
    return Confirmation(job.run_id, metrics, {r["id"]: row_scores(r) for r in rows})


def _error(e: BaseException) -> str:
    return f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else e}"


def confirm_all(
    jobs: list[Job],
    ctx: SearchContext,
    question_ids: tuple[str, ...],
    racing: set[str] | None = None,
    retries: int = 0,
    say: Any = None,
) -> tuple[dict[str, Confirmation], dict[str, str], Race]:
    """Answer the held-out questions as Ray tasks; ``({run_id: Confirmation}, {run_id: error}, Race)``.

    With ``racing`` (the finalists' run ids; the other jobs are references such as the baseline and the champion,
    which answer alongside and are never dropped) the questions go in batches of ``search.race_batch`` and the
    race stops by :func:`~ragsweep.search.promotion.racing.race_step`; without it every job answers them all in
    one round. ``say`` gets a progress line per round."""
    import ray

    cfg = ctx.config
    task = ray.remote(num_cpus=cfg.search.cpus_per_trial, max_retries=retries)(answer_part)
    size = cfg.search.race_batch if racing and cfg.search.race_batch else len(question_ids)
    alive = [j.run_id for j in jobs if racing is None or j.run_id in racing]
    refs = [j.run_id for j in jobs if racing is not None and j.run_id not in racing]
    started = len(alive)
    parts: dict[str, list[Part]] = {j.run_id: [] for j in jobs}
    errors: dict[str, str] = {}
    dropped: dict[str, PairedDifference] = {}
    dropped_at: dict[str, int] = {}
    by_run = {j.run_id: j for j in jobs}
    answered, rounds = 0, 0
    while answered < len(question_ids) and (alive or refs):
        batch = question_ids[answered : answered + size]
        running = [r for r in [*alive, *refs] if r not in errors]
        futures = {r: task.remote(by_run[r], ctx, batch) for r in running}
        for r, ref in futures.items():
            try:
                parts[r].append(ray.get(ref))
            except Exception as e:  # noqa: BLE001 - reported per configuration; the others still count
                errors[r] = _error(e)
        alive = [r for r in alive if r not in errors]
        refs = [r for r in refs if r not in errors]
        answered += len(batch)
        rounds += 1
        line = f"held-out round {rounds}: {answered}/{len(question_ids)} questions"
        if racing and alive:
            alive, summary = _race_round(parts, alive, cfg, answered, dropped, dropped_at)
            line += summary
        if say is not None:
            say(line)
        if racing is None or race_over(alive, answered, len(question_ids), started):
            break
    done = {}
    for r, ps in parts.items():
        if ps and r not in errors:
            try:
                done[r] = record(by_run[r], ps, ctx)
            except Exception as e:  # noqa: BLE001 - as above
                errors[r] = _error(e)
    return done, errors, Race(answered, len(question_ids), rounds, dropped, dropped_at)


def _race_round(
    parts: dict[str, list[Part]],
    alive: list[str],
    cfg: ExperimentConfig,
    answered: int,
    dropped: dict[str, PairedDifference],
    dropped_at: dict[str, int],
) -> tuple[list[str], str]:
    """One race step over what the finalists still running have answered: who stays (those dropped go into
    ``dropped`` and ``dropped_at``), and the round's line for the console."""
    scores = {r: {row["id"]: row_scores(row) for p in parts[r] for row in p.rows} for r in alive}
    step = race_step(
        scores, alive, cfg.objective.weights, cfg.search.confidence, cfg.search.bootstrap_samples, cfg.search.seed
    )
    for r, d in step.dropped.items():
        dropped[r], dropped_at[r] = d, answered
    best = objective_of(scores[step.best], cfg.objective.weights)
    summary = f"; {len(step.alive)} finalist(s) running, best {best:.4f}" + "".join(
        f"; dropped {r[:8]} ({-d.mean:+.4f} vs best, CI [{-d.high:+.4f}, {-d.low:+.4f}])"
        for r, d in step.dropped.items()
    )
    return step.alive, summary
