"""The pick and the promotion of a finished search: the finalists (with the baseline and the champion's
configuration) confirmed on held-out questions, the evidence they are compared on, the winner by the selection
rule, its headroom, the report and selection logged on the parent run, and the winner registered and gated."""

from __future__ import annotations

import json
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import mlflow
from mlflow.tracking import MlflowClient

from ragsweep.judges.intervals import paired_difference
from ragsweep.search.assemble import prompt_for
from ragsweep.search.config import ExperimentConfig
from ragsweep.search.confirm import HOLDOUT, Confirmed, Job, QuestionPlan, confirm_all
from ragsweep.search.promotion.champion import CHAMPION, register_version
from ragsweep.search.promotion.registry import TAG_SEARCH, HoldoutRefs, current_champion, decide, record
from ragsweep.search.promotion.selection import Evidence, TrialRecord, choose, finalists, pareto_front, select
from ragsweep.search.report import Summary, write_report
from ragsweep.search.schedulers import PER_QUESTION
from ragsweep.search.screen.oracle import Headroom, Pair, headroom
from ragsweep.search.screen.screening import Staging
from ragsweep.search.serving.cluster import (
    retries,
)
from ragsweep.search.space import TrialParams
from ragsweep.search.tracking.outcomes import Collected, say
from ragsweep.search.tracking.prompts import alias_champion_prompt
from ragsweep.search.tracking.runs import (
    TAG_KIND,
    flatten,
)
from ragsweep.search.tracking.tracker import PARENT_TAG, RunRef, Tracker

TAG_CHAMPION_OF = "ragsweep.champion_version"  # on a champion_holdout run: the version whose configuration it ran


def champion_job(cfg: ExperimentConfig, client: MlflowClient, exp_id: str, pid: str) -> tuple[Job | None, str]:
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
    tracker = Tracker.of(client)
    run_id = tracker.start(
        exp_id,
        f"champion-v{champ.version}-holdout",
        {PARENT_TAG: pid, TAG_KIND: "champion_holdout", TAG_CHAMPION_OF: champ.version},
    )
    tracker.params(run_id, flatten(tp.model_dump()))
    return Job(run_id, tp.model_dump()), f"champion v{champ.version}"


def confirm_finalists(
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
    champ_job, champ_note = champion_job(cfg, client, exp_id, pid)
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
        Tracker.of(client).end(champ_job.run_id, "FINISHED" if champ_job.run_id in done else "FAILED")
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


def evidence_for(
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
            search_scores(t, found.question_ids),
            t.objective,
            float(t.metrics.get("tokens_per_question", math.nan)),
            float(t.metrics.get("latency_p95_s", math.nan)),
        )
        for t in trials
    ]
    return out, {"objective": 1.0}, "search"


def search_scores(t: TrialRecord, question_ids: tuple[str, ...]) -> dict[str, dict[str, float]]:
    """A trial's per-question objectives on the search questions it answered."""
    values = json.loads(t.metrics.get(PER_QUESTION) or "[]")
    return {q: {"objective": float(v)} for q, v in zip(question_ids, values, strict=False)}


@dataclass(frozen=True)
class FreeEvidence:
    """What the search learnt beside its trials: the retrieval screen and the oracle-retrieval ceilings."""

    staging: Staging | None
    oracle: dict[Pair, dict[str, float]]  # (generator, prompt) -> question id -> objective with the gold passage
    generator: str = ""  # the search's generator model, for the headroom sentence


def headroom_of(
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
    mine = {q: {"objective": v["objective"]} for q, v in search_scores(winner, found.question_ids).items()}
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


def choose_winner(
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
    evidence, weights, on = evidence_for(cfg, found, confirmed, picked)
    selection = None
    if cfg.objective.cost is not None:
        winner, reason = choose(completed, cfg.objective)
    elif evidence:
        selection = select(evidence, weights, s.selection, s.confidence, s.bootstrap_samples, s.seed, on, s.min_saving)
        winner, reason = selection.pick, selection.reason
    else:  # no finalist could answer the held-out questions: fall back to the search questions, and say so
        evidence, weights, on = evidence_for(cfg, found, None, picked)
        selection = select(evidence, weights, s.selection, s.confidence, s.bootstrap_samples, s.seed, on, s.min_saving)
        winner, reason = selection.pick, selection.reason + " (no held-out answers: every confirmation failed)"
    margin = None
    if winner is not None and base is not None and base.status == "completed" and winner.run_id != base.run_id:
        both, mw, margin_on = evidence_for(cfg, found, confirmed, [winner, base])
        if len(both) < 2:  # the baseline's confirmation failed: compare on the search questions
            both, mw, margin_on = evidence_for(cfg, found, None, [winner, base])
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


def write_search_report(
    parent: RunRef, cfg: ExperimentConfig, records: list[TrialRecord], summary: Summary
) -> list[str]:
    """Write the report into the parent run's ``report/`` folder; return the console summary lines."""
    with tempfile.TemporaryDirectory() as d:
        lines = write_report(records, summary, cfg, Path(d))
        parent.artifacts(Path(d), "report")
        imp = json.loads((Path(d) / "importances.json").read_text())
    parent.metrics({f"importance.{k}": v for k, v in imp.items()})
    log_selection(parent, summary)
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


def log_selection(parent: RunRef, summary: Summary) -> None:
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


def promote_winner(
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
        holdout=holdout_refs(confirmed, winner),
    )
    version = register_version(
        winner.run_id,
        winner_spec(cfg, winner.params),
        cfg.dataset.corpus,
        cfg.mlflow.model_name,
        {TAG_SEARCH: pid, "objective": f"{winner.objective:.6f}", "trial": winner.name, "promotion_rule": reason},
        index_folder=winner_index_folder(cfg, winner.params),
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


def holdout_refs(confirmed: Confirmed | None, winner: TrialRecord) -> HoldoutRefs | None:
    """Where the gates find held-out answers: the winner's and, if it was confirmed, the champion's."""
    if confirmed is None or winner.run_id not in confirmed.done:
        return None
    champ = confirmed.champion_run_id if confirmed.champion_run_id in confirmed.done else None
    return HoldoutRefs(winner.run_id, champ)


def winner_index_folder(cfg: ExperimentConfig, params: dict[str, Any]) -> Path:
    """Where the search's index cache holds the index a trial with ``params`` used."""
    from ragsweep.pipelines.data import file_digest
    from ragsweep.search.assemble import index_spec
    from ragsweep.search.space import TrialParams

    spec = index_spec(TrialParams.from_sampled(params), cfg.pipeline, file_digest(cfg.dataset.corpus))
    return cfg.index_cache / spec.key


def winner_spec(cfg: ExperimentConfig, params: dict[str, Any]) -> dict[str, Any]:
    from ragsweep.search.assemble import pipeline_spec, prompt_for
    from ragsweep.search.space import TrialParams

    tp = TrialParams.from_sampled(params)
    return pipeline_spec(
        tp, cfg.pipeline, cfg.llm.generator_for(tp.generator), cfg.search.seed, prompt_for(tp, cfg.pipeline)
    )


def log_race_and_headroom(parent: RunRef, confirmed: Confirmed | None, summary: Summary) -> None:
    """How the held-out race went and how far the winner is from its oracle ceiling, as parent-run metrics."""
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
