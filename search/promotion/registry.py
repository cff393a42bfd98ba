"""Gated promotion in the MLflow Model Registry: champion or challenger, with the reasons recorded; rollback.

Contract:
- :func:`decide` gathers the candidate trial's metrics and per-question scores (its ``answers.jsonl``) and those of
  the model version that holds alias ``champion`` (if any), and runs :func:`search.gates.evaluate`.
- :func:`record` points alias ``champion`` (all gates passed, or forced) or ``challenger`` at the version, and
  writes the decision with its numbers to the version (tags ``ragsweep.decision*``, description) and to the search
  run (tags ``ragsweep.promotion.*``, artifact ``promotion/decision-<version>.json``). A promotion remembers the
  version it replaced (tag ``ragsweep.previous_champion``), which is what :func:`rollback` goes back to.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any

import mlflow
from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ragsweep.pipelines.base.errors import BadInput
from ragsweep.search.config import PromotionSettings
from ragsweep.search.promotion.champion import CHAMPION, SIGNATURE
from ragsweep.search.promotion.gates import Candidate, Decision, Gate, evaluate
from ragsweep.search.tracking.runs import run_of_kind
from ragsweep.search.tracking.tracker import Tracker

CHALLENGER = "challenger"
TAG_DECISION = "ragsweep.decision"  # champion | challenger | rolled_back
TAG_REASON = "ragsweep.decision_reason"
TAG_GATES = "ragsweep.gates"
TAG_PREVIOUS = "ragsweep.previous_champion"
TAG_SEARCH = "search_run_id"


class PromotionError(BadInput):
    """A promotion or rollback cannot be done (no such run or version, nothing to roll back to)."""


def current_champion(client: MlflowClient, model_name: str) -> ModelVersion | None:
    try:
        return client.get_model_version_by_alias(model_name, CHAMPION)
    except MlflowException:
        return None  # no registered model, or no version holds the alias


def _holding(client: MlflowClient, model_name: str, alias: str) -> set[str]:
    try:
        return {client.get_model_version_by_alias(model_name, alias).version}
    except MlflowException:
        return set()


@dataclass(frozen=True)
class HoldoutRefs:
    """Runs holding held-out answers (``holdout/answers.jsonl``) of the same questions: the candidate's and, when
    its configuration was confirmed in the same search, the champion's."""

    candidate_run_id: str
    champion_run_id: str | None


def trial_candidate(
    client: MlflowClient, run_id: str, label: str, signature: dict[str, Any] | None, holdout: bool = False
) -> Candidate:
    """A trial run's metrics and per-question scores (its answers.jsonl) as a gate candidate; with ``holdout``
    its held-out metrics (``holdout.*``) and held-out answers instead."""
    run = client.get_run(run_id)
    path = "holdout/answers.jsonl" if holdout else "answers.jsonl"
    try:
        text = mlflow.artifacts.load_text(f"runs:/{run_id}/{path}")
    except MlflowException as e:
        raise PromotionError(f"run {run_id} has no {path} to compare on: {e.message}") from e
    scores = {}
    for line in text.splitlines():
        row = json.loads(line)
        scores[row["id"]] = {k: math.nan if v is None else float(v) for k, v in row["scores"].items()}
    metrics = dict(run.data.metrics)
    if holdout:
        metrics = {k.removeprefix("holdout."): v for k, v in metrics.items() if k.startswith("holdout.")}
    return Candidate(label + (" (held-out)" if holdout else ""), metrics, scores, signature)


def version_signature(model_name: str, version: str) -> dict[str, Any] | None:
    info = mlflow.models.get_model_info(f"models:/{model_name}/{version}")
    return info.signature.to_dict() if info.signature is not None else None


def decide(
    client: MlflowClient,
    settings: PromotionSettings,
    weights: dict[str, float],
    run_id: str,
    label: str,
    model_name: str,
    exclude_version: str | None = None,
    holdout: HoldoutRefs | None = None,
) -> tuple[Decision, ModelVersion | None]:
    """The gates for trial ``run_id`` against the current champion (unless that is ``exclude_version``).

    With ``holdout`` the candidate is judged on its held-out answers and metrics, against the champion's
    configuration's answers to the same held-out questions; when the champion's configuration was not confirmed
    on them, both sides are compared on their search answers instead (the questions they share)."""
    champ = current_champion(client, model_name)
    if champ is not None and champ.version == exclude_version:
        champ = None
    champ_held = holdout.champion_run_id if holdout is not None else None
    on_holdout = holdout is not None and (champ is None or champ_held is not None)
    candidate = trial_candidate(client, run_id, label, SIGNATURE.to_dict(), holdout=on_holdout)
    rival = None
    if champ is not None:
        rival_run = champ_held if on_holdout and champ_held is not None else (champ.run_id or "")
        rival = trial_candidate(
            client,
            rival_run,
            f"champion v{champ.version}",
            version_signature(model_name, champ.version),
            holdout=on_holdout,
        )
    return evaluate(settings, weights, candidate, rival), champ


