"""Tune's results into MLflow: the trial records, every trial run made to agree with Tune (status, tags, FINISHED,
orphans of a resumed search), the baseline tagged, usage totals, and the parent run's params, prompts, servers and
failure. Every function writes through the run it is given; none picks a winner (that is the promotion wing's)."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from importlib.metadata import version as pkg_version
from pathlib import Path
from typing import Any

from mlflow.tracking import MlflowClient

from ragsweep.pipelines.data import Dataset
from ragsweep.pipelines.llm_client.client import USAGE, merge_intervals
from ragsweep.pipelines.prompts import load_templates
from ragsweep.search.config import ExperimentConfig, loggable
from ragsweep.search.confirm import HOLDOUT, Confirmed
from ragsweep.search.console import logger
from ragsweep.search.promotion.selection import TrialRecord
from ragsweep.search.searcher import BaselineMatcher, baseline
from ragsweep.search.serving.servers import Endpoints
from ragsweep.search.space import STAGED
from ragsweep.search.tracking.prompts import register_templates
from ragsweep.search.tracking.redact import Redactor
from ragsweep.search.tracking.runs import (
    TAG_STATUS,
    TrackingLost,
    close_children,
    flatten,
    git_commit,
)
from ragsweep.search.tracking.tracker import PARENT_TAG, TAG_FAILURE, RunRef, Tracker

_log = logger("search")


def say(msg: str) -> None:
    _log.info(msg)


@dataclass(kw_only=True)
class SearchOutcome:
    """What a search returns (run_search): where it was recorded, the winner and its version, the trials."""

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


class SearchError(RuntimeError):
    """The search ran but produced no usable result (e.g. every trial failed)."""


def trial_records(grid: Any, n_questions: int) -> tuple[list[TrialRecord], list[str], list[dict[str, Any]]]:
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


def collect_trials(
    cfg: ExperimentConfig, grid: Any, question_ids: tuple[str, ...], pid: str, exp_id: str, uri: str, resumed: bool
) -> Collected:
    """Read Tune's results and make every trial run agree with them (status, tags, FINISHED)."""
    client = MlflowClient(uri)
    records, errors, last = trial_records(grid, len(question_ids))
    if not any(r.status == "completed" for r in records):  # before any further MLflow call: if MLflow is what
        # failed, this names the trials' errors
        raise SearchError(f"no trial finished; first error: {errors[0] if errors else 'none reported'}")
    if resumed:
        discard_orphans(client, exp_id, pid, {r.run_id for r in records})
    reconcile_runs(client, records)
    close_children(client, exp_id, pid)
    for r in records:
        r.name = client.get_run(r.run_id).info.run_name or r.name
    stopped = sum(r.status == "stopped_early" for r in records)
    if stopped:
        say(
            f"{stopped} trial(s) stopped early by the scheduler; only trials that answered all "
            f"{len(question_ids)} questions compete for champion"
        )
    return Collected(records, errors, last, question_ids, mark_baseline(cfg, records, client))


def reconcile_runs(client: MlflowClient, records: list[TrialRecord]) -> None:
    """Make each trial run agree with Tune: completed runs FINISHED and tagged completed (a failure tag a closer
    wrote for a worker Tune stopped or reused is removed); trials the scheduler stopped tagged stopped_early."""
    tracker = Tracker.of(client)
    for r in records:
        run = client.get_run(r.run_id)
        if run.data.tags.get(TAG_STATUS) != r.status:
            tracker.tags(r.run_id, {TAG_STATUS: r.status})
        if TAG_FAILURE in run.data.tags:
            tracker.untag(r.run_id, TAG_FAILURE)
        if run.info.status != "FINISHED":
            tracker.end(r.run_id, "FINISHED")


def discard_orphans(client: MlflowClient, exp_id: str, pid: str, reported: set[str]) -> None:
    """After a resume: delete child runs of trials Ray Tune no longer knows.

    Tune saves its state every few seconds; a trial the dead driver started after the last save is not
    restored (the searcher proposes a new one instead), so its MLflow run would be a duplicate. Failed trials
    keep their runs (Tune restores them as errored).
    """
    runs = client.search_runs([exp_id], filter_string=f"tags.`{PARENT_TAG}` = '{pid}'", max_results=10000)
    orphans = [r for r in runs if r.info.run_id not in reported and r.data.tags.get(TAG_STATUS) != "failed"]
    tracker = Tracker.of(client)
    for r in orphans:
        tracker.delete(r.info.run_id)
    if orphans:
        tracker.tags(pid, {"ragsweep.discarded_runs": ",".join(r.info.run_id for r in orphans)})
        say(
            f"discarded {len(orphans)} MLflow run(s) of trials the dead driver started after Ray Tune's last "
            "state save (other trials ran in their place)"
        )


def mark_baseline(cfg: ExperimentConfig, records: list[TrialRecord], client: MlflowClient) -> TrialRecord | None:
    """The first trial run with the baseline params (tagged ``ragsweep.baseline``), if any."""
    matches = BaselineMatcher(baseline(cfg))
    for r in records:
        if matches(r.params):
            r.baseline = True
            Tracker.of(client).tags(r.run_id, {"ragsweep.baseline": "true"})
            return r
    return None


def usage_totals(grid: Any, cfg: ExperimentConfig) -> dict[str, float]:
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


def confirm_usage(confirmed: Confirmed) -> dict[str, float]:
    """LLM requests and tokens the held-out answers cost (they count in the search's spend)."""
    totals: dict[str, float] = {}
    for c in confirmed.done.values():
        for k, v in c.metrics.items():
            if k.startswith(USAGE) and isinstance(v, (int, float)):
                totals[f"total.{HOLDOUT}{k}"] = totals.get(f"total.{HOLDOUT}{k}", 0.0) + float(v)
    return totals


def record_outcomes(
    parent: RunRef, cfg: ExperimentConfig, grid: Any, found: Collected, confirmed: Confirmed | None
) -> dict[str, float]:
    """Trial counts and search-wide LLM usage on the parent run; returns the usage totals."""
    stopped = [r for r in found.records if r.status == "stopped_early"]
    usage = usage_totals(grid, cfg)
    if confirmed is not None:
        usage.update(confirm_usage(confirmed))
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


def log_parent(parent: RunRef, cfg: ExperimentConfig, dataset: Dataset, config_path: Path | None) -> None:
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


def register_prompts(cfg: ExperimentConfig, parent: RunRef) -> dict[str, str]:
    """The searched templates in MLflow's prompt registry (a version per distinct text); logged on the parent."""
    templates = load_templates(cfg.pipeline.prompts_file)
    uris = register_templates(
        [templates[n] for n in cfg.space.prompt], cfg.mlflow.model_name, Redactor(cfg.mlflow.redact)
    )
    parent.params({f"prompt.{name}.uri": uri for name, uri in uris.items()})
    return uris


def log_servers(parent: RunRef, endpoints: Endpoints) -> None:
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


def close_failed(tracker: Tracker, exp_id: str, pid: str, reason: str, status: str, ray_dir: str) -> None:
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


def run_link(uri: str, exp_id: str, pid: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{exp_id}/runs/{pid}"
    return f"mlflow ui --backend-store-uri {uri}   (experiment {exp_id}, parent run {pid})"