def _describe(decision: Decision, alias: str, forced: bool) -> str:
    head = f"**{alias}**" + (" (forced by hand)" if forced else "") + f": {decision.reason}"
    lines = [f"- {'pass' if g.passed else 'FAIL'} `{g.name}`: {g.detail}" for g in decision.gates]
    return "\n".join([head, "", *lines]) if lines else head


def record(
    client: MlflowClient,
    model_name: str,
    version: str,
    decision: Decision,
    previous: ModelVersion | None,
    search_run_id: str | None,
    forced: bool = False,
) -> str:
    """Set the alias the decision earns and write the decision everywhere; return the alias."""
    promote = decision.promoted or forced
    alias = CHAMPION if promote else CHALLENGER
    if promote and previous is not None and previous.version != version:
        client.set_model_version_tag(model_name, version, TAG_PREVIOUS, previous.version)
    client.set_registered_model_alias(model_name, alias, version)
    if promote and version in _holding(client, model_name, CHALLENGER):
        client.delete_registered_model_alias(model_name, CHALLENGER)  # it is not a challenger any more
    reason = ("forced by hand; gates: " if forced and not decision.promoted else "") + decision.reason
    tags = {
        TAG_DECISION: alias,
        TAG_REASON: reason[:5000],
        TAG_GATES: json.dumps([{"name": g.name, "passed": g.passed, **g.numbers} for g in decision.gates])[:5000],
    }
    for k, v in tags.items():
        client.set_model_version_tag(model_name, version, k, v)
    client.update_model_version(model_name, version, description=_describe(decision, alias, forced))
    if search_run_id is not None:
        Tracker.of(client).tags(
            search_run_id,
            {
                "ragsweep.promotion.decision": alias,
                "ragsweep.promotion.reason": reason,
                "ragsweep.promotion.version": version,
            },
        )
        client.log_dict(
            search_run_id,
            {
                **decision.as_dict(),
                "alias": alias,
                "version": version,
                "forced": forced,
                "previous_champion": previous.version if previous else None,
            },
            f"promotion/decision-v{version}.json",
        )
    return alias


@dataclass(frozen=True)
class Promotion:
    version: str
    alias: str
    decision: Decision
    previous: str | None  # the champion version before this decision


def promote_search(
    client: MlflowClient,
    settings: PromotionSettings,
    weights: dict[str, float],
    search_run_id: str,
    model_name: str,
    force: bool = False,
) -> Promotion:
    """Re-run the gates for the version a finished search registered (``ragsweep promote --run``)."""
    run = run_of_kind(client, search_run_id, "search", "--run", PromotionError)
    version = run.data.tags.get("ragsweep.promotion.version") or run.data.tags.get("champion_version")
    trial = run.data.tags.get("best_trial_run_id")
    if not version or not trial:
        raise PromotionError(
            f"search run {search_run_id} registered no model version (did it finish? tags "
            "best_trial_run_id and ragsweep.promotion.version are missing)"
        )
    champ = current_champion(client, model_name)
    if champ is not None and champ.version == version:
        return Promotion(
            version, CHAMPION, Decision(True, (Gate("already", True, f"v{version} is the champion"),)), None
        )
    decision, champ = decide(
        client,
        settings,
        weights,
        trial,
        f"v{version}",
        model_name,
        exclude_version=version,
        holdout=_search_holdout(client, run, trial, champ),
    )
    alias = record(client, model_name, version, decision, champ, search_run_id, forced=force)
    return Promotion(version, alias, decision, champ.version if champ else None)


def _search_holdout(client: MlflowClient, search: Any, trial: str, champ: ModelVersion | None) -> HoldoutRefs | None:
    """The held-out answers the search judged its winner on, and the current champion's answers to the same
    questions if that search confirmed the champion's configuration (its ``champion_holdout`` run)."""
    if search.data.tags.get("ragsweep.selection.on") != "held-out":
        return None
    rival = None
    if champ is not None:
        runs = client.search_runs(
            [search.info.experiment_id],
            filter_string=(
                f"tags.`mlflow.parentRunId` = '{search.info.run_id}' and tags.`ragsweep.kind` = 'champion_holdout' "
                f"and tags.`ragsweep.champion_version` = '{champ.version}'"
            ),
            max_results=1,
        )
        rival = runs[0].info.run_id if runs else None
    return HoldoutRefs(trial, rival)


def rollback(client: MlflowClient, model_name: str) -> tuple[str, str]:
    """Point ``champion`` back at the version the current champion replaced; return ``(from, to)``."""
    champ = current_champion(client, model_name)
    if champ is None:
        raise PromotionError(f"model {model_name!r} has no version with alias {CHAMPION!r}: nothing to roll back")
    previous = champ.tags.get(TAG_PREVIOUS)
    if not previous:
        raise PromotionError(
            f"{model_name} v{champ.version} is the champion and replaced no earlier version "
            f"(tag {TAG_PREVIOUS} is not set): nothing to roll back to"
        )
    client.set_registered_model_alias(model_name, CHAMPION, previous)
    client.set_model_version_tag(model_name, champ.version, TAG_DECISION, "rolled_back")
    client.set_model_version_tag(model_name, champ.version, TAG_REASON, f"rolled back to v{previous} by hand")
    return champ.version, previous
